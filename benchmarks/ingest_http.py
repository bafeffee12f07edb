"""Durable ingest over HTTP (``POST /api/events``), beside the limits of the machine.

One run, fresh DuckDB files in a temporary directory, the same generated events throughout:

* the physical limits: raw msgspec decode of the request bodies, the server's own decode
  (with validation), building appender rows, and a raw DuckDB append of the same rows
  (appender + flush + COMMIT per 1000), plus ``store.write_events`` without HTTP;
* HTTP ingest in-process (``httpx.ASGITransport`` inside ``app_lifespan``) and over a real
  loopback uvicorn server (``python -m localevents serve`` in a subprocess), at batch sizes
  1, 100 and 1000, concurrency 1, and 4 concurrent posters at batch 1000;
* each figure as a fraction of the raw DuckDB append rate measured in the same run.

Request bodies are encoded before timing: the client's encoding is not the server's cost.
Every request is answered 204 only after its events are committed, so these are durable
events per second; the stored row count is checked after each run.

    uv run python -m benchmarks.ingest_http [--quick]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import duckdb
import httpx
import msgspec

from benchmarks._common import (
    Target,
    Timer,
    encode_batches,
    generate_events,
    parse_args,
    percentile,
    rate,
    report,
)
from localevents._settings import Settings
from localevents.client._lifespan import app_lifespan
from localevents.server import create_app
from localevents.server._routes import decode_events
from localevents.storage import open_store, release
from localevents.storage._rows import event_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from localevents.events import ReceivedEvent

NAME = "ingest_http"
BATCH_SIZES = (1, 100, 1000)
RAW_BATCH = 1000
TARGET_EVENTS_PER_S = 50_000  # in-process, batch 1000 (issue 2)
_HEADERS = {"content-type": "application/json"}


class Sizes(msgspec.Struct, frozen=True):
    """How many events each measurement posts."""

    single: int  # batch 1: one request per event, so fewer
    bulk: int  # batches of 100 and 1000


DEFAULT = Sizes(single=2_000, bulk=100_000)
QUICK = Sizes(single=100, bulk=10_000)


class _PlainEvent(msgspec.Struct, gc=False):
    """The wire shape with no validation: what msgspec alone decodes (the physical limit)."""

    occurred: datetime
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]
    id: uuid.UUID
    follows: uuid.UUID | None = None
    received: datetime | None = None


def _row(stage: str, path: str, batch: int, concurrency: int, events: int, seconds: float,
         latencies: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    return {
        "stage": stage,
        "path": path,
        "batch": batch,
        "concurrency": concurrency,
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(rate(events, seconds)),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


# -- physical limits --------------------------------------------------------------------------


def _decode_each(bodies: Sequence[bytes], decode: Any) -> tuple[float, list[float]]:
    latencies = []
    with Timer() as total:
        for body in bodies:
            started = time.perf_counter()
            decode(body)
            latencies.append(time.perf_counter() - started)
    return total.elapsed, latencies


def measure_decode(bodies: Sequence[bytes], events: int) -> list[dict[str, Any]]:
    """Raw msgspec decode, then the server's decode (validation, received, size check)."""
    plain = msgspec.json.Decoder(list[_PlainEvent]).decode
    settings = Settings()
    seconds, latencies = _decode_each(bodies, plain)
    rows = [_row("limit", "msgspec decode (plain structs)", RAW_BATCH, 1, events, seconds,
                 latencies)]  # fmt: skip
    seconds, latencies = _decode_each(bodies, lambda body: decode_events(body, settings))
    rows.append(_row("limit", "server decode_events", RAW_BATCH, 1, events, seconds, latencies))
    return rows


