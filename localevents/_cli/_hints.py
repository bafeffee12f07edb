"""The hint of a ``query`` or ``count`` that found nothing in its default window.

Without ``--since``, ``query`` and ``count`` look only at recent events (the last 180 days,
or the last 24 buckets of a time count), so an older events file, such as a sample's,
answers with nothing, and looks empty. When the user chose no window and nothing matched,
one more request (a count by event name, whenever they occurred) learns how many matching
events are older, and when they occurred; a line on stderr says so, and what to add.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import TYPE_CHECKING

import click
import msgspec
from click.core import ParameterSource

from localevents._cli._render import counted, stderr_console, utc_day
from localevents.events._counting import MAXIMUM_BUCKETS, Countable, TimeUnit
from localevents.events._filters import DEFAULT_LOOKBACK, EventOccurredFilter
from localevents.events._time import EARLIEST

if TYPE_CHECKING:
    from localevents.client._sync_api import SyncEventsAPIClient
    from localevents.events._counting import EventCount
    from localevents.events._filters import EventFilter

__all__ = ("LOOKBACK", "print_hint", "window_hint")

LOOKBACK = f"the last {DEFAULT_LOOKBACK.days} days"
"""The default window of ``query`` and ``count event|resource``, as the hint names it."""

_WINDOW = ("since", "until")


def window_hint(
    client: SyncEventsAPIClient,
    event_filter: EventFilter,
    *,
    found: int,
    window: str,
    bucket: timedelta | None = None,
    units: bool = True,
) -> str | None:
    """What to tell a user whose ``event_filter`` found nothing (``found`` is 0) in
    ``window``, the default one (neither ``--since`` nor ``--until`` given); else None.

    ``bucket``: the width of a time count's buckets, whose suggestion needs an end too (to
    now from the oldest event would be more buckets than a count may have), and with
    ``units`` (a count that takes ``--unit``) a wider unit when the range holds too many."""
    if found or not _default_window():
        return None
    older = client.count_events(Countable.event, _whenever(event_filter))
    nothing = f"nothing matched in {window} (the default window)"
    if not older:
        return f"{nothing}, nor at any time before"
    return f"{nothing}, but {_where(older, bucket=bucket, units=units)} to see them"


def print_hint(hint: str | None) -> None:
    """The hint, if any, on stderr (stdout holds only results)."""
    if hint is not None:
        stderr_console().print(hint, style="dim", soft_wrap=True)


def _default_window() -> bool:
    context = click.get_current_context()
    return all(context.get_parameter_source(name) is ParameterSource.DEFAULT for name in _WINDOW)


def _whenever(event_filter: EventFilter) -> EventFilter:
    """``event_filter`` from the earliest instant (up to its same end: now)."""
    occurred = EventOccurredFilter(since=EARLIEST, until=event_filter.occurred.until)
    return msgspec.structs.replace(event_filter, occurred=occurred)


def _where(rows: list[EventCount], *, bucket: timedelta | None, units: bool) -> str:
    """How many events ``rows`` count, when they occurred, and the options that reach them
    (with ``bucket``, the width of a time count's buckets: a range that fits the count)."""
    total = sum(row.count for row in rows)
    oldest = min(row.start_time for row in rows).astimezone(UTC)
    newest = max(row.end_time for row in rows).astimezone(UTC)
    first, last = utc_day(oldest), utc_day(newest)
    when = f"on {first}" if first == last else f"from {first} to {last}"
    options = f"--since {first}"
    if bucket is not None:  # a date is its midnight: the day after the newest ends the last
        end = newest + timedelta(days=1)
        options += f" --until {utc_day(end)}"
        span = end.replace(hour=0, minute=0, second=0, microsecond=0) - oldest.replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        options += _wider_unit(span, bucket) if units else ""
    return f"{counted(total, 'matching event')} occurred {when}: add {options}"


def _wider_unit(span: timedelta, bucket: timedelta) -> str:
    """``--unit U`` for the finest unit whose buckets cover ``span`` within a count's limit,
    when buckets of ``bucket`` would be too many (else nothing)."""
    if span / bucket <= MAXIMUM_BUCKETS:
        return ""
    for unit in (TimeUnit.minute, TimeUnit.hour, TimeUnit.day, TimeUnit.week):
        if span / timedelta(microseconds=unit.microseconds) <= MAXIMUM_BUCKETS:
            return f" --unit {unit.value}"
    return " --unit week --interval " + f"{span / timedelta(weeks=MAXIMUM_BUCKETS):.0f}"
