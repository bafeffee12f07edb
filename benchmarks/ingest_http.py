"""Durable ingest over HTTP (``POST /api/events``), beside the limits of the machine.

One run, fresh DuckDB files in a temporary directory, the same generated events throughout:

* the physical limits: raw msgspec decode of the request bodies, the server's own decode
  (with validation), building the appender rows, and a raw DuckDB append of the same rows
  (appender + flush + COMMIT per 1000); then ``store.write_events`` without HTTP;
* HTTP ingest in-process (``httpx.ASGITransport`` inside ``app_lifespan``) and over a real
  loopback uvicorn server (``python -m localevents serve`` in a subprocess), at batch sizes
  1, 100 and 1000 with one request in flight, and at batch 1000 with four;
* each figure as a fraction of the raw DuckDB append rate measured in the same run.

Request bodies are encoded before timing (the client's encoding is not the server's cost),
and the generated events are hidden from the garbage collector while measuring. Each
request is answered 204 only after its events are committed, so these are durable events
per second; the stored row count is checked after every measurement.

    uv run python -m benchmarks.ingest_http [--quick]
"""

from __future__ import annotations

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
    Server,
    Target,
    Timer,
    append_rows,
    encode_batches,
    frozen_heap,
    generate_events,
    localevents_server,
    parse_args,
    percentile,
    rate,
    report,
    time_each,
)
from localevents import Settings, app_lifespan
from localevents.server import create_app
from localevents.server._ingest import decode_events
from localevents.storage import open_store, release
from localevents.storage._rows import Row, event_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from localevents import ReceivedEvent

NAME = "ingest_http"
BATCH_SIZES = (1, 100, 1000)
RAW_BATCH = 1000
TARGET_EVENTS_PER_S = 50_000  # durable, in-process, batch 1000 (issue 2)
WARMUP_EVENTS = 10
_HEADERS = {"content-type": "application/json"}


class Sizes(msgspec.Struct, frozen=True):
    """How many events each batch size posts (batch 1 is a request per event: fewer)."""

    by_batch: dict[int, int]

    @property
    def most(self) -> int:
        """Events to generate (every workload posts a prefix of the same events)."""
        return max(self.by_batch.values())


DEFAULT = Sizes({1: 2_000, 100: 100_000, 1000: 100_000})
QUICK = Sizes({1: 100, 100: 10_000, 1000: 10_000})


class Measurement(msgspec.Struct, kw_only=True):
    """``events`` handled in ``seconds`` of wall time, in operations of ``batch`` events."""

    stage: str
    path: str
    batch: int
    concurrency: int = 1
    events: int
    seconds: float
    latencies: list[float]  # of each operation (request, decode, commit), in seconds

    @property
    def events_per_s(self) -> float:
        """Throughput."""
        return rate(self.events, self.seconds)

    def as_row(self, raw_append: float) -> dict[str, Any]:
        """A result row, with the throughput as a fraction of the raw append rate."""
        return {
            "stage": self.stage,
            "path": self.path,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 3),
            "vs_raw_append": round(self.events_per_s / raw_append, 3),
        }


def _check_stored(path: str, expected: int) -> None:
    with duckdb.connect(path, read_only=True) as con:
        found = con.execute("SELECT count(*) FROM events").fetchone()
    if found is None or found[0] != expected:
        raise RuntimeError(f"{path}: expected {expected} stored events, found {found}")


# -- the limits -------------------------------------------------------------------------------


class _PlainEvent(msgspec.Struct, gc=False):
    """The wire shape without our validation: what msgspec alone costs (the decode limit)."""

    occurred: datetime
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]
    id: uuid.UUID
    follows: uuid.UUID | None = None
    received: datetime | None = None


