"""Decoding and checking events on their way into the store (D3, D13).

The hot path of ingest: msgspec checks the shape of every event in C; the rules a schema
cannot say come from ``localevents.events._rules``, the same functions the SDK's models use;
then a whole batch is encoded in one call into the lines the store loads (see
``localevents.storage._rows``), whose lengths are what the size limit applies to. A batch
(``POST /api/events``) is rejected by its first bad event, with a message naming its index;
a single event (a ``/api/events/in`` frame) with a message naming its id, when the id can be
read.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC
from typing import TYPE_CHECKING, Any

import msgspec

from localevents._exceptions import EventTooLarge, InvalidEventError
from localevents.events._nesting import TOO_DEEP, NotUtf8, decoded, utf8_problem
from localevents.events._rules import event_problem, first_breaking
from localevents.events._schemas import AwareDatetime, event_id_of
from localevents.events._time import now_utc
from localevents.storage._rows import (
    OUT_OF_RANGE,
    EncodedEvents,
    Row,
    Stamp,
    compact_payload,
    payload_problem,
    utc,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from localevents._settings import Settings

__all__ = ("IncomingEvent", "decode_event", "decode_events", "syntax_error")


class IncomingEvent(msgspec.Struct, kw_only=True, gc=False):
    """An event as a producer sends it (``occurred`` and ``id`` required; unknown keys are
    ignored), and, once checked, as the store encodes it: a ReceivedEvent's fields in wire
    order, ``received`` being the server's stamp (whatever the producer sent is replaced).

    The payload is never decoded: nothing on the way in reads it, so its JSON is carried
    through as sent (msgspec has checked its syntax) once it is known to be an object, and
    made compact when it holds whitespace (a line of the store's batch file must not hold
    a newline, and the size limit counts compact JSON). Building its dictionaries was a
    fifth of the decode and a third of the objects the garbage collector had to track.

    ``related`` is a tuple, not a list: a tuple of label dictionaries (which hold only
    strings, so Python does not track them) is dropped from the collector's lists at its
    first collection, while a list stays tracked for as long as the batch lives. A batch
    lives through several collections of the youngest generations, so its lists reached
    the oldest one and made the collector walk every object in the process more often:
    in process, with Python's default thresholds, 10 full collections per 295 batches of
    1000 became 6 (1.8 ms to 1.1 ms of collection per batch).
    """

    occurred: AwareDatetime
    event: str
    resource: dict[str, str]
    related: tuple[dict[str, str], ...] = ()
    payload: msgspec.Raw = msgspec.Raw(b"{}")  # kept as sent; checked to be an object
    id: uuid.UUID
    follows: uuid.UUID | None = None
    received: msgspec.Raw = msgspec.Raw(b"null")


_decoder = msgspec.json.Decoder(list[IncomingEvent])
_one_decoder = msgspec.json.Decoder(IncomingEvent)
_encoder = msgspec.json.Encoder()
_INDEX = re.compile(r"^\$\[(\d+)\]")
_IN_BATCH = re.compile(r"^\$\[(\d+)\]\.(.*)$")
_LABELS_AT = re.compile(r"^(resource|related\[(\d+)\])\[\.\.\.\]$")
_SIZE_SETTING = "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES"
_APART = b"\x00"
"""Between payloads joined: JSON text never holds it (msgspec refuses it, in a string too)."""
_APART_OBJECT = _APART + b"{"
_BLANKS = (b" ", b"\t", b"\n", b"\r")


class _Rejected(Exception):
    """Why one decoded event breaks a rule, and where in it (``None``: the whole event);
    ``size`` is set when the rule is the size limit."""

    def __init__(self, message: str, where: str | None, size: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.size = size
        self.index = 0  # of the event in its batch

    def error(self, message: str, settings: Settings) -> InvalidEventError:
        """The error to raise, saying ``message``."""
        if self.size is None:
            return InvalidEventError(message)
        return EventTooLarge(self.size, settings.events_maximum_size_bytes, message)


def _refusal(event: IncomingEvent, settings: Settings) -> _Rejected:
    """Why :func:`_first_refused` refused ``event``, and where in it."""
    problem = event_problem(event.event, event.resource, event.related, settings)
    if problem is not None:
        where, message = problem
        return _Rejected(message, where)
    payload = payload_problem(event.payload)
    if payload is not None:
        return _Rejected(payload, "payload")
    try:
        utc(event.occurred)
    except OverflowError:
        return _Rejected(OUT_OF_RANGE, "occurred")
    raise AssertionError("the quick check and the explanation disagree")


def _first_refused(events: Sequence[IncomingEvent], stamp: msgspec.Raw, settings: Settings) -> int:
    """The index of the first event that breaks a rule, whose payload is no object or whose
    ``occurred`` is outside the calendar in UTC (``len(events)`` if none), readying the
    events before it for the store: stamped, ``occurred`` in UTC (as the store keeps it),
    the payload compact. :func:`_refusal` explains a refusal."""
    breaking = first_breaking(events, settings)
    ready = events[:breaking]
    compact = _compact_objects([event.payload for event in ready])
    for index, event in enumerate(ready):
        if not compact:
            if payload_problem(event.payload) is not None:
                return index
            event.payload = compact_payload(event.payload)
        if event.occurred.tzinfo is not UTC:
            try:
                event.occurred = utc(event.occurred)
            except OverflowError:
                return index
        event.received = stamp
    return breaking


def _compact_objects(payloads: list[msgspec.Raw]) -> bool:
    """Whether every payload is a UTF-8 JSON object with no blank between its tokens (so
    none needs to be made compact), tested on all of them joined: loops in C over the bytes
    instead of one in Python over the events (0.2 instead of 0.8 ms per 1000 standard
    events). Blanks inside strings (a message with spaces) take one reformatting of the
    whole lot to tell apart."""
    joined = _APART + _APART.join(payloads)
    if joined.count(_APART_OBJECT) != len(payloads) or utf8_problem(joined) is not None:
        return False
    if not any(blank in joined for blank in _BLANKS):
        return True
    array = b"[" + b",".join(payloads) + b"]"
    return msgspec.json.format(array, indent=-1) == array


def _check(event: IncomingEvent, stamp: Stamp, settings: Settings) -> None:
    """Raise :class:`_Rejected` naming the rule ``event`` breaks, if any; else ready it."""
    if _first_refused([event], stamp.json, settings) == 0:
        raise _refusal(event, settings)


def _check_size(line: bytes, settings: Settings) -> None:
    maximum = settings.events_maximum_size_bytes
    if len(line) > maximum:
        raise _Rejected(
            f"it is {len(line)} bytes of JSON, over the limit of {maximum} ({_SIZE_SETTING})",
            None,
            len(line),
        )


def _check_sizes(lines: Sequence[bytes], settings: Settings) -> None:
    for index, line in enumerate(lines):
        try:
            _check_size(line, settings)
        except _Rejected as exc:
            exc.index = index
            raise


def _checked_batch(events: Sequence[IncomingEvent], settings: Settings) -> EncodedEvents:
    """The batch of decoded events; :class:`_Rejected` (with ``index``) for the first bad one."""
    refused = _first_refused(events, Stamp.of(now_utc()).json, settings)
    if refused < len(events):  # unless an earlier event is too big: that one is first
        _check_sizes([_encoder.encode(e) for e in events[:refused]], settings)
        problem = _refusal(events[refused], settings)
        problem.index = refused
        raise problem
    batch = EncodedEvents(events, _encoder.encode_lines(events))
    if len(batch.lines) > settings.events_maximum_size_bytes:  # else none can be too big
        _check_sizes(batch.split_lines(), settings)
    return batch


def decode_events(body: bytes, settings: Settings) -> EncodedEvents:
    """Check a batch against ``settings``' limits and encode it for the store."""
    if not body.strip():
        raise InvalidEventError("The body must be a JSON array of events, got nothing")
    try:
        events = decoded(_decoder.decode, body)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, body) from None
    try:
        return _checked_batch(events, settings)
    except _Rejected as exc:
        where = "" if exc.where is None else f" (at $[{exc.index}].{exc.where})"
        raise exc.error(
            f"Invalid event at index {exc.index}: {exc.message}{where}", settings
        ) from None


