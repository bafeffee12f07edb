"""Events to table rows and back.

Writing encodes the resource, related resources and payload once each to compact JSON (the
same bytes the size limit and text search see). Reading never decodes those columns: the
stored JSON is spliced into the answer as is, so a page costs string joins, not parsing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from localevents.events._time import from_epoch_us

if TYPE_CHECKING:
    from localevents.events._schemas import ReceivedEvent

__all__ = ("COLUMNS", "SELECT_COLUMNS", "event_json", "event_row")

COLUMNS = (
    "id",
    "occurred",
    "event",
    "resource_id",
    "resource",
    "related",
    "related_ids",
    "related_roles",
    "payload",
    "follows",
    "received",
)
"""Column order of the ``events`` table (and of :func:`event_row`)."""

SELECT_COLUMNS = (
    "epoch_us(occurred), event, resource, related, payload, id::VARCHAR, "
    "follows::VARCHAR, epoch_us(received)"
)
"""What :func:`event_json` reads, in order."""

_encode = msgspec.json.Encoder().encode


def event_row(event: ReceivedEvent) -> tuple[Any, ...]:
    """One row for the appender, in :data:`COLUMNS` order."""
    related = event.related
    return (
        event.id,
        event.occurred,
        event.event,
        event.resource.id,
        _encode(event.resource).decode(),
        _encode(related).decode() if related else "[]",
        [r.id for r in related],
        [r.role for r in related],
        _encode(event.payload).decode() if event.payload else "{}",
        event.follows,
        event.received,
    )


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
