"""``localevents count``: how many events match, by time bucket, day, event or resource,
as a bar chart."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from localevents._cli._filters import Criteria, filter_options
from localevents._cli._hints import LOOKBACK, print_hint, window_hint
from localevents._cli._params import FiniteRange
from localevents._cli._render import (
    count_chart,
    counted,
    json_line,
    shown_instant,
    stderr_console,
    stdout_console,
)
from localevents._cli._target import target_options
from localevents._exceptions import InvalidRequestError, TooManyBuckets
from localevents.client._sync_api import get_sync_client
from localevents.events._counting import MAXIMUM_BUCKETS, Countable, TimeUnit, plan_buckets
from localevents.events._time import EARLIEST, LATEST, now_utc

if TYPE_CHECKING:
    from localevents._cli._target import Target
    from localevents.events._filters import EventFilter

__all__ = ("DEFAULT_BUCKETS", "DEFAULT_LIMIT", "count")

DEFAULT_BUCKETS = 24
"""Without --since, a ``time`` or ``day`` count covers this many buckets up to now."""
DEFAULT_LIMIT = 50
"""Rows an ``event`` or ``resource`` chart shows without -n (--json writes every row)."""
_LISTS = (Countable.event, Countable.resource)
"""The countables whose rows are names, most frequent first: -n keeps the top ones."""
_CALENDAR = LATEST - EARLIEST
"""Years 1-9999: one bucket of a time count is never longer."""
_ROWS = {
    Countable.time: "bucket",
    Countable.day: "day",
    Countable.event: "event name",
    Countable.resource: "resource",
}


@click.command()
@click.argument("countable", type=click.Choice([c.value for c in Countable]))
@filter_options(window=True)
@click.option(
    "--unit",
    type=click.Choice([u.value for u in TimeUnit]),
    default=TimeUnit.hour.value,
    show_default=True,
    help="Bucket unit for 'time' ('day' always counts calendar days).",
)
@click.option(
    "--interval",
    type=FiniteRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Units per 'time' bucket.",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"For 'event' and 'resource': show the N most frequent, and how many more there "
    f"are (default {DEFAULT_LIMIT}; with --json all; 0 shows all).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON row per line (NDJSON).")
@target_options
def count(
    *,
    countable: str,
    criteria: Criteria,
    unit: str,
    interval: float,
    limit: int | None,
    as_json: bool,
    target: Target,
) -> None:
    """Count matching events by COUNTABLE: time, day, event or resource.

    'time' and 'day' cover the last 24 buckets unless --since says otherwise (at most 1000
    buckets); 'event' and 'resource' list the most frequent first, the top 50 unless -n
    says otherwise (with --json, all of them).
    """
    what, time_unit = Countable(countable), TimeUnit(unit)
    if limit is not None and what not in _LISTS:
        raise click.UsageError(
            f"-n/--limit is for 'event' and 'resource': '{what.value}' shows every bucket "
            "(choose them with --since, --until and --unit)"
        )
    if limit is None:  # every bucket of a time count: its window chose them
        limit = DEFAULT_LIMIT if what in _LISTS and not as_json else 0
    if what is Countable.time:
        _check_interval(time_unit, interval)
    event_filter = criteria.to_filter(since=_default_since(criteria, what, time_unit, interval))
    _check_buckets(event_filter, what, time_unit, interval)
    with (
        target.session(existing_file=True),
        get_sync_client(api_url=target.api_url, api_key=target.api_key) as client,
    ):
        rows = client.count_events(what, event_filter, time_unit, interval)
        total = sum(row.count for row in rows)
        hint = window_hint(
            client,
            event_filter,
            found=total,
            window=_default_window(what, time_unit, interval),
            bucket=_bucket(what, time_unit, interval),
            units=what is Countable.time,
        )
    shown = rows[:limit] if limit else rows  # most frequent first, as the API answers
    left_out = f"... and {len(rows) - len(shown):,} more" if len(shown) < len(rows) else None
    if as_json:
        if shown:
            click.echo("\n".join(json_line(row) for row in shown))
        if left_out:  # not in the NDJSON
            stderr_console().print(f"{left_out} (-n 0 writes all)", style="dim")
        print_hint(hint)
        return
    out = stdout_console()
    out.print(count_chart(shown, what, time_unit, width=out.width))
    if left_out:
        out.print(f"{left_out} (-n 0 shows all)", style="dim")
    summary = f"{counted(total, 'event')}, {counted(len(rows), _ROWS[what])}"
    stderr_console().print(summary, style="dim")
    print_hint(hint)


def _check_interval(unit: TimeUnit, interval: float) -> None:
    """Refuse (exit 2) an interval one bucket of which would not fit in years 1-9999."""
    longest = math.floor(_CALENDAR / timedelta(microseconds=unit.microseconds))
    if interval > longest:
        raise click.BadParameter(
            f"{interval:g} {unit.value}s is longer than years 1-9999: with --unit "
            f"{unit.value} it is at most {longest}",
            param_hint="'--interval'",
        )


def _check_buckets(
    event_filter: EventFilter, countable: Countable, unit: TimeUnit, interval: float
) -> None:
    """Refuse (exit 2), before any request, a time count that the store would refuse: more
    than :data:`MAXIMUM_BUCKETS` buckets, or buckets outside years 1-9999."""
    if countable in _LISTS:
        return
    if countable is Countable.day:  # one-day buckets, whatever --unit and --interval say
        unit, interval = TimeUnit.day, 1.0
    now = now_utc()
    since, until = event_filter.occurred.since, event_filter.occurred.until
    if until is None and since > now:  # --since after --until is refused with the filter
        raise click.BadParameter(
            f"{shown_instant(since)} is in the future: a count ends now unless --until says when",
            param_hint="'--since'",
        )
    try:
        plan_buckets(since, until, unit, interval, now)
    except TooManyBuckets:
        span = (now if until is None else until) - since
        raise click.UsageError(_too_many(span, countable, unit, interval)) from None
    except InvalidRequestError as exc:
        raise click.UsageError(str(exc)) from None


def _too_many(span: timedelta, countable: Countable, unit: TimeUnit, interval: float) -> str:
    """Why a count of ``span`` makes too many buckets, and what makes fewer."""
    width = timedelta(microseconds=unit.microseconds)
    buckets = math.ceil(span / (width * interval))
    over = f"more than the limit of {MAXIMUM_BUCKETS} buckets a count may have"
    if countable is Countable.day:
        return (
            f"'day' would count {buckets} days, {over}: give a shorter window (--since, "
            "--until), or count 'time' with --unit week"
        )
    least = math.ceil(span / width / MAXIMUM_BUCKETS * 100) / 100
    return (
        f"--interval {interval:g} (in {unit.value}s) would make {buckets} buckets, {over}: "
        f"give --interval {least:g} or more, a larger --unit, or a shorter window"
    )


def _default_since(
    criteria: Criteria, countable: Countable, unit: TimeUnit, interval: float
) -> datetime | None:
    """Without --since, a time count covers :data:`DEFAULT_BUCKETS` buckets up to now, or
    up to --until when that is earlier."""
    width = _bucket(countable, unit, interval)
    return None if width is None else criteria.lookback((DEFAULT_BUCKETS - 1) * width)


def _bucket(countable: Countable, unit: TimeUnit, interval: float) -> timedelta | None:
    """The width of one bucket of a time count (None for 'event' and 'resource')."""
    if countable in _LISTS:
        return None
    if countable is Countable.day:
        return timedelta(days=1)
    return timedelta(microseconds=unit.microseconds * interval)


def _default_window(countable: Countable, unit: TimeUnit, interval: float) -> str:
    """The window a count looks at without --since, as a hint names it."""
    if countable in _LISTS:
        return LOOKBACK
    if countable is Countable.day:
        return f"the last {DEFAULT_BUCKETS} days"
    if interval == 1:
        return f"the last {DEFAULT_BUCKETS} {unit.value}s"
    return f"the last {DEFAULT_BUCKETS} buckets of {interval:g} {unit.value}s"
