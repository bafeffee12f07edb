"""Decoding and checking a batch of events on its way into the store (D3, D13).

The hot path of ingest: msgspec checks the shape of every event in C; the rules a schema
cannot say come from ``localevents.events._rules``, the same functions the SDK's models use;
each event is encoded once, for the size limit and for the store. The first bad event
rejects the whole batch with a message naming its index and the reason.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from localevents._exceptions import InvalidEventError
from localevents.events._rules import event_problem
from localevents.events._schemas import AwareDatetime
from localevents.events._time import now_utc
from localevents.storage._rows import Stamp, encoded_row

if TYPE_CHECKING:
    from localevents._settings import Settings
    from localevents.storage._rows import Row

__all__ = ("IncomingEvent", "decode_events", "syntax_error")


class IncomingEvent(msgspec.Struct, kw_only=True, gc=False):
    """An event as a producer sends it (``occurred`` and ``id`` required; unknown keys,
    such as a ``received`` the store will overwrite, are ignored)."""

    occurred: AwareDatetime
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = msgspec.field(default_factory=list)
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    id: uuid.UUID
    follows: uuid.UUID | None = None


_decoder = msgspec.json.Decoder(list[IncomingEvent])
_INDEX = re.compile(r"^\$\[(\d+)\]")
_LABELS_AT = re.compile(r"^\$\[(\d+)\]\.(resource|related\[(\d+)\])\[\.\.\.\]$")


def decode_events(body: bytes, settings: Settings) -> list[Row]:
    """Check a batch against ``settings``' limits and turn it into the store's rows."""
    if not body.strip():
        raise InvalidEventError("The body must be a JSON array of events, got nothing")
    try:
        events = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, body) from None
    stamp = Stamp.of(now_utc())
    maximum = settings.events_maximum_size_bytes
    rows = []
    for index, event in enumerate(events):
        problem = event_problem(event.event, event.resource, event.related, settings)
        if problem is not None:
            where, message = problem
            raise InvalidEventError(
                f"Invalid event at index {index}: {message} (at $[{index}].{where})"
            )
        row, size = encoded_row(event, stamp)
        if size > maximum:
            raise InvalidEventError(
                f"Invalid event at index {index}: it is {size} bytes of JSON, over the "
                f"limit of {maximum} (LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES)"
            )
        rows.append(row)
    return rows


def syntax_error(body: bytes) -> msgspec.DecodeError | None:
    """The JSON syntax error in ``body``, if any.

    A typed decoder reports the first type mismatch before it reaches a syntax error further
    on (``{not json`` reads as "expected an array"), so error paths check the syntax first.
    """
    try:
        msgspec.json.decode(body, type=msgspec.Raw)
    except msgspec.DecodeError as exc:
        return exc
    return None


def _decode_error(exc: msgspec.DecodeError, body: bytes) -> InvalidEventError:
    syntax = syntax_error(body)
    if syntax is not None:
        return InvalidEventError(f"The body is not valid JSON: {syntax}")
    message, _, location = str(exc).rpartition(" - at `")
    if not message:
        return InvalidEventError(f"The body must be a JSON array of events: {exc}")
    location = location.rstrip("`")
    match = _INDEX.match(location)
    where = f"index {match[1]}" if match else location
    label = _bad_label(body, location)
    if label is not None:
        message = f"label {label!r} should be a valid string ({message})"
    return InvalidEventError(f"Invalid event at {where}: {message} (at {location})")


def _bad_label(body: bytes, location: str) -> str | None:
    """The name of the label whose value is not a string, for a location such as
    ``$[3].resource[...]`` (msgspec does not name dictionary keys)."""
    match = _LABELS_AT.match(location)
    if match is None:
        return None
    events = msgspec.json.decode(body)
    labels = events[int(match[1])]
    labels = labels["resource"] if match[3] is None else labels["related"][int(match[3])]
    return next((k for k, v in labels.items() if not isinstance(v, str)), None)
