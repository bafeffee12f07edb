"""What the commands print: one readable (coloured on a terminal) line per event, NDJSON for
``--json``, and count-by answers as a bar chart.

User text is put in :class:`rich.text.Text` pieces, never in markup, so brackets in an event
name or payload print as they are, and its control characters are shown escaped (``\\n``,
``\\x1b``), so a name cannot move the cursor, recolour the terminal or break a line. Lines
are never wrapped, so they stay greppable. ``--json`` output is the stored text, byte for
byte.
"""

from __future__ import annotations

import errno
import re
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
    "shown_instant",
    "utc_day",
    "visible",
)

PAYLOAD_WIDTH = 160
"""Characters of payload JSON shown on an event line (``--json`` shows everything)."""
BAR_WIDTH = 40
LABEL_WIDTH = 60

_encode = msgspec.json.Encoder().encode
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""The C0 and C1 control characters and DEL; the line and paragraph separators; and the
marks, embeddings, overrides and isolates that reorder text (a name holding U+202E would
print the rest of the line backwards)."""
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TIME_SPECS = {
    TimeUnit.week: None,
    TimeUnit.day: None,
    TimeUnit.hour: "minutes",
    TimeUnit.minute: "minutes",
    TimeUnit.second: "seconds",
}
"""How precisely a bucket of each unit is labelled (``isoformat``'s ``timespec``; None: the
date alone)."""


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


def visible(text: str) -> str:
    r"""``text`` with each control character written as an escape: ``\n``, ``\r``, ``\t``,
    else ``\xNN`` or ``\uNNNN`` (a backslash itself is left as it is)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds").replace("+00:00", "Z")


def event_line(event: AnyEvent) -> Text:
    """``time  event  resource  role=related...  payload``, the time in UTC."""
    line = Text.assemble(
        (_instant(event.occurred), "dim"),
        "  ",
        (visible(event.event), "bold cyan"),
        "  ",
        (visible(event.resource.id), "green"),
    )
    for related in event.related:
        line.append("  ")
        line.append(f"{visible(related.role)}=", "dim magenta")
        line.append(visible(related.id), "magenta")
    if event.payload:  # JSON escapes C0 characters in strings, not DEL or C1 ones
        payload = visible(json_line(event.payload))
        if len(payload) > PAYLOAD_WIDTH:
            payload = payload[: PAYLOAD_WIDTH - 1] + "…"
        line.append("  ")
        line.append(payload)
    return line


def _bucket_label(row: EventCount, countable: Countable, unit: TimeUnit) -> str:
    if countable is Countable.day:
        return _calendar(row.start_time, TimeUnit.day)
    if countable is Countable.time:
        return _calendar(row.start_time, unit)
    return visible(row.label)


def utc_day(moment: datetime) -> str:
    """The UTC date of ``moment`` as ``--since`` reads it back: ``0001-01-01`` for year 1
    (``strftime``'s ``%Y`` writes ``1``)."""
    return moment.astimezone(UTC).date().isoformat()


def shown_instant(moment: datetime) -> str:
    """``moment`` to the second with its offset, as an error message names a time given."""
    return moment.isoformat(sep=" ", timespec="seconds")


def _calendar(moment: datetime, unit: TimeUnit) -> str:
    """``moment`` in UTC, as precisely as a bucket of ``unit`` starts: ``2026-01-05 10:00``,
    the year in four digits (``strftime`` writes year 1 as ``1``)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    spec = _TIME_SPECS[unit]
    return utc_day(moment) if spec is None else utc.isoformat(sep=" ", timespec=spec)


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