def measure_decode(bodies: Sequence[bytes], events: int) -> list[Measurement]:
    """Raw msgspec decode of the bodies, then the server's (validation, received, size)."""
    plain = msgspec.json.Decoder(list[_PlainEvent]).decode
    settings = Settings()
    measured = []
    for path, decode in (
        ("msgspec decode (plain structs)", plain),
        ("server decode_events", lambda body: decode_events(body, settings)),
    ):
        seconds, latencies = time_each(bodies, decode)
        measured.append(
            Measurement(
                stage="limit",
                path=path,
                batch=RAW_BATCH,
                events=events,
                seconds=seconds,
                latencies=latencies,
            )
        )
    return measured


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def measure_rows(events: Sequence[ReceivedEvent]) -> tuple[Measurement, list[Row]]:
    """``event_row`` over every event (what the store hands the appender), and the rows."""
    batches: list[list[Row]] = []
    seconds, latencies = time_each(
        _batches(events, RAW_BATCH), lambda batch: batches.append([event_row(e) for e in batch])
    )
    measured = Measurement(
        stage="limit",
        path="event_row (build rows)",
        batch=RAW_BATCH,
        events=len(events),
        seconds=seconds,
        latencies=latencies,
    )
    return measured, [row for batch in batches for row in batch]


def measure_raw_append(path: str, rows: Sequence[Row]) -> Measurement:
    """The store's append (staging appender + INSERT + COMMIT) per 1000 prebuilt rows,
    with no validation and no duplicate check: DuckDB alone.

    The file is a real, empty events file (the store creates its schema), then closed and
    reopened with a bare DuckDB connection.
    """
    release(open_store(path))
    con = duckdb.connect(path)

    try:
        seconds, latencies = time_each(
            _batches(rows, RAW_BATCH),
            lambda batch: append_rows(con, batch, Path(path + ".scratch.ndjson")),
        )
    finally:
        con.close()
    _check_stored(path, len(rows))
    return Measurement(
        stage="limit",
        path="duckdb append (raw)",
        batch=RAW_BATCH,
        events=len(rows),
        seconds=seconds,
        latencies=latencies,
    )


def measure_write_events(path: str, events: Sequence[ReceivedEvent]) -> Measurement:
    """``store.write_events`` per 1000 events, no HTTP: rows, dedupe, append, commit."""
    store = open_store(path)
    try:
        seconds, latencies = time_each(_batches(events, RAW_BATCH), store.write_events)
    finally:
        release(store)
    _check_stored(path, len(events))
    return Measurement(
        stage="storage",
        path="store.write_events",
        batch=RAW_BATCH,
        events=len(events),
        seconds=seconds,
        latencies=latencies,
    )


# -- over HTTP --------------------------------------------------------------------------------


class Workload(msgspec.Struct, frozen=True):
    """Bodies of ``batch`` events each, posted ``concurrency`` at a time."""

    batch: int
    concurrency: int
    events: int
    bodies: list[bytes]


