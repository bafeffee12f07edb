"""Events clients for tests: they record what is emitted (SPEC B §5.1).

:class:`AssertingEventsClient` records and delivers nothing;
:class:`AssertingPassthroughEventsClient` records and streams to the configured store like
:class:`WebSocketEventsClient`. Both record
the arguments they were built with (``args``, ``kwargs``) and keep, per class, the most recent
instance (``last``) and every instance (``all``) since the last :meth:`reset`, so a test can
find the client a background worker built::

    EventsWorker.set_client_override(AssertingEventsClient)
    emit_event("acme.widget.made", resource={"prefect.resource.id": "acme.widget.1"})
    EventsWorker.instance().flush()
    assert [e.event for e in AssertingEventsClient.last.events] == ["acme.widget.made"]

The registries are shared by every thread (a worker builds its client in its own thread).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from localevents.client._events_clients import EventsClient, WebSocketEventsClient

if TYPE_CHECKING:
    from localevents.events._schemas import Event

__all__ = ("AssertingEventsClient", "AssertingPassthroughEventsClient")

_registry_lock = threading.Lock()


class _Recorder:
    """The recording half shared by both asserting clients (each class has its own registry)."""

    last: ClassVar[Any] = None
    all: ClassVar[list[Any]]  # declared (with a value) by each class that keeps a registry
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    events: list[Event]

    @classmethod
    def _registry(cls) -> type[_Recorder]:
        """The class whose ``last`` and ``all`` record this one: the nearest that declares
        its own ``all`` (a subclass shares its parent's registry unless it declares one)."""
        return next(owner for owner in cls.__mro__ if "all" in owner.__dict__)

    def _record_construction(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self.events = []
        registry = self._registry()
        with _registry_lock:
            registry.last = self
            registry.all.append(self)

    @classmethod
    def reset(cls) -> None:
        """Forget every recorded instance (``last`` becomes None, ``all`` empty)."""
        registry = cls._registry()
        with _registry_lock:
            registry.last = None
            registry.all = []

    def pop_events(self) -> list[Event]:
        """The events recorded so far, oldest first; the record starts empty again."""
        with _registry_lock:
            events, self.events = self.events, []
        return events


class AssertingEventsClient(_Recorder, EventsClient):
    """Records every emitted event in ``events`` (kept after the block ends); delivers none.

    Accepts any constructor arguments and keeps them as ``args`` and ``kwargs``, so it can
    stand in for any client. ``AssertingEventsClient.last`` is the newest instance and
    ``AssertingEventsClient.all`` every instance since :meth:`reset`, subclasses' included
    (a subclass that declares its own ``all = []`` keeps its own registry).
    """

    last: ClassVar[AssertingEventsClient | None] = None
    all: ClassVar[list[AssertingEventsClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._record_construction(args, kwargs)

    async def _emit(self, event: Event) -> None:
        self.events.append(event)


class AssertingPassthroughEventsClient(_Recorder, WebSocketEventsClient):
    """A :class:`WebSocketEventsClient` that also records each event it is asked to emit.

    Takes the websocket client's arguments (and records them). An event is recorded once,
    when emitted, even if a reconnect sends it again; it is recorded even if delivery fails.
    ``last``, ``all`` and :meth:`reset` are this class's own, apart from
    :class:`AssertingEventsClient`'s.
    """

    last: ClassVar[AssertingPassthroughEventsClient | None] = None
    all: ClassVar[list[AssertingPassthroughEventsClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._record_construction(args, kwargs)

    async def _emit(self, event: Event) -> None:
        self.events.append(event)
        await super()._emit(event)
