"""The live hub: every committed event, fanned out to the subscribers whose filter matches.

One hub per open store (:func:`live_hub`), registered as the store's commit listener, so an
event committed by any app, thread or event loop of the process reaches every subscriber of
that file, and only after its commit (a subscriber never sees an event a query cannot find).

The commit listener only queues what was committed: the hub's own thread does the fan-out,
so a commit never waits for subscribers, and on a busy server the matching runs while DuckDB
works on the next commit without the GIL. Subscribers often share a filter but for its time
window (the SDK sets ``since`` to its connect time), so the rest of the filter (the whole
filter, D5; no ``until`` means no upper bound, D7) is matched once per distinct rest, by
looking up the events that carry what it pins down (event ids, resource ids, event
names: see ``_live_match``) rather than testing every event; each subscriber then takes the events
within its window. Each event's frame is encoded once, for everyone.

Every subscriber has a bounded queue that the hub's thread appends to without waiting. A
subscriber that a commit brings events to while more events than the bound (or more bytes
of their frames than :data:`SUBSCRIBER_QUEUE_BYTES`) from earlier commits are still unsent
(queued, or taken and still being sent) is marked as fallen behind: its queued events are
dropped and its next :meth:`Subscription.receive` raises :class:`FellBehind`, upon which
the socket is closed with 1013 (D8, :data:`FELL_BEHIND`). A commit's share is always queued
whole, however large: one import of more events than the bound reaches a subscriber that
keeps up, and a subscriber whose filter matches nothing of it is not concerned.

Should a commit arrive while more than :data:`BACKLOG_EVENTS` events of earlier commits
still wait for the fan-out, the fan-out has fallen behind the commits, most often because of
one filter: 2000 label patterns are allowed, tested on every event (half a second per 1000
events here), where a filter that follows a resource costs a lookup. So the hub times its
work since it last caught up, in all and per filter matched (two clock readings per commit
and per distinct filter, never per event; a matching under way counts too; see
``_fan_out_clock``), a filter's own tests only: decoding and indexing a commit, which every
filter shares, is done before its clock starts. If some open filters took at least half of
the time left once the filters already gone are taken out, each at least
:data:`COSTLY_SHARE` and :data:`COSTLY_PER_EVENT_S` per event tested, their subscribers
are let go, costliest first, until those gone took half (:data:`FILTER_TOO_COSTLY`); a
matching under way for them stops within ``GIVE_UP_EVERY`` events, and every other
subscriber keeps its place and gets every waiting event. If the filters already gone took
most of the time, the fan-out is left to catch up.

Those are closed with 1008 (policy violation), final for clients, not 1013: the same filter
would cost as much again, and a reconnect with its backfill would only start the round over,
at everyone's expense. Only when no filter stands out (or less than :data:`MEASURED_S` was
timed), or the backlog grows past twice the bound after all, is the stream overloaded: the
waiting commits are dropped and every subscriber is let go (:data:`OVERLOADED`, 1013: which
of them the dropped commits concern is not known without the matching the hub has no time
for, and each may come back and backfill). The socket takes its code and reason from
:attr:`Subscription.dropped`.

A subscriber waiting for events is handed over to its event loop without blocking (asyncio
``call_soon_threadsafe``, trio ``run_sync_soon``), one hand-off per loop and commit however
many of its subscribers it concerns (each is a write to the loop's wake-up pipe); a
subscriber whose loop has gone is dropped. On its loop, a waiting subscriber with a
:attr:`Subscription.sender` gets its new events sent right there, without waking its task;
only when the sender declines (many events, or a connection that flow control holds back)
is the task woken to send them itself. Waking a task, for the one or two events a commit
usually holds for a subscriber following its own resource, cost the server more than the
sending.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Callable  # _Scheduler, a runtime alias
from typing import TYPE_CHECKING, NamedTuple

import anyio
import msgspec
import sniffio

from localevents._metrics import SUBSCRIBERS
from localevents._settings import get_settings
from localevents.server._fan_out_clock import FanOutClock
from localevents.server._handshake import POLICY_VIOLATION, TRY_AGAIN_LATER
from localevents.server._live_match import CommitMatcher, LiveEvent, route_of, untimed

if TYPE_CHECKING:
    import uuid
    from collections.abc import Collection, Iterator, Sequence
    from datetime import datetime

    from localevents.events._filters import EventFilter
    from localevents.storage._engine import EventStore
    from localevents.storage._rows import EncodedEvents

__all__ = (
    "BACKLOG_EVENTS",
    "COSTLY_PER_EVENT_S",
    "COSTLY_SHARE",
    "FELL_BEHIND",
    "FILTER_TOO_COSTLY",
    "MEASURED_S",
    "OVERLOADED",
    "SUBSCRIBER_QUEUE_BYTES",
    "SUBSCRIBER_QUEUE_SIZE",
    "Dropped",
    "FellBehind",
    "LiveEvent",
    "LiveHub",
    "Subscription",
    "live_hub",
)

logger = logging.getLogger("localevents.server")

SUBSCRIBER_QUEUE_SIZE = 10_000
"""Live events that may still be unsent to one subscriber when a commit brings it more, by
default (``LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE``). Several full ingest batches (1000
events each), so a subscriber reading as fast as it can rides out bursts; cheap, because
every subscriber shares each event's one encoded frame. Past it the subscriber is told
(1013) and reconnects with a backfill from storage instead of silently missing events."""

SUBSCRIBER_QUEUE_BYTES = 64 * 1024 * 1024
"""The same bound on the unsent events' frames, in bytes, by default
(``LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_BYTES``): for large events, the count alone would
let one slow subscriber hold gigabytes (10,000 events of up to 1.5 MB)."""

BACKLOG_EVENTS = 20_000
"""Committed events that may wait for the fan-out when another commit arrives, before the
hub lets the costliest filters go (everyone, if none stands out); twice as many after that,
and everyone goes."""

COSTLY_SHARE = 0.25
"""The share of the fan-out's time that one filter's matching must have taken for its
subscribers to be let go as too costly (and those let go must have taken half of it): a
filter among several of like cost is not singled out, the stream is overloaded."""

MEASURED_S = 0.05
"""Seconds of fan-out the hub must have timed before it blames a filter: less is noise."""

COSTLY_PER_EVENT_S = 20e-6
"""The least a filter's own tests must take per event tested for it to be blamed: the only
filter that tests every event (a label filter among subscribers that follow resources) may
take most of the time without being costly. One label of one pattern takes about 2 us per
event here, 2 labels of 1000 patterns about 500 us."""

_IDLE_S = 0.5  # the fan-out thread ends after this long without commits to fan out


class Dropped(NamedTuple):
    """Why the hub let a subscriber go: the code and reason its socket is closed with (each
    reason a sentence that fits a close frame, D9)."""

    code: int
    reason: str


FELL_BEHIND = Dropped(TRY_AGAIN_LATER, "subscriber fell behind")
"""It did not take its events in time: its queue overflowed (D8's words). It reconnects
and backfills."""

FILTER_TOO_COSTLY = Dropped(
    POLICY_VIOLATION,
    "this subscription's filter is too costly to match against live events; subscribe with a "
    "narrower filter",
)
"""Its filter took the fan-out's time (see the module docstring): final, as the same
filter would fail the same way."""

OVERLOADED = Dropped(
    TRY_AGAIN_LATER,
    "the live stream is overloaded: events are stored faster than they can be matched to "
    "subscribers; try again later",
)
"""The fan-out fell behind the commits and no filter of its subscribers stood out."""


class FellBehind(Exception):
    """Raised by :meth:`Subscription.receive` once the hub has let the subscriber go (why:
    :attr:`Subscription.dropped`)."""


_Scheduler = Callable[[Callable[[], object]], object]


def _hand_over_all(subscriptions: list[Subscription]) -> None:
    for subscription in subscriptions:
        subscription.hand_over()


def _thread_safe_scheduler() -> _Scheduler:
    """How to run a callback on the current event loop from any thread, without waiting."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe


class Subscription:
    """One subscriber's filter and bounded queue of live events (see the module docstring).

    Created by :meth:`LiveHub.open_subscription` inside the subscriber's event loop; its
    queue is filled from the hub's thread and drained by :meth:`receive` on that loop.
    """

    def __init__(self, event_filter: EventFilter, maximum: int, maximum_bytes: int) -> None:
        self.filter = event_filter
        self.maximum = maximum
        self.maximum_bytes = maximum_bytes
        self.untimed = untimed(event_filter)
        self.key = msgspec.json.encode(self.untimed)
        """Subscriptions with the same key differ at most in their time window."""
        self.route = route_of(self.untimed)
        """How a commit finds this filter's candidates (see ``_live_match``)."""
        self._since = event_filter.occurred.since
        self._until = event_filter.occurred.until
        self.schedule = _thread_safe_scheduler()
        """Runs a callback on the subscriber's event loop, from any thread."""
        self._new_waiter: Callable[[], anyio.Event] = type(anyio.Event())
        """anyio's event class for this loop's library: ``anyio.Event()`` looks the library
        up on every call, which showed in profiles of 100 subscribers woken per commit."""
        self._lock = threading.Lock()
        self._queue: list[LiveEvent] = []
        self._taken = 0  # events that the last receive returned, still being sent
        self._queued_bytes = self._taken_bytes = 0  # the frames' sizes of both
        self._dropped: Dropped | None = None
        self._waiter: anyio.Event | None = None
        self._handing_over = False  # a hand-off to the subscriber's loop is scheduled
        self.on_fell_behind: Callable[[], None] | None = None
        """Called on the subscriber's loop when the queue overflows while its task is busy
        (sending, so not waiting in :meth:`receive`, which would raise): a task blocked on
        a client that reads nothing is interrupted, not left waiting for it."""
        self.sender: Callable[[Sequence[LiveEvent]], bool] | None = None
        """Sends live events at once, on the subscriber's loop, while its task waits in
        :meth:`receive`, or returns ``False`` to have the task woken to send them; set by
        whoever receives, for as long as it does."""

    @property
    def fell_behind(self) -> bool:
        """Whether the hub has let the subscriber go (it must be disconnected; why:
        :attr:`dropped`)."""
        return self._dropped is not None

    @property
    def dropped(self) -> Dropped | None:
        """Why the hub let the subscriber go (the first reason, if several), if it has."""
        return self._dropped

    def filter_shed(self) -> bool:
        """Whether the hub has let go of every subscriber with this filter (as too costly,
        or all of them): what matches it goes to nobody any more."""
        return self._dropped is not None and self._dropped is not FELL_BEHIND

    @property
    def pending(self) -> bool:
        """Whether live events are queued, so that :meth:`receive` would not wait."""
        return bool(self._queue)

    def queued_ids(self) -> set[uuid.UUID]:
        """The ids of the live events queued now."""
        with self._lock:
            return {live.id for live in self._queue}

    def within(self, occurred: datetime) -> bool:
        """Whether ``occurred`` lies in the subscription's time window."""
        return self._since <= occurred and (self._until is None or occurred <= self._until)

    async def receive(self) -> list[LiveEvent]:
        """Every live event queued so far (at least one), oldest first; raises
        :class:`FellBehind` after an overflow.

        The events returned count against the queue's bound until the next call: what the
        bound limits is the events not yet sent.
        """
        while True:
            with self._lock:
                self._taken = self._taken_bytes = 0
                if self._dropped is not None:
                    raise FellBehind(self._dropped.reason)
                if self._queue:
                    events, self._queue = self._queue, []
                    self._taken, self._taken_bytes = len(events), self._queued_bytes
                    self._queued_bytes = 0
                    return events
                waiter = self._waiter = self._new_waiter()
            await waiter.wait()

    def offer(self, events: Sequence[LiveEvent], size: int) -> bool:
        """Queue events whose frames are ``size`` bytes in all (from the hub's thread;
        never waits). Returns whether the caller must hand the subscription over to its
        event loop: call :meth:`hand_over` there (through :attr:`schedule`)."""
        with self._lock:
            if self._dropped is not None:
                return False
            interrupt = None
            if (  # unsent from earlier commits
                self._taken + len(self._queue) > self.maximum
                or self._taken_bytes + self._queued_bytes > self.maximum_bytes
            ):
                self._queue, self._queued_bytes = [], 0
                self._dropped = FELL_BEHIND
                interrupt = self.on_fell_behind if self._waiter is None else None
            else:
                self._queue.extend(events)
                self._queued_bytes += size
            handing_over = self._waiter is not None and not self._handing_over
            if handing_over:
                self._handing_over = True
        if interrupt is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                self.schedule(interrupt)
        return handing_over

    def hand_over(self) -> None:
        """On the subscriber's loop: send the queued events through :attr:`sender` if the
        subscriber waits for them and the sender takes them, else wake the subscriber."""
        with self._lock:
            self._handing_over = False
            waiter, events = self._waiter, self._queue
            if waiter is None:  # awake already: it will take the queue itself
                return
            sender = self.sender if events and self._dropped is None else None
            if sender is None:  # the task is woken, and takes the queue itself
                self._waiter = None
            else:
                self._queue, size, self._queued_bytes = [], self._queued_bytes, 0
        if sender is not None:
            if self._send(sender, events):
                return
            with self._lock:  # declined: they go first to the task, woken to send them
                self._queue[:0] = events
                self._queued_bytes += size
                self._waiter = None
        waiter.set()

    @staticmethod
    def _send(sender: Callable[[Sequence[LiveEvent]], bool], events: list[LiveEvent]) -> bool:
        """Whether ``sender`` sent ``events``; one that fails declines (its task, woken,
        meets the failure itself), so the other subscribers of this hand-off still get
        theirs."""
        try:
            return sender(events)
        except Exception:
            logger.exception("could not send live events from the hub; waking the subscriber")
            return False

    def fall_behind(self, dropped: Dropped) -> bool:
        """Drop the queue and let the subscriber go for ``dropped``, as an overflow does
        for :data:`FELL_BEHIND`: a task waiting for events is woken, one busy sending is
        interrupted. Returns ``False`` when the subscriber's event loop is gone."""
        with self._lock:
            self._queue, self._queued_bytes = [], 0
            if self._dropped is None:
                self._dropped = dropped
            waiter, self._waiter = self._waiter, None
            tell = self.on_fell_behind if waiter is None else waiter.set
        if tell is None:
            return True
        try:
            self.schedule(tell)
        except RuntimeError:  # its loop has closed (trio's RunFinishedError is one too)
            return False
        return True


class _Commit:
    """The events of one commit, prepared for the fan-out: each subscriber's share of them
    is worked out once per distinct filter but for the time window (see
    :attr:`Subscription.key`), and each event's frame is built once, however many
    subscribers get it."""

    def __init__(
        self, batches: Sequence[EncodedEvents], stream_id: str | None, clock: FanOutClock
    ) -> None:
        self._clock = clock
        self._matcher = CommitMatcher(batches, stream_id)
        self._occurred = [event.occurred for event in self._matcher.events]
        self._earliest, self._latest = min(self._occurred), max(self._occurred)
        self._by_key: dict[bytes, tuple[list[int], list[LiveEvent], int]] = {}

    def events_for(self, subscription: Subscription) -> tuple[list[LiveEvent], int]:
        """The live events that match ``subscription``, in commit order, and the size of
        their frames in bytes."""
        shared = self._by_key.get(subscription.key)
        if shared is None:
            indexes = self._matching(subscription)
            events = self._matcher.live(indexes)
            shared = self._by_key[subscription.key] = (indexes, events, _size(events))
        indexes, events, size = shared
        if subscription.within(self._earliest) and subscription.within(self._latest):
            return events, size
        occurred = self._occurred
        within = [
            e for i, e in zip(indexes, events, strict=True) if subscription.within(occurred[i])
        ]
        return within, _size(within)

    def _matching(self, subscription: Subscription) -> list[int]:
        """The positions of the events that pass ``subscription``'s filter but for its
        window, the time it took put on the filter's account; nothing once the filter is
        shed meanwhile (its subscribers are all gone)."""
        candidates = self._matcher.candidates(subscription.untimed, subscription.route)
        # the filter's own tests are timed, not the work any filter shares
        self._clock.start_matching(subscription.key, len(candidates))
        try:
            return self._matcher.matching(
                subscription.untimed, subscription.route, subscription.filter_shed, candidates
            )
        finally:
            self._clock.end_matching()


def _size(events: Sequence[LiveEvent]) -> int:
    return sum(len(live.wire) for live in events)


class LiveHub:
    """The subscribers of one store; :meth:`publish` is the store's commit listener."""

    def __init__(
        self,
        maximum: int = SUBSCRIBER_QUEUE_SIZE,
        maximum_bytes: int = SUBSCRIBER_QUEUE_BYTES,
        stream_id: str | None = None,
    ) -> None:
        self.maximum = maximum
        self.maximum_bytes = maximum_bytes
        self.stream_id = stream_id
        """The store's (see ``EventStore.stream_id``): live events then carry positions."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the thread waits for commits
        self._idle = threading.Condition(self._lock)  # flush waits for the thread
        self._subscriptions: set[Subscription] = set()
        self._backlog: collections.deque[Sequence[EncodedEvents]] = collections.deque()
        self._backlog_events = 0
        self._fanning_out = False
        self._published = self._fanned_out = 0
        self._clock = FanOutClock()
        # What the hub did when the backlog last passed its bound ("": it is within it, or
        # everyone was let go): the fan-out then has until twice the bound to catch up.
        self._shed_what = ""

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    @contextlib.contextmanager
    def open_subscription(self, event_filter: EventFilter) -> Iterator[Subscription]:
        """Receive the live events matching ``event_filter`` for the block (call it from the
        event loop that will receive them)."""
        subscription = Subscription(event_filter, self.maximum, self.maximum_bytes)
        with self._lock:
            self._subscriptions.add(subscription)
        SUBSCRIBERS.inc()
        try:
            yield subscription
        finally:
            SUBSCRIBERS.dec()
            self._discard(subscription)

    def publish(self, batches: Sequence[EncodedEvents]) -> None:
        """Queue newly committed events for the fan-out (the commit listener: returns at
        once, never raises)."""
        events = sum(len(batch) for batch in batches)
        with self._lock:
            if not self._subscriptions or not events:
                return
            waiting = self._backlog_events  # of earlier commits
            self._backlog.append(batches)
            self._backlog_events += events
            self._published += 1
            if waiting > BACKLOG_EVENTS:
                self._catch_up(waiting)
            else:
                self._shed_what = ""
            if self._fanning_out:
                self._work.notify()
                return
            self._fanning_out = True
        fan_out = threading.Thread(
            target=self._fan_out_backlog, name="localevents-live-hub", daemon=True
        )
        fan_out.start()

    def flush(self) -> None:
        """Wait until every commit published so far has been fanned out."""
        with self._lock:
            published = self._published
            while self._fanned_out < published:
                self._idle.wait()

    def fan_out(self, batches: Sequence[EncodedEvents]) -> None:
        """Offer one commit's events to every matching subscriber (what the hub's thread
        does with each commit; never raises)."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        self._clock.start_commit()
        try:
            commit = _Commit(batches, self.stream_id, self._clock)
            hand_overs: dict[_Scheduler, list[Subscription]] = {}
            for subscription in subscriptions:
                if subscription.fell_behind:  # let go: its matching would be lost work
                    continue
                events, size = commit.events_for(subscription)
                if events and subscription.offer(events, size):
                    hand_overs.setdefault(subscription.schedule, []).append(subscription)
            for schedule, waiting in hand_overs.items():  # one hand-off per event loop
                try:
                    schedule(functools.partial(_hand_over_all, waiting))
                except RuntimeError:  # that loop has closed (trio's RunFinishedError too)
                    for subscription in waiting:
                        self._discard(subscription)
        except Exception:  # the events are committed: their writers must hear so, whatever
            logger.exception("could not hand committed events to live subscribers")
        finally:
            self._clock.end_commit()

    def _fan_out_backlog(self) -> None:
        """The hub's thread: fan out commits in order until none has come for a while."""
        while True:
            with self._lock:
                if not self._backlog and not self._work.wait_for(lambda: self._backlog, _IDLE_S):
                    self._fanning_out = False
                    return
                batches = self._backlog.popleft()
                self._backlog_events -= sum(len(batch) for batch in batches)
                if not self._backlog:  # caught up: time what comes next afresh
                    self._clock.restart()
            self.fan_out(batches)
            with self._lock:
                self._fanned_out += 1
                self._idle.notify_all()

    def _catch_up(self, waiting: int) -> None:
        """The fan-out is ``waiting`` events behind the commits: let the costliest filters
        go, or, if that cannot help or did not, everyone (called holding the lock)."""
        if not self._shed_what:
            busy, spent = self._clock.spent()
            open_keys = {s.key for s in self._subscriptions if not s.fell_behind}
            gone = sum(seconds for key, seconds in spent.items() if key not in open_keys)
            costly = self._costly_filters(busy - gone, spent, open_keys)  # of what is left
            if costly:
                self._shed_what = "the costliest filters were let go"
                self._shed(costly, waiting, busy, spent)
                return
            if busy >= MEASURED_S and gone >= busy / 2:  # it catches up alone
                self._shed_what = "the filters that took its time had gone already"
                logger.info(
                    "the live fan-out is %d events behind the commits, but the filters that "
                    "took %.0f%% of its %.2f s have gone; catching up",
                    waiting,
                    100 * gone / busy,
                    busy,
                )
                return
            cause = "no subscriber's filter stands out as costly"
        elif waiting <= 2 * BACKLOG_EVENTS:
            return  # catching up without the filters shed: give it the time
        else:
            cause = f"it did not catch up after {self._shed_what}"
        self._drop_backlog(waiting, cause)

    def _costly_filters(
        self, busy: float, spent: dict[bytes, float], open_keys: set[bytes]
    ) -> set[bytes]:
        """The fewest of the filters ``open_keys``, costliest first, whose subscribers
        must go for those gone to have taken half of the ``busy`` seconds of matching the
        open filters had (``spent``: each filter's), each at least :data:`COSTLY_SHARE` of
        them and :data:`COSTLY_PER_EVENT_S` per event; none if there are none such."""
        if busy < MEASURED_S:
            return set()
        ranked = sorted(((spent[key], key) for key in open_keys if key in spent), reverse=True)
        costly: set[bytes] = set()
        taken = 0.0
        for seconds, key in ranked:
            if taken >= busy / 2 or seconds < busy * COSTLY_SHARE:
                break
            if self._clock.per_event(key, seconds) < COSTLY_PER_EVENT_S:
                continue  # it tests many events, each cheaply: not the filter's fault
            costly.add(key)
            taken += seconds
        return costly if taken >= busy / 2 else set()

    def _shed(
        self, keys: Collection[bytes], waiting: int, busy: float, spent: dict[bytes, float]
    ) -> None:
        """Let go of the subscribers of the filters ``keys`` as too costly (called holding
        the lock); the waiting commits are kept for the others."""
        doomed = [s for s in self._subscriptions if s.key in keys and not s.fell_behind]
        logger.warning(
            "the live fan-out is %d events behind the commits: closing %d subscriber(s) "
            "whose %d filter(s) took %.0f%% of its %.2f s since it last caught up; too "
            "costly to match live",
            waiting,
            len(doomed),
            len(keys),
            100 * sum(spent[key] for key in keys) / busy,
            busy,
        )
        self._let_go(doomed, FILTER_TOO_COSTLY)

    def _drop_backlog(self, waiting: int, cause: str) -> None:
        """The fan-out cannot keep up with the commits: drop those waiting and let every
        subscriber go (called holding the lock)."""
        logger.warning(
            "live stream overloaded: the fan-out is %d events behind the commits and %s; "
            "dropping them and closing all %d subscribers",
            waiting,
            cause,
            sum(1 for s in self._subscriptions if not s.fell_behind),
        )
        self._fanned_out += len(self._backlog)
        self._backlog.clear()
        self._backlog_events = 0
        self._shed_what = ""
        self._clock.restart()
        self._idle.notify_all()
        self._let_go(list(self._subscriptions), OVERLOADED)

    def _let_go(self, subscriptions: Sequence[Subscription], dropped: Dropped) -> None:
        """Let ``subscriptions`` go for ``dropped``, forgetting those whose event loop is
        gone (called holding the lock)."""
        for subscription in subscriptions:
            if not subscription.fall_behind(dropped):
                self._subscriptions.discard(subscription)

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
            settings = get_settings()
            hub = _hubs[store] = LiveHub(
                settings.events_subscriber_queue_size,
                settings.events_subscriber_queue_bytes,
                store.stream_id,
            )
            store.add_commit_listener(hub.publish)
        return hub
