"""``localevents sample``: an events file of generated events (``localevents.samples``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from localevents._cli._params import FiniteRange, parse_instant
from localevents._cli._progress import counting_commits, open_progress
from localevents._cli._render import counted, stderr_console, utc_day
from localevents._cli._target import Target, reporting_errors
from localevents.events._filters import DEFAULT_LOOKBACK, default_since
from localevents.events._samples import MOST_PER_HOUR, SAMPLE_SPAN, SAMPLE_START, most_events
from localevents.events._time import LATEST
from localevents.samples import write_sample_database
from localevents.storage import open_store, release

__all__ = ("MAXIMUM_DAYS", "sample")

MAXIMUM_DAYS = 3660
"""The longest span ``--days`` accepts: ten years."""


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Events to generate.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="The same seed, the same events."
)
@click.option(
    "--start",
    callback=parse_instant,
    metavar="TIME",
    help=f"First instant: ISO 8601, or ago (28d) [default: {SAMPLE_START:%Y-%m-%dT%H:%M:%SZ}]",
)
@click.option(
    "--days",
    type=FiniteRange(min=0, max=MAXIMUM_DAYS, min_open=True),
    default=SAMPLE_SPAN.days,
    show_default=True,
    help="How many days the events span.",
)
def sample(*, path: Path, count: int, seed: int, start: datetime | None, days: float) -> None:
    """Write realistic generated events to the events file PATH (created if missing).

    Flow and task runs, a shop, worker heartbeats and deployments, with daily rhythms,
    incidents and sales (see docs/sample-data.md). The same options with the default or an
    ISO 8601 --start give the same events, ids included, so writing that sample twice adds
    nothing; a start given as ago (28d) moves with the clock, so each run adds its own.
    """
    if start is not None:
        _check_end(start, days)
    if count > (most := most_events(timedelta(days=days))):
        raise click.BadParameter(
            f"{count:,} events over {days:g} days are more than the generator makes: at "
            f"most {most:,} ({MOST_PER_HOUR:,} per hour, which it holds in memory); give "
            "more --days or a smaller --count",
            param_hint="'--count'",
        )
    with reporting_errors(Target(database=str(path))):
        store = open_store(str(path))  # first: a file held by a server is a clear error
        try:
            with open_progress(f"writing {path}", total=count) as bar, counting_commits(store, bar):
                written = write_sample_database(
                    path, count, seed=seed, start=start, span=timedelta(days=days)
                )
        finally:
            release(store)
    err = stderr_console()
    err.print(f"wrote {counted(written, 'new event')} to {path}")
    first = start or SAMPLE_START
    if first + timedelta(days=days) < default_since():
        day = utc_day(first)
        err.print(
            f"they occurred from {day}, before the {DEFAULT_LOOKBACK.days} days "
            f"that queries look at by default: add --since {day} to see them "
            "(or write the sample with --start 28d)",
            style="dim",
            soft_wrap=True,
        )


def _check_end(start: datetime, days: float) -> None:
    """Refuse (exit 2) a sample that would end after year 9999 (in UTC)."""
    try:
        (start + timedelta(days=days)).astimezone(UTC)
    except OverflowError:
        latest = utc_day(LATEST - timedelta(days=days))
        raise click.BadParameter(
            f"{start.isoformat()} with --days {days:g} ends after year 9999: start by "
            f"{latest}, or give fewer --days",
            param_hint="'--start'",
        ) from None
