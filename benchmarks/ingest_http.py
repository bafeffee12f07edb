"""Durable HTTP batch ingest (``POST /api/events``), beside the limits of the machine.

The generator's standard events throughout, in rounds: every round measures everything once, in
the same order, on new events (distinct ids), so each figure has one sample per round and
the machine's drift hits the limits and the code under test alike:

* the limits, in this process: raw msgspec decode of the request bodies (plain structs, no
  validation) and the server's own decode; a raw DuckDB append of the same rows into a real
  events file by each of DuckDB's fast paths (appender, pandas, ``read_json``; see
  ``benchmarks._raw``), the fastest being "raw DuckDB append"; ``store.write_events``
  without HTTP, on a new file and on one holding an event from a producer whose clock runs
  an hour ahead (every id then lies below the newest stored, as when producers interleave);
* HTTP in-process (``httpx.ASGITransport`` inside ``app_lifespan``, as ``ephemeral()``)
  and over loopback (``localevents serve`` in a subprocess), at batch 1, 100 and 1000 with
  one request in flight and at batch 1000 with four;
* a no-op request over each transport: the same bodies posted to a bare ASGI app that reads
  them and answers 204 (``benchmarks._sink``), the most a server could take per second.

Batch 1000 figures are compared with the raw DuckDB append, smaller batches with the no-op
request. Request bodies are encoded before timing, generated events are hidden from the
garbage collector, and every 204 means the events are committed (durable events per second);
stored totals are checked at the end.

    uv run python -m benchmarks.ingest_http [--quick]
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import duckdb
import httpx
import msgspec
from rich.progress import Progress

from benchmarks._common import (
    SAMPLES_SOURCE,
    Options,
    StandardEvents,
    as_received,
    chunks,
    frozen_heap,
    parse_args,
    rate,
    time_each,
)
from benchmarks._raw import RAW_METHODS, RawAppender, plain_decoder, table_rows
from benchmarks._report import Figure, Report, Target, console, percentile, summarize
from benchmarks._servers import (
    Server,
    localevents_server,
    post_all,
    stored_total,
    wait_all_ready,
)
from benchmarks._sink import bare_app
from localevents import ReceivedEvent, Settings, app_lifespan
from localevents.server import create_app
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


NAME = "ingest_http"
PLAN = ((1, 1), (100, 1), (1000, 1), (1000, 4))
RAW_BATCH = 1000
TARGET_IN_PROCESS = 100_000  # durable events/s, in-process, batch 1000 (issue 5)
TARGET_VS_RAW = 0.8  # of the raw DuckDB append of the same rows (issue 5)
TARGET_LOOPBACK = 60_000  # durable events/s, loopback uvicorn, batch 1000 (issue 5)
WARMUP_EVENTS = 10


class Sizes(msgspec.Struct, frozen=True):
    """Rounds, and the events each batch size posts per round (batch 1: fewer)."""

    rounds: int
    by_batch: dict[int, int]

    @property
    def per_round(self) -> int:
        """Events one round posts over one transport."""
        return sum(self.by_batch[batch] for batch, _ in PLAN)


DEFAULT = Sizes(rounds=3, by_batch={1: 150, 100: 6_000, 1000: 20_000})
QUICK = Sizes(rounds=3, by_batch={1: 30, 100: 1_000, 1000: 3_000})


class Workload(msgspec.Struct, frozen=True):
    """Request bodies of ``batch`` events, posted ``concurrency`` at a time; per round."""

    batch: int
    concurrency: int
    events: int
    bodies: list[list[bytes]]

    @property
    def key(self) -> str:
        """``b1000c4``."""
        return f"b{self.batch}c{self.concurrency}"

    @property
    def label(self) -> str:
        """``batch 1000, concurrency 4``."""
        return f"batch {self.batch}, concurrency {self.concurrency}"


class Rounds:
    """Everything measured, in order: events for each round, and samples per figure.

    Round ``r`` posts standard events ``r * per_round`` onwards, each workload its own
    slice of them; the limits work on the slice of batch 1000, one request at a time.
    """

    def __init__(self, standard: StandardEvents, sizes: Sizes) -> None:
        self.sizes = sizes
        self.workloads = []
        offset = 0
        firsts: dict[tuple[int, int], int] = {}
        for batch, concurrency in PLAN:
            count = sizes.by_batch[batch]
            starts = [r * sizes.per_round + offset for r in range(sizes.rounds)]
            firsts[batch, concurrency] = offset
            self.workloads.append(
                Workload(
                    batch=batch,
                    concurrency=concurrency,
                    events=count,
                    bodies=[standard.bodies(first, count, batch) for first in starts],
                )
            )
            offset += count
        count = sizes.by_batch[RAW_BATCH]
        self.bulk = [
            standard.events(r * sizes.per_round + firsts[RAW_BATCH, 1], count)
            for r in range(sizes.rounds)
        ]
        self.samples: dict[str, list[float]] = {}
        self.latencies: dict[str, list[float]] = {}

    def workload(self, batch: int, concurrency: int) -> Workload:
        """The workload of that batch size and concurrency."""
        return next(w for w in self.workloads if (w.batch, w.concurrency) == (batch, concurrency))

    def record(self, key: str, events: int, seconds: float, latencies: Sequence[float]) -> None:
        """One sample of ``key``: events per second, and the operations' latencies."""
        self.samples.setdefault(key, []).append(rate(events, seconds))
        self.latencies.setdefault(key, []).extend(latencies)


