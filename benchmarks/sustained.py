"""Sustained durable ingest over a large run, and bytes on disk per standard event.

From an empty events file, standard events are posted in batches of 1000, one request at a
time, to the in-process app (``httpx.ASGITransport`` inside ``app_lifespan``), segment after
segment (a million events each with ``--events 10000000``), and each segment's throughput
is a sample: a flat series means ingest does not slow as the table grows. Each segment's
request bodies are encoded just before it, outside its timing.

This machine's speed drifts by 30% or more within a minute, which alone can make a series
look flat or decaying. So each segment also posts every tenth of its bodies (a larger share
of a segment shorter than 200 bodies, so that it posts at least 20), each right after it
went to the growing file, to a second app over a new file of its own (the fresh file, made
for that segment): the same work at the same moment, on a file that does not grow. The
target ("no decay": at least 0.9x) compares the segments of the second half with those of
the first as ratios to the fresh file's rate in the same segment; the plain rates are
reported beside them.

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
FRESH_EVERY = 10  # one body in this many is posted to the segment's fresh file too...
FRESH_POSTS = 20  # ...or more, so that a short segment still has this many
TARGET_BYTES_PER_EVENT = 200.0  # on disk, per standard event (issue 5)
DEFAULT_EVENTS, DEFAULT_SEGMENT = 1_000_000, 200_000
QUICK_EVENTS, QUICK_SEGMENT = 50_000, 10_000


class Run:
    """What the run measured: each segment's events per second into the growing file and
    into its fresh file, and RSS."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.fresh: list[float] = []
        self.rss: list[int | None] = []

    @property
    def vs_fresh(self) -> list[float]:
        """Each segment's rate as a ratio to its fresh file's."""
        return [grown / fresh for grown, fresh in zip(self.rates, self.fresh, strict=True)]


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600)


async def _post(client: httpx.AsyncClient, body: bytes) -> float:
    seconds, _ = await post_all(client, [body], 1)
    return seconds


async def _segment(
    client: httpx.AsyncClient, bodies: Sequence[bytes], fresh_file: Path
) -> tuple[float, float, int]:
    """Post ``bodies`` to ``client``'s app, and every tenth of them (more in a short
    segment) also to an app over ``fresh_file``: seconds spent on each, and the events the
    fresh file got."""
    fresh_app = create_app(Settings(database=str(fresh_file)), docs=False)
    grown = fresh = 0.0
    fresh_events = 0
    every = max(1, min(FRESH_EVERY, len(bodies) // FRESH_POSTS))
    async with app_lifespan(fresh_app), _client(fresh_app) as fresh_client:
        for index, body in enumerate(bodies):
            grown += await _post(client, body)
            if index % every == 0:
                fresh += await _post(fresh_client, body)
                fresh_events += BATCH
    return grown, fresh, fresh_events


async def ingest(path: Path, events: int, segment: int, seed: int, progress: Progress) -> Run:
    """Post ``events`` standard events in segments of ``segment`` and time each segment,
    beside a fresh file per segment (see the module docstring)."""
    standard = StandardEvents(seed=seed)
    app = create_app(Settings(database=str(path)), docs=False)
    run = Run()
    task = progress.add_task("sustained ingest", total=events)
    async with app_lifespan(app), _client(app) as client:
        for first in range(0, events, segment):
            count = min(segment, events - first)
            bodies = standard.bodies(first, count, BATCH)
            fresh_file = path.with_name(f"fresh-{first}.duckdb")
            with frozen_heap():
                grown, fresh, fresh_events = await _segment(client, bodies, fresh_file)
            for leftover in path.parent.glob(f"{fresh_file.name}*"):
                leftover.unlink()
            run.rates.append(rate(count, grown))
            run.fresh.append(rate(fresh_events, fresh))
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
    _halves(report, group, "", run.rates, unit="events/s", target=None)
    flat = Target(limit=TARGET_FLAT, on="ratio")
    _halves(report, group, "_vs_fresh", run.vs_fresh, unit="x", target=flat)
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
    fresh = ", ".join(f"{r / 1000:.0f}k" for r in run.fresh)
    report.note(f"a fresh file's events/s in the same segments: {fresh}")
    over = ", ".join(f"{r:.2f}" for r in run.vs_fresh)
    report.note(f"each segment over the fresh file's: {over}")
    rss = [f"{b / 2**20:.0f}" for b in run.rss if b is not None]
    report.note(f"this process's RSS after each segment (MB): {', '.join(rss)}")


def _halves(
    report: Report,
    group: str,
    suffix: str,
    values: list[float],
    *,
    unit: str,
    target: Target | None,
) -> None:
    """The segments of each half as a figure (keys ``first``/``second`` + ``suffix``), the
    second compared with the first (and held to ``target``, if any)."""
    half = len(values) // 2
    over = ", over a fresh file's" if suffix else ""
    first, second = f"first{suffix}", f"second{suffix}"
    for key, samples, name in (
        (first, values[:half], f"segments of the first half{over}"),
        (second, values[len(values) - half :], f"segments of the second half{over}"),
    ):
        report.add(
            Figure(
                key=key,
                group=group,
                name=name,
                unit=unit,
                samples=samples,
                per="segment",
                baseline=first if key == second else None,
                targets=[target] if key == second and target is not None else [],
                short="first half",
            )
        )


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
