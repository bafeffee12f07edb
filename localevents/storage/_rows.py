"""Events to table rows and back.

Writing: a batch reaches DuckDB as newline-delimited JSON, one line per event, each line the
event's compact ReceivedEvent JSON exactly as msgspec encodes it (``occurred`` and
``received`` in UTC). One ``INSERT ... SELECT FROM read_json`` parses the batch and derives
the resource id columns in C++ without holding the GIL, so Python's share of a batch is a
single ``encode_lines`` call (about a microsecond per event). The same lines are what live
subscribers are sent, and their lengths are what the size limit applies to.

Reading never decodes the JSON columns: the stored JSON is spliced into the answer as is, so
a page costs string joins, not parsing. (DuckDB re-serialises the JSON columns when it
parses a batch: the stored text is compact and means the same, but a float may be spelled
differently, e.g. ``1e20`` as ``100000000000000000000.0``.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence  # _Line's field types, read at run time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import msgspec

from localevents.events._nesting import utf8_problem
from localevents.events._rules import RESOURCE_ID, RESOURCE_ROLE, Checkable
from localevents.events._time import from_epoch_us

if TYPE_CHECKING:
    from collections.abc import Iterable

    from localevents.events._schemas import ReceivedEvent

__all__ = (
    "OUT_OF_RANGE",
    "SELECT_COLUMNS",
    "EncodedEvents",
    "Row",
    "Stamp",
    "Storable",
    "compact_payload",
    "encoded_row",
    "event_json",
    "event_row",
    "insert_lines_sql",
    "payload_problem",
    "row_json",
    "utc",
)


class Storable(Checkable, Protocol):
    """What the store keeps of an event (what the rules read, and more): a ReceivedEvent,
    or the server's leaner decoded event (whose ``received`` the server sets before
    encoding it, and whose payload is the compact JSON object it was sent as)."""

    @property
    def occurred(self) -> datetime: ...
    @property
    def payload(self) -> Mapping[str, Any] | msgspec.Raw: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def follows(self) -> uuid.UUID | None: ...


_encoder = msgspec.json.Encoder()


OUT_OF_RANGE = "the instant is outside years 1-9999 in UTC"
"""Why an aware instant near the ends of the calendar cannot be stored (``utc`` fails)."""


_OPEN_BRACE = ord("{")
_JSON_TYPES = {
    ord("["): "array",
    ord('"'): "str",
    ord("t"): "bool",
    ord("f"): "bool",
    ord("n"): "null",
}
"""The JSON type of a value that is no object, by its first byte (else a number)."""
_SPACE = re.compile(rb"[ \t\n\r]")


def payload_problem(payload: msgspec.Raw) -> str | None:
    """Why a payload kept as its raw JSON is not an object, in msgspec's words for any
    other field of the wrong type, or not UTF-8 (None: it is a UTF-8 object). Kept raw, as
    it was sent: decoding it into a dict would keep only the last of a repeated key; and
    msgspec skips a raw value's strings unread, so their bytes are checked here (DuckDB
    would refuse them at the commit, failing every batch committed with this one)."""
    first = memoryview(payload)[0]  # a JSON value is never empty
    if first != _OPEN_BRACE:
        return f"Expected `object`, got `{_JSON_TYPES.get(first, 'number')}`"
    return utf8_problem(bytes(payload), " of the payload")


def compact_payload(payload: msgspec.Raw) -> msgspec.Raw:
    """A raw JSON payload on one line, without whitespace between its tokens, as the store
    loads it and the size limit counts it (``payload`` itself when it is already)."""
    if _SPACE.search(payload) is None:
        return payload
    return msgspec.Raw(msgspec.json.format(payload, indent=-1))


def utc(instant: datetime) -> datetime:
    """``instant`` in UTC (the store writes every instant in UTC, as queries return them).

    Raises :class:`OverflowError` when that falls outside the calendar (e.g.
    ``9999-12-31T23:00:00-05:00``): see :data:`OUT_OF_RANGE`.
    """
    return instant if instant.tzinfo is UTC else instant.astimezone(UTC)


class Stamp(msgspec.Struct, frozen=True, gc=False):
    """The receipt time of a batch, encoded once for all of its events."""

    json: msgspec.Raw

    @classmethod
    def of(cls, received: datetime) -> Stamp:
        """The stamp of ``received``."""
        return cls(msgspec.Raw(_encoder.encode(utc(received))))


class _Line(msgspec.Struct, kw_only=True, gc=False):
    """The shape of one line: a ReceivedEvent's fields in wire order, ``received`` encoded."""

    occurred: datetime
    event: str
    resource: Mapping[str, str]
    related: Sequence[Mapping[str, str]]
    payload: Mapping[str, Any] | msgspec.Raw
    id: uuid.UUID
    follows: uuid.UUID | None
    received: msgspec.Raw


