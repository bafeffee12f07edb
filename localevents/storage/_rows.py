"""Events to table rows and back.

Writing encodes the resource, related resources and payload once each to compact JSON (the
same bytes the size limit and text search see) and hands DuckDB a whole batch at once.
Reading never decodes those columns: the stored JSON is spliced into the answer as is, so a
page costs string joins, not parsing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from localevents.events._rules import RESOURCE_ID, RESOURCE_ROLE
from localevents.events._time import EPOCH, from_epoch_us

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping, Sequence

    from localevents.events._schemas import ReceivedEvent

__all__ = (
    "SELECT_COLUMNS",
    "Row",
    "Stamp",
    "Storable",
    "encode_rows",
    "event_json",
    "encoded_row",
    "event_row",
    "insert_rows_sql",
    "row_json",
)


class Row(msgspec.Struct, frozen=True, gc=False):
    """One event as the writer hands it to DuckDB: pre-encoded JSON text and integers.

    A batch of rows is written as newline-delimited JSON to a scratch file and loaded with
    one ``INSERT ... SELECT FROM read_json``: Python spends about a microsecond per event
    encoding it, and DuckDB parses and casts the batch in C++ without holding the GIL.
    The JSON columns travel as strings, so the stored text is exactly msgspec's encoding.
    """

    i: str  # id
    o: int  # occurred, epoch microseconds
    e: str  # event name
    r: str  # resource id
    res: str  # resource labels (JSON)
    rel: str  # related resources (JSON)
    ids: list[str]  # related resource ids
    roles: list[str]  # related resource roles
    p: str  # payload (JSON)
    f: str | None  # follows
    rc: int  # received, epoch microseconds


_ROW_COLUMNS = (
    "{i: 'VARCHAR', o: 'BIGINT', e: 'VARCHAR', r: 'VARCHAR', res: 'VARCHAR', "
    "rel: 'VARCHAR', ids: 'VARCHAR[]', roles: 'VARCHAR[]', p: 'VARCHAR', f: 'VARCHAR', "
    "rc: 'BIGINT'}"
)


def insert_rows_sql(path: str) -> str:
    """The INSERT that loads a file written by :func:`encode_rows` into ``events``."""
    literal = "'" + path.replace("'", "''") + "'"
    return f"""
INSERT INTO events
SELECT i::UUID, make_timestamptz(o), e, r, res::JSON, rel::JSON, ids, roles, p::JSON,
       f::UUID, make_timestamptz(rc)
FROM read_json({literal}, format = 'newline_delimited', columns = {_ROW_COLUMNS})
"""


_row_encoder = msgspec.json.Encoder()


def encode_rows(rows: Sequence[Row]) -> bytes:
    """Rows as newline-delimited JSON, for :func:`insert_rows_sql`."""
    return _row_encoder.encode_lines(rows)


SELECT_COLUMNS = (
    "epoch_us(occurred), event, resource, related, payload, id::VARCHAR, "
    "follows::VARCHAR, epoch_us(received)"
)
"""What :func:`event_json` reads, in order."""

_encode = msgspec.json.Encoder().encode
_ONE_US = timedelta(microseconds=1)


# Bytes of a compact ReceivedEvent besides its values: the keys, quotes, colons and commas.
_FRAME_BYTES = len(
    b'{"occurred":,"event":,"resource":,"related":,"payload":,"id":"","follows":,"received":}'
)
_UUID_BYTES = 36


class Storable(Protocol):
    """What a row is built from: a ReceivedEvent, or the server's leaner decoded event."""

    @property
    def occurred(self) -> datetime: ...
    @property
    def event(self) -> str: ...
    @property
    def resource(self) -> Mapping[str, str]: ...
    @property
    def related(self) -> Sequence[Mapping[str, str]]: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def follows(self) -> uuid.UUID | None: ...


class Stamp(msgspec.Struct, frozen=True, gc=False):
    """The receipt time of a batch, as stored and as its JSON length."""

    us: int
    json_bytes: int

    @classmethod
    def of(cls, received: datetime) -> Stamp:
        """The stamp of ``received``."""
        return cls((received - EPOCH) // _ONE_US, len(_encode(received)))


def encoded_row(event: Storable, received: Stamp) -> tuple[Row, int]:
    """The writer's row for an event, and the byte size of its compact ReceivedEvent JSON
    (what the size limit applies to), both from a single encoding of each part."""
    resource = _encode(event.resource)
    involved = event.related
    related = _encode(involved) if involved else b"[]"
    payload = _encode(event.payload) if event.payload else b"{}"
    follows = None if event.follows is None else str(event.follows)
    size = (
        _FRAME_BYTES
        + len(_encode(event.occurred))
        + len(_encode(event.event))
        + len(resource)
        + len(related)
        + len(payload)
        + _UUID_BYTES
        + (4 if follows is None else _UUID_BYTES + 2)
        + received.json_bytes
    )
    row = Row(
        str(event.id),
        (event.occurred - EPOCH) // _ONE_US,
        event.event,
        event.resource[RESOURCE_ID],
        resource.decode(),
        related.decode(),
        [labels[RESOURCE_ID] for labels in involved],
        [labels[RESOURCE_ROLE] for labels in involved],
        payload.decode(),
        follows,
        received.us,
    )
    return row, size


def event_row(event: ReceivedEvent) -> Row:
    """The writer's row for one received event."""
    return encoded_row(event, Stamp.of(event.received))[0]


def _instant(us: int) -> str:
    return _encode(from_epoch_us(us)).decode()


def event_json(row: tuple[Any, ...]) -> str:
    """The ReceivedEvent JSON of a row selected with :data:`SELECT_COLUMNS`."""
    occurred, name, resource, related, payload, id_, follows, received = row
    follows_json = f'"{follows}"' if follows is not None else "null"
    return (
        f'{{"occurred":{_instant(occurred)},"event":{_encode(name).decode()},'
        f'"resource":{resource},"related":{related},"payload":{payload},'
        f'"id":"{id_}","follows":{follows_json},"received":{_instant(received)}}}'
    )


def row_json(row: Row) -> str:
    """The ReceivedEvent JSON of a row the writer stored: the text a query returns for it."""
    return event_json((row.o, row.e, row.res, row.rel, row.p, row.i, row.f, row.rc))