async def _post_all(
    client: httpx.AsyncClient, bodies: Sequence[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """Post every body with ``concurrency`` requests in flight: wall time and each latency."""
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


async def _measure_client(
    client: httpx.AsyncClient, path: str, workload: Workload, warmup: bytes
) -> Measurement:
    await _post_all(client, [warmup], 1)
    seconds, latencies = await _post_all(client, workload.bodies, workload.concurrency)
    return Measurement(
        stage="http",
        path=path,
        batch=workload.batch,
        concurrency=workload.concurrency,
        events=workload.events,
        seconds=seconds,
        latencies=latencies,
    )


async def measure_in_process(path: str, workload: Workload, warmup: bytes) -> Measurement:
    """The app in this process, reached through ``httpx.ASGITransport`` (as ``ephemeral()``)."""
    app = create_app(Settings(database=path), docs=False)
    # Litestar types its ASGI callable with TypedDict scopes, narrower than httpx's mapping.
    asgi_app: Any = app
    transport = httpx.ASGITransport(app=asgi_app)
    async with (
        app_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://localevents") as client,
    ):
        measured = await _measure_client(client, "in-process (ASGITransport)", workload, warmup)
    _check_stored(path, workload.events + WARMUP_EVENTS)
    return measured


async def measure_uvicorn(
    server: Server, path: str, workload: Workload, warmup: bytes
) -> Measurement:
    """A real server in a subprocess, over loopback TCP, through one ``httpx.AsyncClient``."""
    limits = httpx.Limits(max_connections=workload.concurrency)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            with anyio.fail_after(60):
                await server.wait_ready(client)
            measured = await _measure_client(client, "uvicorn (loopback)", workload, warmup)
    finally:
        server.stop()
    _check_stored(path, workload.events + WARMUP_EVENTS)
    return measured


def _workloads(events: Sequence[ReceivedEvent], sizes: Sizes) -> list[Workload]:
    plan = [(batch, 1) for batch in BATCH_SIZES] + [(1000, 4)]
    return [
        Workload(
            batch=batch,
            concurrency=concurrency,
            events=sizes.by_batch[batch],
            bodies=encode_batches(events[: sizes.by_batch[batch]], batch),
        )
        for batch, concurrency in plan
    ]


async def measure_http(
    tmp: Path, workloads: Sequence[Workload], warmup: bytes
) -> list[Measurement]:
    """Every workload in-process, then every workload over uvicorn, each on a fresh file.

    The servers all start together (they sit idle until their turn): starting is most of a
    quick run's time, and none of it is measured.
    """
    measured = []
    for workload in workloads:
        name = f"in-process-{workload.batch}x{workload.concurrency}"
        measured.append(await measure_in_process(str(tmp / f"{name}.duckdb"), workload, warmup))
    names = [f"uvicorn-{w.batch}x{w.concurrency}" for w in workloads]
    servers: list[Server] = []
    try:
        for name in names:
            servers.append(localevents_server(str(tmp / f"{name}.duckdb"), tmp / f"{name}.log"))
        for name, server, workload in zip(names, servers, workloads, strict=True):
            path = str(tmp / f"{name}.duckdb")
            measured.append(await measure_uvicorn(server, path, workload, warmup))
    finally:
        for server in servers:
            server.stop()
    return measured


# -- the run ----------------------------------------------------------------------------------


def _target(measured: Sequence[Measurement]) -> Target:
    in_process = next(
        m
        for m in measured
        if m.path.startswith("in-process") and m.batch == 1000 and m.concurrency == 1
    )
    return Target(
        name="durable events/s, in-process, batch 1000",
        measured=round(in_process.events_per_s),
        limit=TARGET_EVENTS_PER_S,
        unit="events/s",
        higher_is_better=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the limits, the store and HTTP ingest; print and save the report."""
    args = parse_args(__doc__, argv)
    sizes = QUICK if args.quick else DEFAULT
    events = generate_events(sizes.most, seed=args.seed)
    warmup = encode_batches(generate_events(WARMUP_EVENTS, seed=args.seed + 1), 1000)[0]
    bulk = events[: sizes.by_batch[RAW_BATCH]]
    bodies = encode_batches(bulk, RAW_BATCH)
    workloads = _workloads(events, sizes)
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name, frozen_heap():
        tmp = Path(name)
        measured = measure_decode(bodies, len(bulk))
        rows_measured, rows = measure_rows(bulk)
        raw = measure_raw_append(str(tmp / "raw.duckdb"), rows)
        del rows
        measured += [rows_measured, raw, measure_write_events(str(tmp / "store.duckdb"), bulk)]
        measured += anyio.run(measure_http, tmp, workloads, warmup)
    report(
        NAME,
        params={"quick": args.quick, "seed": args.seed, "events_by_batch": sizes.by_batch},
        results=[m.as_row(raw.events_per_s) for m in measured],
        targets=[_target(measured)],
    )


if __name__ == "__main__":
    main()