# -- the limits, in this process --------------------------------------------------------------


class Limits:
    """The in-process measurements, with everything they start from prepared untimed."""

    def __init__(self, tmp: Path, rounds: Rounds) -> None:
        received = datetime.now(UTC)
        self.rounds = rounds
        self.bodies = rounds.workload(1000, 1).bodies
        self.appenders = {m: RawAppender(tmp / f"raw-{m}.duckdb", m) for m in RAW_METHODS}
        self.prepared = {
            method: [
                [appender.prepare(b) for b in chunks(table_rows(events, received), RAW_BATCH)]
                for events in rounds.bulk
            ]
            for method, appender in self.appenders.items()
        }
        self.received = [
            [as_received(batch, received) for batch in chunks(events, RAW_BATCH)]
            for events in rounds.bulk
        ]
        self.store = open_store(str(tmp / "store.duckdb"))
        self.behind = open_store(str(tmp / "store-behind.duckdb"))
        self.behind.write_events([_ahead(self.received[0][0][0])])
        self.server_decode = _server_decoder()

    def measure(self, r: int) -> None:
        """Round ``r`` of every limit."""
        events = len(self.rounds.bulk[r])
        record = self.rounds.record
        record("decode.msgspec", events, *time_each(self.bodies[r], plain_decoder()))
        if self.server_decode is not None:
            record("decode.server", events, *time_each(self.bodies[r], self.server_decode))
        for method, appender in self.appenders.items():
            record(
                f"append.{method}", events, *time_each(self.prepared[method][r], appender.append)
            )
        record("store.write_events", events, *time_each(self.received[r], self.store.write_events))
        write = self.behind.write_events
        record("store.write_events.behind", events, *time_each(self.received[r], write))

    def close(self) -> None:
        """Check every file holds what was appended, and close them."""
        expected = sum(len(events) for events in self.rounds.bulk)
        try:
            for method, appender in self.appenders.items():
                if appender.count() != expected:
                    raise RuntimeError(f"raw {method}: {appender.count()} rows, not {expected}")
        finally:
            for appender in self.appenders.values():
                appender.close()
            release(self.store)
            release(self.behind)


def _ahead(event: ReceivedEvent) -> ReceivedEvent:
    """``event`` with the id a producer whose clock runs an hour ahead would give it: every
    id of the workload is below it, so none is known new from its value alone."""
    ms = int(event.occurred.timestamp() * 1000) + 3_600_000
    return msgspec.structs.replace(event, id=uuid.UUID(int=ms << 80 | 0x7 << 76 | 1 << 63))


