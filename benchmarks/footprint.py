"""Server memory: the resident set (RSS) of a real ``localevents serve`` process.

Two servers, each a subprocess whose ``/proc/<pid>/status`` is sampled every 0.2 s:

* **after ingest**: the server opens a copy of the cached 10M-event file (``--quick``: an
  empty file), then takes more standard events over loopback HTTP (batches of 1000, one
  request at a time), then answers the query set (first pages, count-by time, event and
  resource over the 30 days); RSS is read when it is ready, after the ingest, right after
  the queries, and once the server has been idle long enough to give DuckDB's cache of the
  file back (``localevents.storage._memory``): that is the server at rest, and the target
  (under 250 MB with 10M events stored); the peak is reported too;
* **while streaming**: on an empty file, one producer streams standard events over
  ``/api/events/in`` (checkpoint every 700 frames) while one subscriber of
  ``/api/events/out`` receives every one of them; RSS is read at every checkpoint (and
  every 0.2 s), against the events stored so far.
  Memory is flat if the last quarter of the stream uses at most 1.1x the RSS of its
  first quarter (after a warm-up of 10% of the events).

    uv run python -m benchmarks.footprint [--quick] [--size N] [--ingest N] [--stream N]
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
TARGET_FLAT = 1.1  # last quarter of a stream over its first quarter: "memory flat"
DEFAULT_SIZE, DEFAULT_INGEST, DEFAULT_STREAM = 10_000_000, 200_000, 70_000
QUICK_INGEST, QUICK_STREAM = 20_000, 7_000
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


async def after_ingest(
    server: Server, standard: StandardEvents, events: int, data: Dataset | None, progress: Progress
) -> AfterIngest:
    """Ingest ``events`` over loopback into a ready server, then run the query set."""
    found = AfterIngest()
    await server.wait_ready()
    found.ready = rss_bytes(server.pid)
    task = progress.add_task("ingest over loopback", total=events)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=600) as client,
        RssSampler(server.pid) as sampler,
    ):
        seconds = 0.0
        for first in range(0, events, 10 * BATCH):
            count = min(10 * BATCH, events - first)
            elapsed, _ = await post_all(client, standard.bodies(first, count, BATCH), 1)
            seconds += elapsed
            sampler.progress = first + count
            progress.advance(task, count)
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


def _quarters(sampler: RssSampler, events: int) -> tuple[list[float], list[float]]:
    """RSS samples (MB) of the first quarter after a 10% warm-up, and of the last quarter."""
    first = [_mb(b) for _, b, p in sampler.samples if events * 0.1 <= p <= events * 0.35]
    last = [_mb(b) for _, b, p in sampler.samples if p >= events * 0.75]
    return first, last


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, help="events in the file first (default 10M; 0: empty)")
    parser.add_argument("--ingest", type=int, help="events then posted (default 200,000)")
    parser.add_argument("--stream", type=int, help="events streamed (default 70,000)")


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


def _stream_figures(report: Report, sampler: RssSampler, events: int) -> None:
    group = f"server RSS while streaming {events:,} events to one subscriber"
    first, last = _quarters(sampler, events)
    report.add(
        Figure(
            key="stream.first",
            group=group,
            name="first quarter (after a 10% warm-up)",
            unit="MB",
            samples=first,
            per="sample",
            higher_is_better=False,
            short="first quarter",
        )
    )
    report.add(
        Figure(
            key="stream.last",
            group=group,
            name="last quarter",
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
    tmp: Path, data: Dataset | None, progress: Progress, *, ingest: int, stream: int, seed: int
) -> tuple[AfterIngest, RssSampler]:
    """Both servers, one after the other."""
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
        # Recent events: a live subscription's window starts 15 minutes back.
        recent = StandardEvents(seed=seed + 1, start=datetime.now(UTC) - timedelta(minutes=2))
        sampler = await while_streaming(server, recent, stream, progress)
    finally:
        server.stop()
    return found, sampler


def main(argv: Sequence[str] | None = None) -> None:
    """Measure both servers, print and save the report."""
    options = parse_args(__doc__, argv, _add_arguments)
    extra: dict[str, Any] = options.extra
    size = extra["size"] if extra["size"] is not None else (0 if options.quick else DEFAULT_SIZE)
    ingest = extra["ingest"] or (QUICK_INGEST if options.quick else DEFAULT_INGEST)
    stream = extra["stream"] or (QUICK_STREAM if options.quick else DEFAULT_STREAM)
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            "size": size,
            "ingest": ingest,
            "stream": stream,
            "events": f"{SAMPLES_SOURCE} (file: generate_events; posted: standard_event)",
        },
    )
    with Progress(console=console, transient=True) as progress:
        data = events_file(size, options.seed, progress) if size else None
        with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name, frozen_heap():
            run = functools.partial(measure, ingest=ingest, stream=stream, seed=options.seed)
            found, sampler = anyio.run(run, Path(name), data, progress)
    _ingest_figures(report, found, size, ingest)
    _stream_figures(report, sampler, stream)
    report.finish(options.out)


if __name__ == "__main__":
    main()
