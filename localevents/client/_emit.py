"""``emit_event``: one line to emit an event from any code, sync or async (SPEC B §5.8, A.1).

The event is built and checked in the caller (a bad or oversized event raises there), then
queued on the background :class:`~localevents.client._worker.EventsWorker`, which delivers it
to the configured store. Transport trouble never reaches the caller: the worker logs it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from localevents._exceptions import ConfigurationError, EventTooLarge, InvalidEventError
from localevents._settings import get_settings
from localevents.client._connection import resolve_destination
from localevents.client._events_clients import NullEventsClient
from localevents.client._worker import DRAIN_TIMEOUT_AT_EXIT, EventsWorker, exit_drain_done
from localevents.events._schemas import Event

if TYPE_CHECKING:
    from localevents.events._schemas import AnyEvent

__all__ = ("FOLLOWS_WINDOW", "emit_event", "should_emit_events")

logger = logging.getLogger("localevents.client")

FOLLOWS_WINDOW = timedelta(minutes=5)
"""``follows`` is kept only for an event that occurred less than this long before or after."""


def should_emit_events() -> bool:
    """Whether ``emit_event`` emits: when a destination is configured (a server URL, an open
    ``ephemeral()`` block, or ephemeral mode allowed) or a test client override is set."""
    if EventsWorker.client_override() is not None:
        return True
    settings = get_settings()  # a bad LOCALEVENTS_* setting (a misspelt name) raises here
    try:
        resolve_destination(settings=settings)
    except ConfigurationError:  # no destination: emission is off, as documented
        return False
    return True


def emit_event(  # noqa: PLR0917 (Prefect's signature, positional as there)
    event: str,
    resource: Mapping[str, str],
    occurred: datetime | str | None = None,
    related: Iterable[Mapping[str, str]] | None = None,
    payload: Mapping[str, Any] | None = None,
    id: uuid.UUID | str | None = None,
    follows: AnyEvent | None = None,
) -> Event | None:
    """Queue an event for the background worker and return it, without waiting.

    ``occurred`` defaults to now and ``id`` to a new time-ordered UUID; both take the forms
    :class:`~localevents.Event` takes (an ISO 8601 string, a UUID string). ``follows`` (an
    earlier event) is recorded only if it occurred within five minutes of this one, before or
    after; otherwise ``follows`` stays empty.

    Returns None, emitting nothing, when emission is off (:func:`should_emit_events`), the
    worker's client is a :class:`~localevents.NullEventsClient`, or the worker's queue is full
    (logged and counted). Raises :class:`~localevents.InvalidEventError` for an event that
    :class:`~localevents.Event` refuses (a field of the wrong type, a payload JSON cannot
    encode, no ``prefect.resource.id``: its message, after the event's name) and
    :class:`~localevents.EventTooLarge` over ``LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES``, and
    :class:`~localevents.ConfigurationError` for a bad ``LOCALEVENTS_*`` setting (a
    misspelt name, say: the event would otherwise be dropped without a word); never raises
    for transport trouble.
    """
    if not should_emit_events():
        return None
    built = _build(
        event,
        resource=resource,
        occurred=occurred,
        related=related,
        payload=payload,
        id=id,
        follows=follows,
    )
    maximum = get_settings().events_maximum_size_bytes
    size = built.size_bytes  # Event has checked that JSON can encode the payload
    if size > maximum:
        raise EventTooLarge(size, maximum)
    try:
        worker = EventsWorker.instance()
        if worker.client_type is NullEventsClient:
            return None
        if not worker.send(built):
            return None
        if exit_drain_done():  # an atexit handler: no later drain would deliver it
            worker.drain(DRAIN_TIMEOUT_AT_EXIT)
        return built
    except Exception as exc:  # the caller's code must not fail because emitting did
        logger.error("Error emitting event %s (%s): %s", built.id, built.event, exc, exc_info=exc)
        return None


def _build(
    name: str,
    *,
    resource: Mapping[str, str],
    occurred: datetime | str | None,
    related: Iterable[Mapping[str, str]] | None,
    payload: Mapping[str, Any] | None,
    id: uuid.UUID | str | None,
    follows: AnyEvent | None,
) -> Event:
    """The event, built and checked by :class:`Event` from copies of the caller's mappings
    (the worker sends it later; the caller may change theirs meanwhile)."""
    given = {
        "occurred": occurred,
        "related": _copied_each(related),
        "payload": _copied(payload),
        "id": id,
    }
    fields: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    fields["resource"] = _copied(resource)  # None too: Event says what it should be
    try:
        earlier = None if follows is None else _earlier(follows)
        built = Event(event=name, **fields)
    except InvalidEventError as exc:
        raise InvalidEventError(f"cannot emit {_shown(name)}: {exc}") from exc
    if earlier is not None and _within_window(built.occurred, earlier[1]):
        built.follows = earlier[0]
    return built


def _copied(value: object) -> object:
    """A mapping as a new dict; anything else as it is, for :class:`Event` to refuse."""
    return dict(value) if isinstance(value, Mapping) else value


def _copied_each(related: object) -> object:
    """Related resources as a list of copies; anything but an iterable of them as it is."""
    if isinstance(related, Mapping | str | bytes) or not isinstance(related, Iterable):
        return related  # None, or not a list of resources: Event says so
    return [_copied(labels) for labels in related]


def _earlier(follows: object) -> tuple[uuid.UUID, datetime]:
    """The id and time of the event that ``follows`` names (any object with both, as
    Prefect's events have)."""
    identifier = getattr(follows, "id", None)
    moment = getattr(follows, "occurred", None)
    if not isinstance(identifier, uuid.UUID) or not isinstance(moment, datetime):
        raise InvalidEventError(
            f"follows must be the earlier event (an Event or ReceivedEvent), "
            f"got {type(follows).__name__} {follows!r:.60}"
        )
    return identifier, moment


def _within_window(occurred: datetime, earlier: datetime) -> bool:
    """Strictly within :data:`FOLLOWS_WINDOW` of each other (a naive datetime is read as UTC)."""
    return abs(occurred - _aware(earlier)) < FOLLOWS_WINDOW


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_SHOWN_NAME = 80
"""Characters of an event's name an error shows (a name over the limit can be any length)."""


def _shown(name: object) -> str:
    """``name`` as an error shows it: its repr, cut short if long, saying how long it is."""
    if isinstance(name, str) and len(name) > _SHOWN_NAME:
        return f"{name[:_SHOWN_NAME]!r}... ({len(name)} characters)"
    return repr(name)
