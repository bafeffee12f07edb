"""Sustained durable ingest over a large run, and bytes on disk per standard event.

From an empty events file, standard events are posted in batches of 1000, one request at a
time, to the in-process app (``httpx.ASGITransport`` inside ``app_lifespan``), segment after
segment (a million events each with ``--events 10000000``), and each segment's throughput
is a sample: a flat series means ingest does not slow as the table grows. Each segment's
request bodies are encoded just before it, outside its timing. The segments of the second
half are compared with those of the first (the target reads "no decay": at least 0.9x).

Afterwards the file is closed, checkpointed, and its size divided by the events it holds
is the bytes on disk per standard event (the file's used blocks alone are in the detail).

    uv run python -m benchmarks.sustained [--quick] [--events N] [--segment N]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import duckdb
import httpx
from rich.progress import Progress

from benchmarks._common import SAMPLES_SOURCE, StandardEvents, frozen_heap, parse_args, rate
from benchmarks._report import Figure, Report, Target, console
from benchmarks._servers import post_all, rss_bytes
from localevents import Settings, app_lifespan
from localevents.server import create_app

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

NAME = "sustained"
BATCH = 1000
TARGET_EVENTS_PER_S = 100_000  # in-process, batch 1000 (issue 5)
TARGET_FLAT = 0.9  # the second half's segments at least 0.9x the first half's: "no decay"
TARGET_BYTES_PER_EVENT = 200.0  # on disk, per standard event (issue 5)
DEFAULT_EVENTS, DEFAULT_SEGMENT = 1_000_000, 200_000
QUICK_EVENTS, QUICK_SEGMENT = 50_000, 10_000


class Run:
    """What the run measured: each segment's events per second, batch latencies, RSS."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.rss: list[int | None] = []


async def ingest(path: Path, events: int, segment: int, seed: int, progress: Progress) -> Run:
    """Post ``events`` standard events in segments of ``segment`` and time each segment."""
    standard = StandardEvents(seed=seed)
    app = create_app(Settings(database=str(path)), docs=False)
    asgi: Any = app
    transport = httpx.ASGITransport(app=asgi)
    run = Run()
    task = progress.add_task("sustained ingest", total=events)
    async with (
        app_lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client,
    ):
        for first in range(0, events, segment):
            count = min(segment, events - first)
            bodies = standard.bodies(first, count, BATCH)
            with frozen_heap():
                seconds, _ = await post_all(client, bodies, 1)
            run.rates.append(rate(count, seconds))
            run.rss.append(rss_bytes(os.getpid()))
            progress.advance(task, count)
    return run


class Disk:
    """The file after a CHECKPOINT: its size, its used blocks, and how many events."""

    def __init__(self, path: Path) -> None:
        with duckdb.connect(str(path)) as con:
            con.execute("CHECKPOINT")
            found = con.execute("SELECT count(*) FROM events").fetchone()
            blocks = con.execute("SELECT used_blocks, block_size FROM pragma_database_size()")
            used, block = blocks.fetchall()[0]
        self.events = 0 if found is None else int(found[0])
        self.file_bytes = path.stat().st_size
        self.used_bytes = int(used) * int(block)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, help="events to ingest (default 1,000,000)")
    parser.add_argument("--segment", type=int, help="events per sample (default 200,000)")


def _figures(report: Report, run: Run, segment: int, disk: Disk) -> None:
    group = "sustained ingest: HTTP in-process, batch 1000, from an empty file"
    report.add(
        Figure(
            key="segments",
            group=group,
            name=f"every segment of {segment:,} events",
            unit="events/s",
            samples=run.rates,
            per="segment",
            targets=[Target(limit=TARGET_EVENTS_PER_S)],
            detail={"events_per_s_by_segment": [round(r) for r in run.rates]},
        )
    )
    half = len(run.rates) // 2
    for key, rates, name in (
        ("first", run.rates[:half], "segments of the first half"),
        ("second", run.rates[len(run.rates) - half :], "segments of the second half"),
    ):
        report.add(
            Figure(
                key=key,
                group=group,
                name=name,
                unit="events/s",
                samples=rates,
                per="segment",
                baseline="first" if key == "second" else None,
                targets=[Target(limit=TARGET_FLAT, on="ratio")] if key == "second" else [],
                short="first half",
            )
        )
    report.add(
        Figure(
            key="disk",
            group="bytes on disk (after CHECKPOINT)",
            name=f"file size per standard event ({disk.events:,} events)",
            unit="bytes/event",
            samples=[disk.file_bytes / disk.events],
            per="file",
            higher_is_better=False,
            targets=[Target(limit=TARGET_BYTES_PER_EVENT, higher_is_better=False)],
            detail={
                "file_bytes": disk.file_bytes,
                "used_block_bytes": disk.used_bytes,
                "used_bytes_per_event": round(disk.used_bytes / disk.events, 1),
            },
        )
    )
    series = ", ".join(f"{r / 1000:.0f}k" for r in run.rates)
    report.note(f"events/s per segment of {segment:,}, in order: {series}")
    rss = [f"{b / 2**20:.0f}" for b in run.rss if b is not None]
    report.note(f"this process's RSS after each segment (MB): {', '.join(rss)}")


def main(argv: Sequence[str] | None = None) -> None:
    """Ingest, measure the file, print and save the report."""
    options = parse_args(__doc__, argv, _add_arguments)
    events = options.extra["events"] or (QUICK_EVENTS if options.quick else DEFAULT_EVENTS)
    segment = options.extra["segment"] or (QUICK_SEGMENT if options.quick else DEFAULT_SEGMENT)
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            "events": events,
            "segment": segment,
            "batch": BATCH,
            "events_source": f"{SAMPLES_SOURCE}.standard_event",
        },
    )
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name:
        path = Path(name) / "sustained.duckdb"
        with Progress(console=console, transient=True) as progress:
            run = anyio.run(ingest, path, events, segment, options.seed, progress)
        disk = Disk(path)
        if disk.events != events:
            raise RuntimeError(f"{disk.events} events stored, not {events}")
    _figures(report, run, segment, disk)
    report.finish(options.out)


if __name__ == "__main__":
    main()