class EncodedEvents:
    """A batch on its way into the store: the events (their ids decide what is new; commit
    listeners get them back) and ``lines``, the same events as newline-delimited compact
    ReceivedEvent JSON, line ``i`` for ``events[i]``. Once stored, ``first_seq`` is the
    ``seq`` of ``events[0]`` (the others follow it)."""

    __slots__ = ("events", "first_seq", "lines")

    def __init__(self, events: Sequence[Storable], lines: bytes) -> None:
        self.events = events
        self.lines = lines
        self.first_seq: int | None = None

    @classmethod
    def of(cls, events: Sequence[ReceivedEvent]) -> EncodedEvents:
        """Received events as a batch (their instants turned to UTC where they are not)."""
        if not all(e.occurred.tzinfo is UTC and e.received.tzinfo is UTC for e in events):
            events = [
                msgspec.structs.replace(e, occurred=utc(e.occurred), received=utc(e.received))
                for e in events
            ]
        return cls(events, _encoder.encode_lines(events))

    @classmethod
    def join(cls, rows: Iterable[Row]) -> EncodedEvents:
        """Single encoded events as one batch."""
        rows = list(rows)
        return cls([row.event for row in rows], b"".join([row.line + b"\n" for row in rows]))

    def __len__(self) -> int:
        return len(self.events)

    def split_lines(self) -> list[bytes]:
        """Each event's line, without its newline."""
        return self.lines.split(b"\n")[:-1]

    def select(self, indexes: Sequence[int]) -> EncodedEvents:
        """The events at ``indexes`` (ascending) as a batch of their own."""
        if len(indexes) == len(self.events):
            return self
        lines = self.split_lines()
        return EncodedEvents(
            [self.events[i] for i in indexes], b"".join([lines[i] + b"\n" for i in indexes])
        )


class Row(NamedTuple):
    """One event with its line (see :class:`EncodedEvents`)."""

    event: Storable
    line: bytes

    @property
    def id(self) -> uuid.UUID:
        """The event's id."""
        return self.event.id


def encoded_row(event: Storable, received: Stamp) -> tuple[Row, int]:
    """The row of an event received at ``received``, and the byte size of its compact
    ReceivedEvent JSON (what the size limit applies to)."""
    line = _encoder.encode(
        _Line(
            occurred=utc(event.occurred),
            event=event.event,
            resource=event.resource,
            related=event.related,
            payload=event.payload,
            id=event.id,
            follows=event.follows,
            received=received.json,
        )
    )
    return Row(event, line), len(line)


def event_row(event: ReceivedEvent) -> Row:
    """The row of one received event."""
    return encoded_row(event, Stamp.of(event.received))[0]


def row_json(row: Row) -> str:
    """The ReceivedEvent JSON of a row."""
    return row.line.decode()


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_LINE_COLUMNS = (
    "{occurred: 'TIMESTAMPTZ', event: 'VARCHAR', resource: 'JSON', related: 'JSON', "
    "payload: 'JSON', id: 'UUID', follows: 'UUID', received: 'TIMESTAMPTZ'}"
)
_RELATED_IDS = _sql_text(f'$[*]."{RESOURCE_ID}"')
_RELATED_ROLES = _sql_text(f'$[*]."{RESOURCE_ROLE}"')


_EVENT_COLUMNS = (
    "id, occurred, event, resource_id, resource, related, related_ids, related_roles, "
    "payload, follows, received, resource_key, related_key, seq"
)


def insert_lines_sql(path: str) -> str:
    """The INSERT that loads the lines of a batch (written to ``path``) into ``events``;
    its one parameter is the ``seq`` of the first line (the others follow it)."""
    return f"""
INSERT INTO events ({_EVENT_COLUMNS})
SELECT id, occurred, event, resource ->> {_sql_text(RESOURCE_ID)}, resource, related,
       json_extract_string(related, {_RELATED_IDS}),
       json_extract_string(related, {_RELATED_ROLES}),
       payload, follows, received, hash(resource), hash(related),
       $1 + row_number() OVER () - 1
FROM read_json({_sql_text(path)}, format = 'newline_delimited', columns = {_LINE_COLUMNS})
"""


SELECT_COLUMNS = (
    "epoch_us(occurred), event, resource, related, payload, id::VARCHAR, "
    "follows::VARCHAR, epoch_us(received)"
)
"""What :func:`event_json` reads, in order."""


def _instant(us: int) -> str:
    return _encoder.encode(from_epoch_us(us)).decode()


def event_json(row: tuple[Any, ...]) -> str:
    """The ReceivedEvent JSON of a row selected with :data:`SELECT_COLUMNS`."""
    occurred, name, resource, related, payload, id_, follows, received = row
    follows_json = f'"{follows}"' if follows is not None else "null"
    return (
        f'{{"occurred":{_instant(occurred)},"event":{_encoder.encode(name).decode()},'
        f'"resource":{resource},"related":{related},"payload":{payload},'
        f'"id":"{id_}","follows":{follows_json},"received":{_instant(received)}}}'
    )
