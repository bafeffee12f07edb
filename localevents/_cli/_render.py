"""What the commands print: one readable (coloured on a terminal) line per event, NDJSON for
``--json``, and count-by answers as a bar chart.

User text is put in :class:`rich.text.Text` pieces, never in markup, so brackets in an event
name or payload print as they are. Lines are never wrapped, so they stay greppable.
"""

from __future__ import annotations

import errno
from datetime import UTC
from typing import TYPE_CHECKING

import msgspec
from rich.bar import Bar
from rich.console import Console
from rich.table import Table
from rich.text import Text

from localevents.events._counting import Countable, TimeUnit

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from localevents.events._counting import EventCount
    from localevents.events._schemas import AnyEvent

__all__ = (
    "count_chart",
    "counted",
    "event_line",
    "json_line",
    "stderr_console",
    "stdout_console",
)

PAYLOAD_WIDTH = 160
"""Characters of payload JSON shown on an event line (``--json`` shows everything)."""
BAR_WIDTH = 40
LABEL_WIDTH = 60

_encode = msgspec.json.Encoder().encode
_TIME_FORMATS = {
    TimeUnit.week: "%Y-%m-%d",
    TimeUnit.day: "%Y-%m-%d",
    TimeUnit.hour: "%Y-%m-%d %H:%M",
    TimeUnit.minute: "%Y-%m-%d %H:%M",
    TimeUnit.second: "%Y-%m-%d %H:%M:%S",
}


class _Results(Console):
    """A console whose reader leaving (``| head``) raises :class:`BrokenPipeError`, as
    ``click.echo`` does, so that every command ends the same way whichever printed (exit
    141, see ``localevents.cli``), not by rich's own exit with status 1."""

    def on_broken_pipe(self) -> None:
        """Print nothing more, and let the command stop."""
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of standard output has gone")


def stdout_console() -> Console:
    """The console for results (colour only on a terminal; NO_COLOR is honoured)."""
    return _Results(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    """The console for progress and hints, so that stdout holds only results."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural but for one: ``1 event``, ``0 events``, ``2 event
    names`` (every noun the commands count takes an ``s``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def json_line(value: object) -> str:
    """One compact JSON line (NDJSON)."""
    return _encode(value).decode()


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds").replace("+00:00", "Z")


def event_line(event: AnyEvent) -> Text:
    """``time  event  resource  role=related...  payload``, the time in UTC."""
    line = Text.assemble(
        (_instant(event.occurred), "dim"),
        "  ",
        (event.event, "bold cyan"),
        "  ",
        (event.resource.id, "green"),
    )
    for related in event.related:
        line.append("  ")
        line.append(f"{related.role}=", "dim magenta")
        line.append(related.id, "magenta")
    if event.payload:
        payload = json_line(event.payload)
        if len(payload) > PAYLOAD_WIDTH:
            payload = payload[: PAYLOAD_WIDTH - 1] + "…"
        line.append("  ")
        line.append(payload)
    return line


def _bucket_label(row: EventCount, countable: Countable, unit: TimeUnit) -> str:
    if countable is Countable.day:
        return row.start_time.astimezone(UTC).strftime(_TIME_FORMATS[TimeUnit.day])
    if countable is Countable.time:
        return row.start_time.astimezone(UTC).strftime(_TIME_FORMATS[unit])
    return row.label


def count_chart(
    rows: Iterable[EventCount], countable: Countable, unit: TimeUnit, *, width: int
) -> Table:
    """One row per bucket: its label, its count, and a bar scaled to the largest count,
    fitted to ``width`` columns: long labels are cut (with an ellipsis) and bars shortened
    before a count is ever hidden."""
    rows = list(rows)
    labels = [_bucket_label(row, countable, unit) for row in rows]
    largest = max((row.count for row in rows), default=0)
    count_width = len(str(largest))
    label_width = min(max(map(len, labels), default=0), LABEL_WIDTH, max(width // 2, 8))
    bar_width = max(min(BAR_WIDTH, width - label_width - count_width - 2), 1)
    chart = Table.grid(padding=(0, 1))
    chart.add_column(no_wrap=True, overflow="ellipsis", width=label_width)
    chart.add_column(justify="right", no_wrap=True, width=count_width)
    chart.add_column(no_wrap=True, width=bar_width)
    for label, row in zip(labels, rows, strict=True):
        bar = Bar(size=max(largest, 1), begin=0, end=row.count, width=bar_width, color="cyan")
        chart.add_row(Text(label), str(row.count), bar)
    return chart