def decode_event(frame: str | bytes, settings: Settings) -> Row:
    """Check one event (a WebSocket frame) exactly as one element of a batch, and encode it
    for the store; a frame longer than the event size limit is refused unread.

    Raises :class:`InvalidEventError` with ``invalid event <id>: <reason>`` (or
    ``invalid event: <reason>`` when the id cannot be read).
    """
    size = len(frame) if isinstance(frame, bytes) or frame.isascii() else len(frame.encode())
    maximum = settings.events_maximum_size_bytes
    if size > maximum:
        reason = f"the frame is {size} bytes, over the limit of {maximum} ({_SIZE_SETTING})"
        raise EventTooLarge(size, maximum, _frame_message(frame, reason))
    try:
        event = decoded(_one_decoder.decode, frame)
    except msgspec.DecodeError as exc:
        raise InvalidEventError(_frame_message(frame, _frame_problem(exc, frame))) from None
    try:
        _check(event, Stamp.of(now_utc()), settings)
        line = _encoder.encode(event)
        _check_size(line, settings)
    except _Rejected as exc:
        where = "" if exc.where is None else f" (at $.{exc.where})"
        raise exc.error(f"invalid event {event.id}: {exc.message}{where}", settings) from None
    return Row(event, line)


def _frame_message(frame: str | bytes, reason: str) -> str:
    """Why a frame is refused, naming its event's id when the id can be read."""
    identifier = event_id_of(frame)
    named = "" if identifier is None else f" {identifier}"
    return f"invalid event{named}: {reason}"