def _server_decoder() -> Callable[[bytes], object] | None:
    """The server's batch decode (validation, rows), if this version has one to call."""
    try:
        from localevents.server._ingest import decode_events
    except ImportError:
        return None
    settings = Settings()
    return lambda body: decode_events(body, settings)


# -- over HTTP ---------------------------------------------------------------------------------


class Transport(msgspec.Struct, kw_only=True):
    """A client for the real app and one for the no-op app, over the same transport."""

    key: str
    label: str
    client: httpx.AsyncClient
    noop: httpx.AsyncClient


async def measure_round(rounds: Rounds, transports: Sequence[Transport], r: int) -> None:
    """Round ``r`` of every workload over every transport, each beside its no-op twin."""
    for transport in transports:
        for workload in rounds.workloads:
            bodies, concurrency = workload.bodies[r], workload.concurrency
            key = f"{transport.key}.{workload.key}"
            events = workload.events
            rounds.record(key, events, *await post_all(transport.client, bodies, concurrency))
            rounds.record(
                f"noop.{key}", events, *await post_all(transport.noop, bodies, concurrency)
            )


def _asgi_client(app: Any) -> httpx.AsyncClient:
    # Litestar types its ASGI callable with TypedDict scopes, narrower than httpx's mapping.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def measure_all(tmp: Path, rounds: Rounds, warmup: bytes, progress: Progress) -> None:
    """Start the servers, open the in-process app, then run every round."""
    served = localevents_server(tmp / "uvicorn.duckdb", tmp / "uvicorn.log")
    sink = Server(["benchmarks._sink", "--app", "asgi"], tmp / "sink.log")
    app = create_app(Settings(database=str(tmp / "in-process.duckdb")), docs=False)
    limits = Limits(tmp, rounds)
    steps = progress.add_task("rounds", total=rounds.sizes.rounds)
    try:
        await wait_all_ready([served, sink])
        limits_a = httpx.Limits(max_connections=4)
        async with (
            app_lifespan(app),
            _asgi_client(app) as in_process,
            _asgi_client(bare_app) as in_process_noop,
            httpx.AsyncClient(base_url=served.url, timeout=120, limits=limits_a) as loopback,
            httpx.AsyncClient(base_url=sink.url, timeout=120, limits=limits_a) as loopback_noop,
        ):
            transports = [
                Transport(
                    key="in-process",
                    label="HTTP in-process (httpx.ASGITransport)",
                    client=in_process,
                    noop=in_process_noop,
                ),
                Transport(
                    key="loopback",
                    label="HTTP over loopback (localevents serve, uvicorn)",
                    client=loopback,
                    noop=loopback_noop,
                ),
            ]
            for transport in transports:
                await post_all(transport.client, [warmup], 1)
            for r in range(rounds.sizes.rounds):
                limits.measure(r)
                await measure_round(rounds, transports, r)
                progress.advance(steps)
            expected = rounds.sizes.rounds * rounds.sizes.per_round + WARMUP_EVENTS
            if (found := await stored_total(loopback)) != expected:
                raise RuntimeError(f"uvicorn: {found} events stored, not {expected}")
        _check_stored(tmp / "in-process.duckdb", expected)
    finally:
        limits.close()
        served.stop()
        sink.stop()


def _check_stored(path: Path, expected: int) -> None:
    with duckdb.connect(str(path), read_only=True) as con:
        found = con.execute("SELECT count(*) FROM events").fetchone()
    if found is None or found[0] != expected:
        raise RuntimeError(f"{path}: expected {expected} stored events, found {found}")


# -- the report --------------------------------------------------------------------------------


def _figure(rounds: Rounds, key: str, group: str, name: str, **more: Any) -> Figure:
    latencies = rounds.latencies.get(key, [])
    detail = {
        "operation_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "operation_p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }
    return Figure(
        key=key,
        group=group,
        name=name,
        unit="events/s",
        samples=[round(s, 1) for s in rounds.samples[key]],
        detail=detail,
        **more,
    )


