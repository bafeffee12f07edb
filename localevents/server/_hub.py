"""The live hub: every committed event, fanned out to the subscribers whose filter matches.

One hub per open store (:func:`live_hub`), registered as the store's commit listener, so an
event committed by any app, thread or event loop of the process reaches every subscriber of
that file, and only after its commit (a subscriber never sees an event a query cannot find).

The committing thread does the matching (the whole filter, D5; no ``until`` means no upper
bound, D7) and appends to each subscriber's bounded queue; it never waits for a subscriber.
A subscriber whose queue overflows is marked as fallen behind: its queued events are dropped
and its next :meth:`Subscription.receive` raises :class:`FellBehind`, upon which the socket
is closed with 1013 (D8). Waking a waiting subscriber from the committing thread is a
non-blocking hand-off to its event loop (asyncio ``call_soon_threadsafe``, trio
``run_sync_soon``); a subscriber whose loop has gone is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import msgspec
import sniffio

from localevents.events._filters import EventOccurredFilter
from localevents.events._schemas import ReceivedEvent, reading_stored_events
from localevents.storage._rows import row_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from localevents.events._filters import EventFilter
    from localevents.storage._engine import EventStore
    from localevents.storage._rows import Row

__all__ = (
    "SUBSCRIBER_QUEUE_SIZE",
    "FellBehind",
    "LiveEvent",
    "LiveHub",
    "Subscription",
    "live_hub",
)

logger = logging.getLogger("localevents.server")

SUBSCRIBER_QUEUE_SIZE = 1_000
"""Live events that may wait for one subscriber. Enough for bursts (Prefect keeps 256),
small enough that a stalled subscriber costs little memory: on overflow it is told (1013)
and reconnects with a backfill from storage instead of silently missing events."""

_decoder = msgspec.json.Decoder(ReceivedEvent)


class FellBehind(Exception):
    """Raised by :meth:`Subscription.receive` once the subscriber's queue has overflowed."""


class LiveEvent(msgspec.Struct, frozen=True, gc=False):
    """A committed event: its id as the JSON writes it, the event (for filters) and the
    JSON a query returns for it (what subscribers are sent)."""

    id: str
    event: ReceivedEvent
    json: str


def _live_events(rows: Sequence[Row]) -> list[LiveEvent]:
    live = []
    with reading_stored_events():  # the store accepted them: its limits, not ours, applied
        for row in rows:
            json = row_json(row)
            live.append(LiveEvent(row.i, _decoder.decode(json), json))
    return live


def _thread_safe_scheduler() -> Callable[[Callable[[], object]], object]:
    """How to run a callback on the current event loop from any thread, without waiting."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe


_ANY_TIME = EventOccurredFilter(since=datetime.min.replace(tzinfo=UTC))


class Subscription:
    """One subscriber's filter and bounded queue of live events (see the module docstring).

    Created by :meth:`LiveHub.open_subscription` inside the subscriber's event loop; its
    queue is filled from committing threads and drained by :meth:`receive` on that loop.
    """

    def __init__(self, event_filter: EventFilter, maximum: int) -> None:
        self.filter = event_filter
        self.maximum = maximum
        # Subscribers often share a filter but for its time window (the SDK sets ``since``
        # to its connect time): the hub tests the rest once per distinct key.
        self.untimed = msgspec.structs.replace(event_filter, occurred=_ANY_TIME)
        self.key = msgspec.json.encode(self.untimed)
        self._schedule = _thread_safe_scheduler()
        self._lock = threading.Lock()
        self._queue: collections.deque[LiveEvent] = collections.deque()
        self._fell_behind = False
        self._waiter: anyio.Event | None = None

    @property
    def fell_behind(self) -> bool:
        """Whether the queue has overflowed (the subscriber must be disconnected)."""
        return self._fell_behind

    async def receive(self) -> LiveEvent:
        """The next live event, oldest first; raises :class:`FellBehind` after an overflow."""
        while True:
            with self._lock:
                if self._fell_behind:
                    raise FellBehind
                if self._queue:
                    return self._queue.popleft()
                waiter = self._waiter = anyio.Event()
            await waiter.wait()

    def offer(self, events: Sequence[LiveEvent]) -> bool:
        """Queue the events that match (called in a committing thread, never waits).

        ``events`` have passed the filter but for its time window (see :attr:`key`).
        Returns ``False`` when the subscriber's event loop is gone.
        """
        window = self.filter.occurred
        matching = [e for e in events if window.includes(e.event, live=True)]
        if not matching:
            return True
        with self._lock:
            if self._fell_behind:
                return True
            self._queue.extend(matching)
            if len(self._queue) > self.maximum:
                self._queue.clear()
                self._fell_behind = True
            waiter, self._waiter = self._waiter, None
        if waiter is None:
            return True
        try:
            self._schedule(waiter.set)
        except RuntimeError:  # its loop has closed (trio's RunFinishedError is one too)
            return False
        return True


class LiveHub:
    """The subscribers of one store; :meth:`publish` is the store's commit listener."""

    def __init__(self, maximum: int = SUBSCRIBER_QUEUE_SIZE) -> None:
        self.maximum = maximum
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    @contextlib.contextmanager
    def open_subscription(self, event_filter: EventFilter) -> Iterator[Subscription]:
        """Receive the live events matching ``event_filter`` for the block (call it from the
        event loop that will receive them)."""
        subscription = Subscription(event_filter, self.maximum)
        with self._lock:
            self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._discard(subscription)

    def publish(self, rows: list[Row]) -> None:
        """Fan out newly committed rows (the commit listener: must never raise)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        if not subscriptions or not rows:
            return
        # Nothing may escape: the write has committed, and its caller must hear so.
        try:
            events = _live_events(rows)
        except Exception:
            logger.exception("could not read committed events for live subscribers")
            return
        matching: dict[bytes, list[LiveEvent]] = {}
        for subscription in subscriptions:
            try:
                passed = matching.get(subscription.key)
                if passed is None:
                    untimed = subscription.untimed
                    passed = [e for e in events if untimed.includes(e.event, live=True)]
                    matching[subscription.key] = passed
                delivered = subscription.offer(passed)
            except Exception:
                logger.exception("could not hand committed events to a live subscriber")
                continue
            if not delivered:
                self._discard(subscription)

    def _discard(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)


_hubs_lock = threading.Lock()
_hubs: weakref.WeakKeyDictionary[EventStore, LiveHub] = weakref.WeakKeyDictionary()


def live_hub(store: EventStore) -> LiveHub:
    """The process-wide hub of ``store``, created and registered on first use."""
    with _hubs_lock:
        hub = _hubs.get(store)
        if hub is None:
            hub = _hubs[store] = LiveHub()
            store.add_commit_listener(hub.publish)
        return hub