def _frame_problem(exc: msgspec.DecodeError, frame: str | bytes) -> str:
    syntax = syntax_error(frame, exc)
    if syntax is not None:
        return f"the frame is not valid JSON: {syntax}"
    message, _, location = str(exc).rpartition(" - at `")
    if not message:
        return str(exc)
    location = location.rstrip("`")
    label = _bad_label(lambda: decoded(msgspec.json.decode, frame), location.removeprefix("$."))
    if label is not None:
        message = f"label {label!r} should be a valid string ({message})"
    return f"{message} (at {location})"


def syntax_error(
    body: str | bytes, raised: msgspec.DecodeError | None = None
) -> msgspec.DecodeError | None:
    """The JSON syntax error in ``body``, if any; ``raised``: what a typed decode of it
    raised, when that is the syntax error already (a string that is not UTF-8, which the
    syntax check alone does not see).

    A typed decoder reports the first type mismatch before it reaches a syntax error further
    on (``{not json`` reads as "expected an array"), so error paths check the syntax first.
    """
    if isinstance(raised, NotUtf8):
        return raised
    try:
        msgspec.json.decode(body, type=msgspec.Raw)
    except msgspec.DecodeError as exc:
        return exc
    except RecursionError:
        return msgspec.DecodeError(TOO_DEEP)
    return None


def _decode_error(exc: msgspec.DecodeError, body: bytes) -> InvalidEventError:
    syntax = syntax_error(body, exc)
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
        label = _bad_label(lambda: decoded(msgspec.json.decode, body)[index], in_batch[2])
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
    try:
        event = read_event()
    except msgspec.DecodeError:  # nested too deeply, or not UTF-8: the message says enough
        return None
    labels = event["resource"] if match[2] is None else event["related"][int(match[2])]
    return next((k for k, v in labels.items() if not isinstance(v, str)), None)