def _limit_figures(report: Report, rounds: Rounds) -> None:
    group = "limits, in this process (1000 events per operation)"
    name = "msgspec decode, plain structs"
    report.add(_figure(rounds, "decode.msgspec", group, name, short="msgspec"))
    if "decode.server" in rounds.samples:
        name = "server decode_events (validation, rows)"
        report.add(_figure(rounds, "decode.server", group, name, baseline="decode.msgspec"))
    methods = {m: summarize(rounds.samples[f"append.{m}"]).median for m in RAW_METHODS}
    best = max(methods, key=lambda m: methods[m])
    rounds.samples["raw_append"] = rounds.samples[f"append.{best}"]
    rounds.latencies["raw_append"] = rounds.latencies[f"append.{best}"]
    name = f"raw DuckDB append = the fastest below ({best})"
    report.add(_figure(rounds, "raw_append", group, name, short="raw append"))
    for method in RAW_METHODS:
        name = f"DuckDB {method}, 1000 rows per commit"
        report.add(_figure(rounds, f"append.{method}", group, name, baseline="raw_append"))
    report.add(
        _figure(
            rounds,
            "store.write_events",
            "the store without HTTP",
            "store.write_events, 1000 per call",
            baseline="raw_append",
        )
    )
    report.add(
        _figure(
            rounds,
            "store.write_events.behind",
            "the store without HTTP",
            "... every id below one stored from a clock an hour ahead",
            baseline="raw_append",
        )
    )


def _http_figures(report: Report, rounds: Rounds) -> None:
    for transport, group in (
        ("in-process", "HTTP in-process (httpx.ASGITransport)"),
        ("loopback", "HTTP over loopback (localevents serve under uvicorn)"),
    ):
        for workload in rounds.workloads:
            key = f"{transport}.{workload.key}"
            noop = f"noop.{key}"
            targets: list[Target] = []
            if workload.key == "b1000c1" and transport == "in-process":
                targets = [Target(limit=TARGET_IN_PROCESS), Target(limit=TARGET_VS_RAW, on="ratio")]
            elif workload.key == "b1000c1":
                targets = [Target(limit=TARGET_LOOPBACK)]
            baseline = "raw_append" if workload.batch == RAW_BATCH else noop
            report.add(
                _figure(rounds, key, group, workload.label, baseline=baseline, targets=targets)
            )
        for workload in rounds.workloads:
            key = f"noop.{transport}.{workload.key}"
            name = f"no-op POST (bare ASGI app), {workload.label}"
            report.add(_figure(rounds, key, f"{group}: the no-op request", name, short="no-op"))


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the limits, the store and HTTP ingest; print and save the report."""
    options: Options = parse_args(__doc__, argv)
    sizes = QUICK if options.quick else DEFAULT
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            "rounds": sizes.rounds,
            "events_per_round": sizes.by_batch,
            "events": f"{SAMPLES_SOURCE}.standard_event",
        },
    )
    with console.status("preparing standard events"):
        standard = StandardEvents(seed=options.seed)
        rounds = Rounds(standard, sizes)
        warmup = standard.bodies(sizes.rounds * sizes.per_round, WARMUP_EVENTS, WARMUP_EVENTS)[0]
    bulk = rounds.workload(RAW_BATCH, 1).bodies[0]
    report.params["mean_event_bytes"] = round(sum(map(len, bulk)) / sizes.by_batch[RAW_BATCH])
    with (
        tempfile.TemporaryDirectory(prefix="localevents-bench-") as name,
        frozen_heap(),
        Progress(console=console, transient=True) as progress,
    ):
        anyio.run(measure_all, Path(name), rounds, warmup, progress)
    _limit_figures(report, rounds)
    _http_figures(report, rounds)
    report.finish(options.out)


if __name__ == "__main__":
    main()
