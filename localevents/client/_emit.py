"""``emit_event``: one line to emit an event from any code, sync or async (SPEC B §5.8, A.1).

The event is built and checked in the caller (a bad or oversized event raises there), then
queued on the background :class:`~localevents.client._worker.EventsWorker`, which delivers it
to the configured store. Transport trouble never reaches the caller: the worker logs it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from localevents._exceptions import ConfigurationError, EventTooLarge, InvalidEventError
from localevents._settings import get_settings
from localevents.client._connection import resolve_destination
from localevents.client._events_clients import NullEventsClient
from localevents.client._worker import EventsWorker
from localevents.events._schemas import Event, RelatedResource, Resource
from localevents.events._time import now_utc

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterable, Mapping

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
    occurred: datetime | None = None,
    related: Iterable[Mapping[str, str]] | None = None,
    payload: Mapping[str, Any] | None = None,
    id: uuid.UUID | None = None,
    follows: AnyEvent | None = None,
) -> Event | None:
    """Queue an event for the background worker and return it, without waiting.

    ``occurred`` defaults to now and ``id`` to a new time-ordered UUID. ``follows`` (an
    earlier event) is recorded only if it occurred within five minutes of this one, before or
    after; otherwise ``follows`` stays empty.

    Returns None, emitting nothing, when emission is off (:func:`should_emit_events`), the
    worker's client is a :class:`~localevents.NullEventsClient`, or the worker's queue is full
    (logged and counted). Raises :class:`~localevents.InvalidEventError` for an event that
    breaks a rule (e.g. no ``prefect.resource.id``) and :class:`~localevents.EventTooLarge`
    over ``LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES``, and
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
    try:
        size = built.size_bytes
    except TypeError as exc:  # the payload holds something JSON cannot say
        raise InvalidEventError(f"cannot emit {built.event!r}: {exc}") from exc
    if size > maximum:
        raise EventTooLarge(size, maximum)
    try:
        worker = EventsWorker.instance()
        if worker.client_type is NullEventsClient:
            return None
        return built if worker.send(built) else None
    except Exception as exc:  # the caller's code must not fail because emitting did
        logger.error("Error emitting event %s (%s): %s", built.id, built.event, exc, exc_info=exc)
        return None


def _build(
    name: str,
    *,
    resource: Mapping[str, str],
    occurred: datetime | None,
    related: Iterable[Mapping[str, str]] | None,
    payload: Mapping[str, Any] | None,
    id: uuid.UUID | None,
    follows: AnyEvent | None,
) -> Event:
    occurred = now_utc() if occurred is None else _aware(occurred)
    fields: dict[str, Any] = {"occurred": occurred, "event": name}
    if id is not None:
        fields["id"] = id
    if payload is not None:
        fields["payload"] = dict(payload)
    if follows is not None and _within_window(occurred, follows.occurred):
        fields["follows"] = follows.id
    try:
        fields["resource"] = Resource(dict(resource))
        fields["related"] = [RelatedResource(dict(labels)) for labels in related or ()]
        return Event(**fields)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"cannot emit {name!r}: {exc}") from exc


def _within_window(occurred: datetime, earlier: datetime) -> bool:
    """Strictly within :data:`FOLLOWS_WINDOW` of each other (a naive datetime is read as UTC)."""
    return abs(occurred - _aware(earlier)) < FOLLOWS_WINDOW


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
