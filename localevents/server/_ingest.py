"""Decoding and checking events on their way into the store (D3, D13).

The hot path of ingest: msgspec checks the shape of every event in C; the rules a schema
cannot say come from ``localevents.events._rules``, the same functions the SDK's models use;
each event is encoded once, for the size limit and for the store. A batch (``POST
/api/events``) is rejected by its first bad event, with a message naming its index; a single
event (a ``/api/events/in`` frame) with a message naming its id, when the id can be read.
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
    from collections.abc import Callable

    from localevents._settings import Settings
    from localevents.storage._rows import Row

__all__ = ("IncomingEvent", "decode_event", "decode_events", "syntax_error")


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


class _Identified(msgspec.Struct, gc=False):
    """Just the id of an event, read from a frame that failed to decode as an event."""

    id: uuid.UUID | None = None


_decoder = msgspec.json.Decoder(list[IncomingEvent])
_one_decoder = msgspec.json.Decoder(IncomingEvent)
_id_decoder = msgspec.json.Decoder(_Identified)
_INDEX = re.compile(r"^\$\[(\d+)\]")
_IN_BATCH = re.compile(r"^\$\[(\d+)\]\.(.*)$")
_LABELS_AT = re.compile(r"^(resource|related\[(\d+)\])\[\.\.\.\]$")
_SIZE_SETTING = "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES"


class _Rejected(Exception):
    """Why one decoded event breaks a rule, and where in it (``None``: the whole event)."""

    def __init__(self, message: str, where: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _checked_row(event: IncomingEvent, stamp: Stamp, settings: Settings) -> Row:
    """The store's row for a decoded event, or :class:`_Rejected` naming the broken rule."""
    problem = event_problem(event.event, event.resource, event.related, settings)
    if problem is not None:
        where, message = problem
        raise _Rejected(message, where)
    row, size = encoded_row(event, stamp)
    maximum = settings.events_maximum_size_bytes
    if size > maximum:
        raise _Rejected(
            f"it is {size} bytes of JSON, over the limit of {maximum} ({_SIZE_SETTING})", None
        )
    return row


def decode_events(body: bytes, settings: Settings) -> list[Row]:
    """Check a batch against ``settings``' limits and turn it into the store's rows."""
    if not body.strip():
        raise InvalidEventError("The body must be a JSON array of events, got nothing")
    try:
        events = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, body) from None
    stamp = Stamp.of(now_utc())
    rows = []
    for index, event in enumerate(events):
        try:
            rows.append(_checked_row(event, stamp, settings))
        except _Rejected as exc:
            where = "" if exc.where is None else f" (at $[{index}].{exc.where})"
            raise InvalidEventError(
                f"Invalid event at index {index}: {exc.message}{where}"
            ) from None
    return rows


def decode_event(frame: str | bytes, settings: Settings) -> Row:
    """Check one event (a WebSocket frame) exactly as one element of a batch, and turn it
    into the store's row; a frame longer than the event size limit is refused unread.

    Raises :class:`InvalidEventError` with ``invalid event <id>: <reason>`` (or
    ``invalid event: <reason>`` when the id cannot be read).
    """
    size = len(frame) if isinstance(frame, bytes) or frame.isascii() else len(frame.encode())
    maximum = settings.events_maximum_size_bytes
    if size > maximum:
        raise _frame_error(
            frame, f"the frame is {size} bytes, over the limit of {maximum} ({_SIZE_SETTING})"
        )
    try:
        event = _one_decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise _frame_error(frame, _frame_problem(exc, frame)) from None
    try:
        return _checked_row(event, Stamp.of(now_utc()), settings)
    except _Rejected as exc:
        where = "" if exc.where is None else f" (at $.{exc.where})"
        raise InvalidEventError(f"invalid event {event.id}: {exc.message}{where}") from None


def _frame_error(frame: str | bytes, reason: str) -> InvalidEventError:
    try:
        identifier = _id_decoder.decode(frame).id
    except msgspec.DecodeError:
        identifier = None
    named = "" if identifier is None else f" {identifier}"
    return InvalidEventError(f"invalid event{named}: {reason}")


def _frame_problem(exc: msgspec.DecodeError, frame: str | bytes) -> str:
    syntax = syntax_error(frame)
    if syntax is not None:
        return f"the frame is not valid JSON: {syntax}"
    message, _, location = str(exc).rpartition(" - at `")
    if not message:
        return str(exc)
    location = location.rstrip("`")
    label = _bad_label(lambda: msgspec.json.decode(frame), location.removeprefix("$."))
    if label is not None:
        message = f"label {label!r} should be a valid string ({message})"
    return f"{message} (at {location})"


def syntax_error(body: str | bytes) -> msgspec.DecodeError | None:
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
    label = None
    in_batch = _IN_BATCH.match(location)
    if in_batch is not None:
        index = int(in_batch[1])
        label = _bad_label(lambda: msgspec.json.decode(body)[index], in_batch[2])
    if label is not None:
        message = f"label {label!r} should be a valid string ({message})"
    return InvalidEventError(f"Invalid event at {where}: {message} (at {location})")


def _bad_label(read_event: Callable[[], Any], path: str) -> str | None:
    """The name of the label whose value is not a string, for a path inside one event such
    as ``resource[...]`` or ``related[2][...]`` (msgspec does not name dictionary keys).
    ``read_event`` decodes that event untyped; it runs only when the path is a label's."""
    match = _LABELS_AT.match(path)
    if match is None:
        return None
    event = read_event()
    labels = event["resource"] if match[2] is None else event["related"][int(match[2])]
    return next((k for k, v in labels.items() if not isinstance(v, str)), None)
