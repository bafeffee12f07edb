"""Server memory: the resident set (RSS) of a real ``localevents serve`` process.

Two servers, each a subprocess whose ``/proc/<pid>/status`` is sampled every 0.2 s:

* **after ingest**: the server opens a copy of the cached 10M-event file (``--quick``: an
  empty file), then takes more standard events over loopback HTTP (batches of 1000, one
  request at a time), then answers the query set (first pages, count-by time, event and
  resource over the 30 days); RSS is read when it is ready, after the ingest, right after
  the queries, and once the server has been idle long enough to give DuckDB's cache of the
  file back (``localevents.storage._memory``): that is the server at rest, and the target
  (under 250 MB with 10M events stored); the peak is reported too;
* **while streaming**: on an empty file, the server first takes ``--prefill`` standard
  events (750,000) in POSTs of 1000, so that what it keeps by design has reached its bound,
  as in a server that has run for a while: the recent ids (131,072), DuckDB's cache of the
  file given back down to the idle budget (32 MB, about 730,000 standard events of blocks
  written by checkpoints) and the committed rows not yet checkpointed (up to 64 MB of WAL,
  a sawtooth). Then one producer streams standard events over ``/api/events/in``
  (checkpoint every 700 frames) while one subscriber of ``/api/events/out`` receives every
  one of them; RSS is read at every checkpoint (and every 0.2 s), against the events
  streamed so far. Memory is flat if the second half of the stream uses at most 1.1x the
  RSS of its first half (after a warm-up of 10% of the events): each half spans more than
  one period of the sawtooth. Without the prefill, a stream this short measures the
  bounded caches filling.

    uv run python -m benchmarks.footprint [--quick] [--size N] [--ingest N] [--prefill N]
        [--stream N]
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from rich.progress import Progress

from benchmarks._common import SAMPLES_SOURCE, StandardEvents, frozen_heap, parse_args
from benchmarks._datasets import DAYS, events_file
from benchmarks._report import Figure, Report, Target, console
from benchmarks._servers import (
    RssSampler,
    localevents_server,
    open_events_socket,
    post_all,
    rss_bytes,
)
from benchmarks._subscribers import subscribe_message
from benchmarks.ingest_ws import CHECKPOINT_EVERY, send_checkpointed
from localevents.storage._memory import IDLE_AFTER_S

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from benchmarks._datasets import Dataset
    from benchmarks._servers import Server

NAME = "footprint"
BATCH = 1000
TARGET_RSS_MB = 250.0  # server memory after ingesting 10M events (issue 5)
REST_S = IDLE_AFTER_S + 1.0  # idle that long, a server has given its cache back
TARGET_FLAT = 1.1  # second half of a stream over its first half: "memory flat"
DEFAULT_SIZE, DEFAULT_INGEST, DEFAULT_PREFILL, DEFAULT_STREAM = (
    10_000_000,
    200_000,
    750_000,
    200_000,
)
QUICK_INGEST, QUICK_PREFILL, QUICK_STREAM = 20_000, 10_000, 7_000
_MB = 2**20


def _mb(value: int | None) -> float:
    return float("nan") if value is None else value / _MB


async def _query_set(client: httpx.AsyncClient, since: str, until: str) -> None:
    window = {"occurred": {"since": since, "until": until}}
    pages: list[dict[str, Any]] = [{}, {"filter": {"event": {"prefix": ["prefect.flow-run."]}}}]
    for page in pages:
        (await client.post("/api/events/filter", json=page)).raise_for_status()
    for by, unit in (("time", "hour"), ("event", "day"), ("resource", "day")):
        count = {"filter": window, "time_unit": unit, "time_interval": 1}
        (await client.post(f"/api/events/count-by/{by}", json=count)).raise_for_status()


class AfterIngest:
    """RSS (bytes) when ready, after the ingest, after the queries, and the peak."""

    def __init__(self) -> None:
        self.ready: int | None = None
        self.ingested: int | None = None
        self.queried: int | None = None
        self.rested: int | None = None
        self.peak = 0
        self.events_per_s = 0.0


async def post_standard(
    client: httpx.AsyncClient, standard: StandardEvents, events: int, progress: Progress, what: str
) -> float:
    """Post ``events`` standard events in batches of :data:`BATCH`, one request at a time;
    the seconds it took."""
    task = progress.add_task(what, total=events)
    seconds = 0.0
    for first in range(0, events, 10 * BATCH):
        count = min(10 * BATCH, events - first)
        elapsed, _ = await post_all(client, standard.bodies(first, count, BATCH), 1)
        seconds += elapsed
        progress.advance(task, count)
    return seconds


async def after_ingest(
    server: Server, standard: StandardEvents, events: int, data: Dataset | None, progress: Progress
) -> AfterIngest:
    """Ingest ``events`` over loopback into a ready server, then run the query set."""
    found = AfterIngest()
    await server.wait_ready()
    found.ready = rss_bytes(server.pid)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=600) as client,
        RssSampler(server.pid) as sampler,
    ):
        seconds = await post_standard(client, standard, events, progress, "ingest over loopback")
        found.events_per_s = events / seconds if seconds else 0.0
        found.ingested = sampler.sample()
        since = data.since if data else standard.start
        until = data.until if data else standard.start + timedelta(days=1)
        await _query_set(client, since.isoformat(), until.isoformat())
        found.queried = sampler.sample()
        await anyio.sleep(REST_S)
        found.rested = sampler.sample()
    found.peak = sampler.peak
    return found


async def prefill(server: Server, standard: StandardEvents, events: int, progress: Progress) -> int:
    """Post ``events`` standard events to a ready server; its RSS afterwards."""
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as client:
        await post_standard(client, standard, events, progress, "prefill over loopback")
    return rss_bytes(server.pid) or 0


async def while_streaming(
    server: Server, standard: StandardEvents, events: int, progress: Progress
) -> RssSampler:
    """Stream ``events`` frames through ``/events/in`` to one subscriber of ``/events/out``."""
    await server.wait_ready()
    frames = standard.frames(0, events)
    received = 0
    done = anyio.Event()
    task = progress.add_task("streaming", total=events)

    async def subscribe(client: httpx.AsyncClient) -> None:
        nonlocal received
        async with open_events_socket(f"{server.url}/api/events/out", client) as ws:
            await ws.send_text(subscribe_message({}))
            ready.set()
            while received < events:
                await ws.receive_text()
                received += 1
        done.set()

    ready = anyio.Event()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=600) as client,
        RssSampler(server.pid) as sampler,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(subscribe, client)
        await ready.wait()
        await anyio.sleep(0.2)  # the subscription is registered before the first event
        async with open_events_socket(f"{server.url}/api/events/in", client) as ws:
            for first in range(0, events, CHECKPOINT_EVERY):
                chunk = frames[first : first + CHECKPOINT_EVERY]
                await send_checkpointed(ws, chunk)  # one checkpoint: all stored
                sampler.progress = first + len(chunk)
                sampler.sample()
                progress.advance(task, len(chunk))
        with anyio.fail_after(120):
            await done.wait()
    return sampler


def _halves(sampler: RssSampler, events: int) -> tuple[list[float], list[float]]:
    """RSS samples (MB) of the first half after a 10% warm-up, and of the second half."""
    first = [_mb(b) for _, b, p in sampler.samples if events * 0.1 <= p < events * 0.55]
    last = [_mb(b) for _, b, p in sampler.samples if p >= events * 0.55]
    return first, last


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, help="events in the file first (default 10M; 0: empty)")
    parser.add_argument("--ingest", type=int, help="events then posted (default 200,000)")
    parser.add_argument(
        "--prefill", type=int, help="events posted before the stream (default 750,000)"
    )
    parser.add_argument("--stream", type=int, help="events streamed (default 200,000)")


def _ingest_figures(report: Report, found: AfterIngest, size: int, events: int) -> None:
    group = f"server RSS: {size:,} events in the file, then {events:,} posted over loopback"
    for key, name, value in (
        ("ready", "when ready (file open)", found.ready),
        ("ingested", f"after posting {events:,} events", found.ingested),
        ("queried", f"right after the query set (pages, count-by over {DAYS} days)", found.queried),
        ("rested", f"{REST_S:g} s after the query set (the cache given back)", found.rested),
        ("peak", "peak while posting and querying", found.peak),
    ):
        targets = []
        if key == "rested" and size + events >= DEFAULT_SIZE:
            targets = [Target(limit=TARGET_RSS_MB, higher_is_better=False)]
        report.add(
            Figure(
                key=f"rss.{key}",
                group=group,
                name=name,
                unit="MB",
                samples=[_mb(value)],
                per="reading",
                higher_is_better=False,
                targets=targets,
            )
        )
    report.note(f"loopback ingest into the {size:,}-event file: {found.events_per_s:,.0f} events/s")


def _stream_figures(
    report: Report, prefill: int, prefilled: int, sampler: RssSampler, events: int
) -> None:
    group = (
        f"server RSS while streaming {events:,} events to one subscriber, after {prefill:,} posted"
    )
    first, last = _halves(sampler, events)
    report.add(
        Figure(
            key="stream.prefilled",
            group=group,
            name=f"after the {prefill:,} posted events",
            unit="MB",
            samples=[_mb(prefilled)],
            per="reading",
            higher_is_better=False,
        )
    )
    report.add(
        Figure(
            key="stream.first",
            group=group,
            name="first half of the stream (after a 10% warm-up)",
            unit="MB",
            samples=first,
            per="sample",
            higher_is_better=False,
            short="first half",
        )
    )
    report.add(
        Figure(
            key="stream.last",
            group=group,
            name="second half",
            unit="MB",
            samples=last,
            per="sample",
            higher_is_better=False,
            baseline="stream.first",
            targets=[Target(limit=TARGET_FLAT, on="ratio", higher_is_better=False)],
            detail={"rss_mb_by_events": [[p, round(_mb(b), 1)] for _, b, p in sampler.samples]},
        )
    )


async def measure(
    tmp: Path,
    data: Dataset | None,
    progress: Progress,
    *,
    ingest: int,
    prefill_events: int,
    stream: int,
    seed: int,
) -> tuple[AfterIngest, int, RssSampler]:
    """Both servers, one after the other: the first's figures, then the second's RSS
    after the prefill and its samples while streaming."""
    path = tmp / "events.duckdb"
    if data is not None:
        with console.status(f"copying the {data.count:,}-event file"):
            await anyio.to_thread.run_sync(shutil.copyfile, data.path, path)
    standard = StandardEvents(seed=seed)
    server = localevents_server(path, tmp / "ingest.log")
    try:
        found = await after_ingest(server, standard, ingest, data, progress)
    finally:
        server.stop()
    server = localevents_server(tmp / "stream.duckdb", tmp / "stream.log")
    try:
        prefilled = await prefill(server, StandardEvents(seed=seed + 2), prefill_events, progress)
        # Recent events: a live subscription's window starts 15 minutes back. 0.5 ms
        # apart, 200,000 of them still lie in the past when the stream ends.
        recent = StandardEvents(
            seed=seed + 1,
            start=datetime.now(UTC) - timedelta(minutes=2),
            step=timedelta(microseconds=500),
        )
        sampler = await while_streaming(server, recent, stream, progress)
    finally:
        server.stop()
    return found, prefilled, sampler


def main(argv: Sequence[str] | None = None) -> None:
    """Measure both servers, print and save the report."""
    options = parse_args(__doc__, argv, _add_arguments)
    extra: dict[str, Any] = options.extra
    size = extra["size"] if extra["size"] is not None else (0 if options.quick else DEFAULT_SIZE)
    ingest = extra["ingest"] or (QUICK_INGEST if options.quick else DEFAULT_INGEST)
    stream = extra["stream"] or (QUICK_STREAM if options.quick else DEFAULT_STREAM)
    prefill_events = extra["prefill"]
    if prefill_events is None:
        prefill_events = QUICK_PREFILL if options.quick else DEFAULT_PREFILL
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            "size": size,
            "ingest": ingest,
            "prefill": prefill_events,
            "stream": stream,
            "events": f"{SAMPLES_SOURCE} (file: generate_events; posted: standard_event)",
        },
    )
    with Progress(console=console, transient=True) as progress:
        data = events_file(size, options.seed, progress) if size else None
        with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name, frozen_heap():
            run = functools.partial(
                measure,
                ingest=ingest,
                prefill_events=prefill_events,
                stream=stream,
                seed=options.seed,
            )
            found, prefilled, sampler = anyio.run(run, Path(name), data, progress)
    _ingest_figures(report, found, size, ingest)
    _stream_figures(report, prefill_events, prefilled, sampler, stream)
    report.finish(options.out)


if __name__ == "__main__":
    main()