def measure_rows(events: Sequence[ReceivedEvent]) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """``event_row`` over every event (the appender's input), and the rows."""
    with Timer() as timer:
        rows = [event_row(event) for event in events]
    per_batch = timer.elapsed / max(1, len(events) // RAW_BATCH)
    result = _row("limit", "event_row (build rows)", RAW_BATCH, 1, len(events), timer.elapsed,
                  [per_batch])  # fmt: skip
    return result, rows


def _create_schema(path: str) -> None:
    """A real, empty events file (the store creates its tables when it opens one)."""
    release(open_store(path))


def measure_raw_append(path: str, rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """appender.append_rows + flush + COMMIT per 1000 rows, on prebuilt rows: DuckDB alone."""
    _create_schema(path)
    con = duckdb.connect(path)
    latencies = []
    try:
        with Timer() as total:
            for i in range(0, len(rows), RAW_BATCH):
                started = time.perf_counter()
                con.execute("BEGIN")
                with con.appender("events") as appender:
                    appender.append_rows(rows[i : i + RAW_BATCH])
                    appender.flush()
                con.execute("COMMIT")
                latencies.append(time.perf_counter() - started)
        stored = con.execute("SELECT count(*) FROM events").fetchone()
    finally:
        con.close()
    _check_stored(path, len(rows), stored)
    return _row("limit", "duckdb append (raw)", RAW_BATCH, 1, len(rows), total.elapsed, latencies)


def measure_write_events(path: str, events: Sequence[ReceivedEvent]) -> dict[str, Any]:
    """``store.write_events`` per 1000 events, no HTTP: rows, dedupe, append and commit."""
    store = open_store(path)
    latencies = []
    try:
        with Timer() as total:
            for i in range(0, len(events), RAW_BATCH):
                started = time.perf_counter()
                store.write_events(events[i : i + RAW_BATCH])
                latencies.append(time.perf_counter() - started)
    finally:
        release(store)
    _check_stored(path, len(events))
    return _row("storage", "store.write_events", RAW_BATCH, 1, len(events), total.elapsed,
                latencies)  # fmt: skip


def _check_stored(path: str, expected: int, stored: Any = None) -> None:
    if stored is None:
        with duckdb.connect(path, read_only=True) as con:
            stored = con.execute("SELECT count(*) FROM events").fetchone()
    if stored is None or stored[0] != expected:
        raise RuntimeError(f"{path}: expected {expected} stored events, found {stored}")


# -- HTTP -------------------------------------------------------------------------------------


async def _post_all(
    client: httpx.AsyncClient, bodies: Sequence[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """Post every body, ``concurrency`` requests in flight; wall time and each latency."""
    latencies: list[float] = []
    pending = iter(bodies)

    async def post_next() -> None:
        for body in pending:  # shared: each body is taken by exactly one poster
            started = time.perf_counter()
            response = await client.post("/api/events", content=body, headers=_HEADERS)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 204:
                raise RuntimeError(f"POST /api/events: {response.status_code} {response.text}")

    with Timer() as timer:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(post_next)
    return timer.elapsed, latencies


class Workload(msgspec.Struct, frozen=True):
    """One HTTP measurement: bodies of ``batch`` events, posted ``concurrency`` at a time."""

    batch: int
    concurrency: int
    bodies: list[bytes]
    events: int


async def measure_in_process(
    path: str, workload: Workload, warmup: bytes
) -> dict[str, Any]:
    """The app in this process, reached through ``httpx.ASGITransport``."""
    app = create_app(Settings(database=path))
    transport = httpx.ASGITransport(app=app)
    async with (
        app_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://localevents") as client,
    ):
        await _post_all(client, [warmup], 1)
        seconds, latencies = await _post_all(client, workload.bodies, workload.concurrency)
    _check_stored(path, workload.events + _WARMUP_EVENTS)
    return _row("http", "in-process (ASGITransport)", workload.batch, workload.concurrency,
                workload.events, seconds, latencies)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_environ() -> dict[str, str]:
    # Only the command line configures the server: no stray key or URL from the caller.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALEVENTS_")}
    return {**environ, "PYTHONUNBUFFERED": "1"}


class Server:
    """``python -m localevents serve`` on a free loopback port, stopped on exit."""

    def __init__(self, path: str, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        command = [sys.executable, "-m", "localevents", "serve", "--port", str(self.port),
                   "--database", path, "--log-level", "warning"]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=_server_environ()
        )

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 30.0) -> None:
        """Poll ``/api/ready`` until it answers (or the server dies)."""
        with anyio.fail_after(timeout):
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"server exited with {self._process.returncode}")
                try:
                    if (await client.get("/api/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)

    def stop(self) -> None:
        """Ask uvicorn to shut down (SIGTERM), kill it if it will not."""
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


async def measure_uvicorn(
    path: str, workload: Workload, warmup: bytes, log: Path
) -> dict[str, Any]:
    """A real server in a subprocess, over loopback TCP, with one ``httpx.AsyncClient``."""
    server = Server(path, log)
    limits = httpx.Limits(max_connections=workload.concurrency)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            await server.wait_ready(client)
            await _post_all(client, [warmup], 1)
            seconds, latencies = await _post_all(client, workload.bodies, workload.concurrency)
    finally:
        server.stop()
    _check_stored(path, workload.events + _WARMUP_EVENTS)
    return _row("http", "uvicorn (loopback)", workload.batch, workload.concurrency,
                workload.events, seconds, latencies)  # fmt: skip


# -- the run ----------------------------------------------------------------------------------

_WARMUP_EVENTS = 10


def _workloads(events: Sequence[ReceivedEvent], sizes: Sizes) -> list[Workload]:
    def workload(batch: int, concurrency: int) -> Workload:
        count = sizes.single if batch == 1 else sizes.bulk
        return Workload(batch, concurrency, encode_batches(events[:count], batch), count)

    return [workload(batch, 1) for batch in BATCH_SIZES] + [workload(1000, 4)]


async def run_http(
    tmp: Path, workloads: Sequence[Workload], warmup: bytes
) -> list[dict[str, Any]]:
    """Every workload in-process, then every workload over uvicorn, each on a fresh file."""
    results = []
    for workload in workloads:
        path = str(tmp / f"in-process-{workload.batch}-{workload.concurrency}.duckdb")
        results.append(await measure_in_process(path, workload, warmup))
    for workload in workloads:
        name = f"uvicorn-{workload.batch}-{workload.concurrency}"
        path = str(tmp / f"{name}.duckdb")
        results.append(await measure_uvicorn(path, workload, warmup, tmp / f"{name}.log"))
    return results


def _with_ratios(results: list[dict[str, Any]], raw_rate: float) -> list[dict[str, Any]]:
    return [{**row, "vs_raw_append": round(row["events_per_s"] / raw_rate, 3)} for row in results]


def _targets(results: Sequence[dict[str, Any]]) -> list[Target]:
    in_process = next(
        row for row in results
        if row["path"].startswith("in-process") and row["batch"] == 1000
        and row["concurrency"] == 1
    )  # fmt: skip
    return [
        Target(
            name="durable events/s, in-process, batch 1000",
            measured=in_process["events_per_s"],
            limit=TARGET_EVENTS_PER_S,
            unit="events/s",
            higher_is_better=True,
        )
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Run every measurement and report."""
    args = parse_args(__doc__, argv)
    sizes = QUICK if args.quick else DEFAULT
    events = generate_events(max(sizes.bulk, sizes.single), seed=args.seed)
    warmup = encode_batches(generate_events(_WARMUP_EVENTS, seed=args.seed + 1), 1000)[0]
    bulk = events[: sizes.bulk]
    bodies = encode_batches(bulk, RAW_BATCH)
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name:
        tmp = Path(name)
        results = measure_decode(bodies, len(bulk))
        rows_result, rows = measure_rows(bulk)
        raw = measure_raw_append(str(tmp / "raw.duckdb"), rows)
        results += [rows_result, raw, measure_write_events(str(tmp / "store.duckdb"), bulk)]
        results += anyio.run(run_http, tmp, _workloads(events, sizes), warmup)
    results = _with_ratios(results, raw["events_per_s"])
    params = {"quick": args.quick, "seed": args.seed, "single": sizes.single, "bulk": sizes.bulk}
    report(NAME, params=params, results=results, targets=_targets(results))


if __name__ == "__main__":
    main()
