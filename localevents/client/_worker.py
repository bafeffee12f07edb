"""The background events worker: emit from any code, sync or async, without awaiting
(SPEC B §5.7, D15).

An :class:`EventsWorker` owns a daemon thread that runs its own event loop (asyncio or trio)
and one events client, open for the worker's life. :meth:`EventsWorker.send` queues an event
and returns at once; the loop hands queued events to the client one at a time, in order.

Limits, and what happens at them:

- The queue holds at most ``LOCALEVENTS_EVENTS_WORKER_MAX_QUEUE_SIZE`` events (10000 by
  default). When it is full, the new event is dropped: :meth:`~EventsWorker.send` returns
  False, ``statistics().dropped`` counts it, and a warning says how many were dropped (at
  most one warning every ``WARNING_INTERVAL`` seconds). Sending never blocks.
- An event the client raises on is logged (rate-limited the same way) and counted in
  ``statistics().failed``; the websocket client keeps it and sends it again after its next
  reconnect. So is an event the server refuses later (the client logs and drops it), which
  then no longer counts as sent.
- While the client cannot connect, queued events wait (the queue bound still applies), the
  worker tries again every ``RECONNECT_DELAY`` seconds (at once for a waiting
  :meth:`~EventsWorker.flush`), and :meth:`~EventsWorker.flush` raises.

Lifecycle: :meth:`EventsWorker.instance` returns the one running worker for a client type,
its options, the destination (a server URL or an in-process database) and the backend,
starting it on first use. Every running worker is drained when the interpreter exits, within
``DRAIN_TIMEOUT_AT_EXIT`` seconds: once every other thread that Python waits for at exit
(non-daemon threads, thread pool workers) has ended, since those may still emit, and before
Python stops starting threads. A drain confirms what the client holds (a client that has just
found its server unreachable tries once, not its whole reconnect budget again; an events
file that another process holds, in ephemeral mode, is tried again for up to
``HELD_FILE_PATIENCE`` seconds, since that process may be about to let go of it, unless it
is the parent); one error
then says how many events were not delivered, and why. After ``os.fork()`` the child starts
with no workers: its first ``instance()`` starts a fresh one, and a worker object inherited
from the parent refuses events instead of queueing them for a thread that does not exist there.
An event emitted after that drain (from an ``atexit`` handler, which Python runs later) is
delivered before ``emit_event`` returns, as nothing else would deliver it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import importlib
import logging
import math
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import anyio
import msgspec

from localevents._exceptions import (
    AuthenticationError,
    ConfigurationError,
    DatabaseInUseError,
    ServiceUnavailable,
)
from localevents._metrics import WORKER_EVENTS_DROPPED
from localevents._settings import get_settings
from localevents.client._connection import Destination, connect, resolve_destination
from localevents.client._events_clients import (
    EventsClient,
    NullEventsClient,
    WebSocketEventsClient,
)
from localevents.client._websocket import describe, is_unreachable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from types import TracebackType

    from localevents.events._schemas import Event

__all__ = ("Backend", "EventsWorker", "EventsWorkerStatistics", "exit_drain_done")

logger = logging.getLogger("localevents.client")

Backend = Literal["asyncio", "trio"]

WARNING_INTERVAL = 10.0
"""Seconds between two warnings about dropped or failed events (the rest are counted)."""
RECONNECT_DELAY = 5.0
"""Seconds between two attempts to open a client that failed to connect."""
DRAIN_TIMEOUT_AT_EXIT = 30.0
"""Seconds the interpreter's exit waits for all workers to deliver what they hold."""
CANCEL_GRACE = 5.0
"""Seconds a worker that did not drain in time gets to close once cancelled."""
HELD_FILE_PATIENCE = 25.0
"""Seconds a stopping worker keeps trying to open an events file that another process holds
(in ephemeral mode: another script may be about to let go of it); less than
:data:`DRAIN_TIMEOUT_AT_EXIT`, so that at exit the wait ends first, with its reason."""
HELD_FILE_RETRY = 0.2
"""Seconds between two of those attempts."""

_ClientOptions = tuple[tuple[str, Any], ...]
_Key = tuple[type[EventsClient], _ClientOptions, Destination | None, str]


class EventsWorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker has done so far."""

    queued: int
    """Events waiting in the queue."""
    sent: int
    """Events handed to the client without an error (and not refused by the server since)."""
    dropped: int
    """Events refused because the queue was full."""
    failed: int
    """Events the client raised on, or that the server refused (logged)."""
    max_queue_size: int


_LASTING_ERRORS = (AuthenticationError, ConfigurationError)
"""Failures a later attempt would meet again (a refused key, a client that cannot work as
configured): :meth:`EventsWorker.flush` raises them as what they are, not as
:class:`ServiceUnavailable` (retry later)."""


class _NotConfirmed(Exception):
    """Leaves a client's block at stop when confirming its events failed (logged later)."""


class _Flush:
    """A marker in the queue: set once the client has confirmed everything before it."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done.set()


class _Throttle:
    """Lets one occurrence through per interval and counts the ones it holds back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -math.inf
        self._held_back = 0

    def allow(self) -> int | None:
        """None to stay quiet, else how many occurrences were held back since the last one."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held_back += 1
            return None
        self._last = now
        held_back, self._held_back = self._held_back, 0
        return held_back


def _load_event_loop(backend: Backend) -> None:
    """Import the event loop's modules in the caller's thread, before the worker's thread
    starts (it would import them as it begins): a process forked while that thread was
    importing them gave its children half-initialised modules, on which every worker they
    started failed (a ``multiprocessing`` pool forked right after the first emit)."""
    importlib.import_module(f"anyio._backends._{backend}")
    importlib.import_module("anyio.streams.stapled")  # connecting over TCP
    importlib.import_module("anyio.streams.tls")


def _nudge_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking sockets: (what the loop reads, what others write)."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    return reader, writer


def _freeze(options: Mapping[str, Any]) -> _ClientOptions:
    frozen = tuple(sorted(options.items()))
    try:
        hash(frozen)
    except TypeError as exc:
        raise ConfigurationError(f"events client options must be hashable: {exc}") from exc
    return frozen


def _current_destination() -> Destination | None:
    try:
        return resolve_destination()
    except ConfigurationError:  # unconfigured: only clients that need no server can work
        return None


class EventsWorker:
    """A background thread that emits events through one client, in order.

    Usually obtained with :meth:`instance` (what ``emit_event`` uses); a worker built directly
    is started and drained by ``with EventsWorker(...) as worker:``. See the module docstring
    for the queue bound, failures, exit and fork behaviour.
    """

    _lock: ClassVar[threading.RLock] = threading.RLock()
    _instances: ClassVar[dict[_Key, EventsWorker]] = {}
    _running: ClassVar[set[EventsWorker]] = set()
    _override: ClassVar[tuple[type[EventsClient], _ClientOptions] | None] = None

    def __init__(
        self,
        client_type: type[EventsClient] = WebSocketEventsClient,
        client_options: Mapping[str, Any] | None = None,
        *,
        destination: Destination | None = None,
        backend: Backend = "asyncio",
        max_queue_size: int | None = None,
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ConfigurationError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        size = get_settings().events_worker_max_queue_size
        size = size if max_queue_size is None else max_queue_size
        if size < 1:
            raise ConfigurationError("LOCALEVENTS_EVENTS_WORKER_MAX_QUEUE_SIZE must be > 0")
        self.client_type = client_type
        self.client_options = dict(client_options or {})
        self.destination = destination
        self.backend = backend
        self.max_queue_size = size
        self.client: EventsClient | None = None
        self._pid = os.getpid()
        self._state = threading.Lock()
        self._items: collections.deque[Event | _Flush] = collections.deque()
        self._queued = 0
        self._sent = self._dropped = self._failed = 0
        self._refused = 0  # of the client's refused events, those counted as failed
        self._stop_reason: BaseException | None = None  # why the last delivery failed, at stop
        self._held_since: float | None = None  # stopping, the events file held elsewhere since
        self._started = self._stopping = self._stopped = self._cancelling = False
        # Other threads wake the loop by writing a byte to a socket that a task of the loop
        # watches (see _watch); only the loop touches its own anyio objects.
        self._nudges: tuple[socket.socket, socket.socket] | None = None
        self._waiting = False  # the loop waits for items: the next sender must nudge it
        self._items_ready: anyio.Event | None = None
        self._drop_warnings = _Throttle(WARNING_INTERVAL)
        self._failure_warnings = _Throttle(WARNING_INTERVAL)
        self._thread = threading.Thread(
            target=self._run, name="localevents-events-worker", daemon=True
        )

    # -- choosing a worker ----------------------------------------------------------------

    @classmethod
    def instance(
        cls,
        client_type: type[EventsClient] | None = None,
        /,
        *,
        backend: Backend = "asyncio",
        **client_options: Any,
    ) -> EventsWorker:
        """The running worker for this client and destination, started on first use.

        The client is the override (:meth:`set_client_override`) if one is set, else
        ``client_type`` built with ``client_options``, else a :class:`WebSocketEventsClient`
        to the configured destination (a :class:`NullEventsClient` when nothing is
        configured). The destination is decided here, in the caller's thread: a worker
        started inside an ``ephemeral()`` block keeps writing to that block's database.
        """
        destination = _current_destination()
        chosen, options = cls._choose_client(client_type, client_options, destination)
        key: _Key = (chosen, options, destination, backend)
        with EventsWorker._lock:
            worker = EventsWorker._instances.get(key)
            if worker is None or worker._stopping:
                worker = cls(chosen, dict(options), destination=destination, backend=backend)
                EventsWorker._instances[key] = worker
                worker.start()
        return worker

    @classmethod
    def _choose_client(
        cls,
        client_type: type[EventsClient] | None,
        options: Mapping[str, Any],
        destination: Destination | None,
    ) -> tuple[type[EventsClient], _ClientOptions]:
        if EventsWorker._override is not None:
            return EventsWorker._override
        if client_type is not None:
            return client_type, _freeze(options)
        if destination is None:
            return NullEventsClient, ()
        return WebSocketEventsClient, ()

    @classmethod
    def set_client_override(
        cls, client_type: type[EventsClient] | None, **client_options: Any
    ) -> None:
        """Make :meth:`instance` use ``client_type(**client_options)`` (``None`` undoes it).

        Meant for tests; workers already running keep their client.
        """
        EventsWorker._override = (
            None if client_type is None else (client_type, _freeze(client_options))
        )

    @classmethod
    def client_override(cls) -> type[EventsClient] | None:
        """The client type set by :meth:`set_client_override`, if any."""
        override = EventsWorker._override
        return None if override is None else override[0]

    @classmethod
    @contextlib.contextmanager
    def overriding_client(
        cls, client_type: type[EventsClient], **client_options: Any
    ) -> Iterator[None]:
        """:meth:`set_client_override` for a ``with`` block; the previous override returns
        after it (workers started in the block keep running until drained)."""
        previous = EventsWorker._override
        EventsWorker._override = (client_type, _freeze(client_options))
        try:
            yield
        finally:
            EventsWorker._override = previous

    @classmethod
    def flush_all(cls, timeout: float | None = None) -> None:
        """:meth:`flush` every running worker of this process, within ``timeout`` seconds."""
        with EventsWorker._lock:
            workers = [w for w in EventsWorker._running if w._pid == os.getpid()]
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            worker.flush(left)

    @classmethod
    def drain_database(cls, database: str, timeout: float | None = None) -> bool:
        """Drain the running workers of this process that write to the in-process store on
        ``database`` (see :meth:`drain`): leaving an ``ephemeral()`` block delivers what
        was emitted inside it and lets the file close. True if all finished in time."""
        with EventsWorker._lock:
            workers = [
                worker
                for worker in EventsWorker._running
                if worker._pid == os.getpid()
                and worker.destination is not None
                and worker.destination.database == database
            ]
        return cls._drain_together(workers, timeout)

    @classmethod
    def drain_all(cls, timeout: float | None = None) -> bool:
        """Drain every running worker (see :meth:`drain`); True if all finished in time."""
        with EventsWorker._lock:
            workers = list(EventsWorker._running)
            EventsWorker._instances.clear()
        return cls._drain_together(workers, timeout)

    @staticmethod
    def _drain_together(workers: list[EventsWorker], timeout: float | None) -> bool:
        """Ask every worker to stop at once (they deliver side by side), then wait for each
        within one shared ``timeout``; True if all finished in time."""
        for worker in workers:
            worker._request_stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = True
        for worker in workers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = worker.drain(left) and finished
        return finished

    # -- the caller's side ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Started and not asked to stop."""
        return self._started and not self._stopping

    def start(self) -> Self:
        """Start the thread (once)."""
        with self._state:
            if self._started:
                raise RuntimeError("this EventsWorker was already started")
            self._started = True
        with EventsWorker._lock:
            EventsWorker._running.add(self)
        try:
            _load_event_loop(self.backend)
            self._nudges = _nudge_pair()
            self._thread.start()
        except BaseException:  # e.g. no new threads while the interpreter shuts down
            self._finish()
            raise
        return self

    def send(self, event: Event) -> bool:
        """Queue ``event``; False (logged and counted) when the queue is full. Never blocks."""
        self._check_process()
        with self._state:
            if not self._started or self._stopping:
                raise RuntimeError(
                    "this EventsWorker is not running; use EventsWorker.instance() for one that is"
                )
            queued = self._queued < self.max_queue_size
            nudge, held_back = False, None
            if queued:
                self._items.append(event)
                self._queued += 1
                nudge, self._waiting = self._waiting, False
            else:
                self._dropped += 1
                WORKER_EVENTS_DROPPED.labels(self.client_type.__name__).inc()
                held_back = self._drop_warnings.allow()
        if nudge:
            self._nudge()
        if held_back is not None:
            logger.warning(
                "The events worker's queue is full (%d events); dropped event %s (%s) and %d "
                "more since the last warning. Raise LOCALEVENTS_EVENTS_WORKER_MAX_QUEUE_SIZE "
                "or check that the events store is reachable.",
                self.max_queue_size,
                event.id,
                event.event,
                held_back,
            )
        return queued

    def flush(self, timeout: float | None = None) -> None:
        """Block until the client has confirmed every event queued before this call (for the
        websocket client: a checkpoint, so the events are stored and queryable).

        Raises :class:`TimeoutError` after ``timeout`` seconds, and
        :class:`~localevents.ServiceUnavailable` when the client could not confirm, or
        :class:`~localevents.AuthenticationError` / :class:`~localevents.ConfigurationError`
        when it never will as configured (a refused key, a URL that cannot work). From
        async code, call it in a thread: ``await anyio.to_thread.run_sync(worker.flush)``.
        """
        self._check_process()
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError("flush() cannot be called from the worker's own thread")
        marker = _Flush()
        with self._state:
            if not self._started or self._stopped:
                return
            self._items.append(marker)
            self._waiting = False
        self._nudge()  # always: a loop waiting to open its client again tries at once
        if not marker.done.wait(timeout):
            raise TimeoutError(
                f"the events worker did not confirm its events within {timeout} s "
                f"({_pending(*self._pending_counts())})"
            )
        if marker.error is not None:
            message = f"the events worker could not confirm its events: {describe(marker.error)}"
            for lasting in _LASTING_ERRORS:  # retrying will not help: say so by the class
                if isinstance(marker.error, lasting):
                    raise lasting(message) from marker.error
            raise ServiceUnavailable(message) from marker.error

    def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting events, deliver and confirm every queued one, close the client and
        end the thread. True if that finished within ``timeout`` seconds; otherwise the loop
        is cancelled, and a warning says how many events were not delivered."""
        if self._pid != os.getpid():  # the parent's worker: nothing of it runs here
            return True
        self._request_stop()
        if self._thread.ident is None:  # never started
            return True
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError("drain() cannot be called from the worker's own thread")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        _, undelivered = self._undelivered()
        self._cancelling = True
        self._nudge()
        self._thread.join(CANCEL_GRACE)
        logger.warning(
            "The events worker did not finish within %.3g s; %s",
            timeout,
            undelivered,
        )
        return False

    def statistics(self) -> EventsWorkerStatistics:
        """Counts of queued, sent, dropped and failed events."""
        return EventsWorkerStatistics(
            queued=self._queued,
            sent=self._sent,
            dropped=self._dropped,
            failed=self._failed,
            max_queue_size=self.max_queue_size,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.drain()

    def _undelivered(self) -> tuple[int, str]:
        """How many events are not delivered, and that said in words: those queued and
        those the client holds unconfirmed (a WebSocket client's, sent before the server
        went away)."""
        queued, unconfirmed = self._pending_counts()
        total = queued + unconfirmed
        return total, f"{total} events were not delivered ({_pending(queued, unconfirmed)})"

    def _pending_counts(self) -> tuple[int, int]:
        """The events queued, and those the client holds unconfirmed."""
        return self._queued, 0 if self.client is None else self.client.unconfirmed_count

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            raise RuntimeError(
                "this EventsWorker belongs to the parent process; after fork() use "
                "EventsWorker.instance() (or emit_event) for a worker of this process"
            )

    def _request_stop(self) -> None:
        with self._state:
            if self._stopping:
                return
            self._stopping = True
        with EventsWorker._lock:
            for key, worker in list(EventsWorker._instances.items()):
                if worker is self:
                    del EventsWorker._instances[key]
        self._nudge()

    def _nudge(self) -> None:
        """Wake the loop's watcher from any thread (never blocks: if the socket buffer is
        full, the loop has unread nudges anyway; once the loop has ended, nothing listens)."""
        if self._nudges is not None:
            with contextlib.suppress(OSError):
                self._nudges[1].send(b"\0")

    # -- the worker's side -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            anyio.run(self._main, backend=self.backend)
        except BaseException as exc:  # a thread's error would otherwise vanish
            logger.error("The events worker stopped on an error: %s", describe(exc), exc_info=exc)
        finally:
            self._finish()

    async def _main(self) -> None:
        self._items_ready = anyio.Event()
        with anyio.CancelScope() as everything:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch, everything)
                await self._serve()
                group.cancel_scope.cancel()  # the watcher's work is done

    async def _watch(self, everything: anyio.CancelScope) -> None:
        """Turn other threads' nudges into this loop's events: items ready (or a stop, or a
        flush), cancel."""
        assert self._nudges is not None
        reader = self._nudges[0]
        while True:
            if self._cancelling:
                everything.cancel()
            assert self._items_ready is not None
            self._items_ready.set()
            await anyio.wait_readable(reader)
            with contextlib.suppress(BlockingIOError):
                while reader.recv(4096):
                    pass

    async def _serve(self) -> None:
        client = self.client = self._build_client()
        while True:
            try:
                async with client:
                    await self._process(client)
                    await self._confirm_before_stopping(client)
                return
            except _NotConfirmed:
                return  # _finish says what is lost, and why
            except Exception as exc:
                if self._stopping and await self._waited_for_the_file(exc):
                    continue
                if self._stopping:
                    self._stop_reason = exc  # _finish says what is lost, and why
                    self._fail_flushes(exc)
                    return
                logger.warning(
                    "The events worker could not open its %s (%d events waiting); trying again "
                    "in %s s. Reason: %s",
                    client.client_name,
                    self._queued,
                    RECONNECT_DELAY,
                    describe(exc),
                )
                self._fail_flushes(exc)
                await self._wait_before_opening_again()
            finally:
                self._count_refused(client)

    async def _waited_for_the_file(self, error: Exception) -> bool:
        """When stopping: if ``error`` says that another process holds the events file, wait a
        moment and say True (try again), for at most :data:`HELD_FILE_PATIENCE` seconds from
        the first such failure; a warning says what is waited for. False otherwise, and when
        the holder is this process's parent, which may well be waiting for it to end."""
        if not isinstance(error, DatabaseInUseError) or error.pid == os.getppid():
            return False  # the parent (or, after a fork, its registry) waits for this one
        self._stop_reason = error  # what _finish reports, if the wait is cut short
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
            logger.warning(
                "The events worker is waiting up to %.3g s to deliver %s: %s",
                HELD_FILE_PATIENCE,
                _pending(*self._pending_counts()),
                describe(error),
            )
        if now - self._held_since >= HELD_FILE_PATIENCE:
            return False
        await anyio.sleep(HELD_FILE_RETRY)
        return True

    async def _wait_before_opening_again(self) -> None:
        """Wait :data:`RECONNECT_DELAY` seconds, or until a stop is requested or a flush()
        waits (its answer comes from a fresh attempt, which fails fast if the server is
        still unreachable)."""
        with anyio.move_on_after(RECONNECT_DELAY):
            while not self._stopping and not self._flush_waiting():
                ready = self._items_ready = anyio.Event()
                await ready.wait()

    def _flush_waiting(self) -> bool:
        with self._state:
            return any(isinstance(item, _Flush) for item in self._items)

    async def _confirm_before_stopping(self, client: EventsClient) -> None:
        """Confirm what the client holds before it closes; if that fails, leave its block
        with :class:`_NotConfirmed`, so the client does not try again as it closes."""
        try:
            await client.flush()
        except Exception as exc:
            self._stop_reason = exc
            raise _NotConfirmed from exc

    def _count_refused(self, client: EventsClient) -> None:
        """Count the events the server refused since the last call as failed, not sent."""
        refused, self._refused = client.refused - self._refused, client.refused
        self._sent -= refused
        self._failed += refused

    def _build_client(self) -> EventsClient:
        options = dict(self.client_options)
        if (
            issubclass(self.client_type, WebSocketEventsClient)
            and self.destination is not None
            and not options.keys() & {"api_url", "connection"}
        ):
            options["connection"] = connect(self.destination)  # this thread's in-process app
        return self.client_type(**options)

    async def _process(self, client: EventsClient) -> None:
        while (item := await self._next_item()) is not None:
            if isinstance(item, _Flush):
                await self._flush_client(client, item)
            else:
                await self._emit(client, item)
            self._count_refused(client)

    async def _next_item(self) -> Event | _Flush | None:
        """The oldest queued item; None once a stop is requested and the queue is empty."""
        while True:
            with self._state:
                if self._items:
                    item = self._items.popleft()
                    if not isinstance(item, _Flush):
                        self._queued -= 1
                    return item
                if self._stopping:
                    return None
                self._waiting = True
                ready = self._items_ready = anyio.Event()
            await ready.wait()

    async def _emit(self, client: EventsClient, event: Event) -> None:
        try:
            await client.emit(event)
        except Exception as exc:
            self._failed += 1
            if self._stopping and is_unreachable(exc):
                # Each emit would wait out the reconnect budget again (about 8 s): at exit,
                # a few queued events would outlast the drain's time. _finish counts them.
                self._stop_reason = exc
                raise _NotConfirmed from exc
            held_back = self._failure_warnings.allow()
            if held_back is not None:
                logger.warning(
                    "The events worker could not emit event %s (%s), nor %d more since the "
                    "last warning. Reason: %s",
                    event.id,
                    event.event,
                    held_back,
                    describe(exc),
                )
        else:
            self._sent += 1

    async def _flush_client(self, client: EventsClient, marker: _Flush) -> None:
        try:
            await client.flush()
        except Exception as exc:
            marker.finish(exc)
        else:
            marker.finish()

    def _fail_flushes(self, error: BaseException) -> None:
        """Answer every waiting flush() with ``error`` (the events stay queued)."""
        with self._state:
            markers = [item for item in self._items if isinstance(item, _Flush)]
            for marker in markers:
                self._items.remove(marker)
        for marker in markers:
            marker.finish(error)

    def _finish(self) -> None:
        """The thread is ending: refuse new events, report and forget what is left."""
        with self._state:
            self._stopping = self._stopped = True
            left, self._items = list(self._items), collections.deque()
            lost, undelivered = self._undelivered()
            self._queued = 0
            nudges, self._nudges = self._nudges, None
        for end in nudges or ():
            end.close()
        with EventsWorker._lock:
            EventsWorker._running.discard(self)
        if lost:
            reason = self._stop_reason
            logger.error(
                "The events worker stopped: %s%s",
                undelivered,
                "" if reason is None else f". Reason: {describe(reason)}",
            )
        for item in left:
            if isinstance(item, _Flush):
                item.finish(RuntimeError("the events worker stopped"))


def _before_fork() -> None:
    EventsWorker._lock.acquire()


def _after_fork_in_parent() -> None:
    EventsWorker._lock.release()


def _after_fork_in_child() -> None:
    # The parent's threads do not exist here: forget its workers, and the lock it held.
    for worker in EventsWorker._running:
        for end in worker._nudges or ():
            end.close()  # this process's copy only
    EventsWorker._lock = threading.RLock()
    EventsWorker._instances = {}
    EventsWorker._running = set()


_exit_drained = threading.Event()


def exit_drain_done() -> bool:
    """Whether the interpreter is exiting and its drain of the workers has run: an event
    queued now would stay in its worker (see the module docstring)."""
    return _exit_drained.is_set()


def _drain_all_at_exit() -> None:
    """Deliver what was emitted before the interpreter exits, including by the threads
    Python joins at exit (plain threads, thread pool tasks), which may still be emitting:
    a thread that Python waits for too drains every worker once the others have ended."""
    try:
        threading.Thread(target=_drain_after_the_other_threads, name=_EXIT_DRAIN).start()
    except RuntimeError:  # too late to start threads (a plain atexit handler): drain now
        _drain_for_exit()


def _drain_after_the_other_threads() -> None:
    _join_the_other_threads()
    _drain_for_exit()


def _drain_for_exit() -> None:
    try:
        EventsWorker.drain_all(timeout=DRAIN_TIMEOUT_AT_EXIT)
    finally:
        _exit_drained.set()


def _join_the_other_threads() -> None:
    """Wait for every non-daemon thread but this one and the main thread (which is exiting)
    to end, including those started meanwhile: as long as Python itself would wait."""
    this, main = threading.current_thread(), threading.main_thread()
    while True:
        others = [
            thread
            for thread in threading.enumerate()
            if thread is not this and thread is not main and not thread.daemon
        ]
        if not others:
            return
        for thread in others:
            thread.join()


_EXIT_DRAIN = "localevents-exit-drain"


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _register_exit_drain() -> None:
    # Run before Python joins threads, not as a plain atexit handler: since Python 3.12 an
    # atexit handler cannot start threads, and draining may start some (anyio's helper
    # threads for DuckDB calls and name lookups), so a plain handler could lose events there.
    # Python joins the threads started by these hooks as well: the drain's among them.
    register: Callable[[Callable[[], None]], object] = getattr(
        threading, "_register_atexit", atexit.register
    )
    with contextlib.suppress(RuntimeError):  # imported while the interpreter shuts down
        register(_drain_all_at_exit)


_register_exit_drain()


def _pending(queued: int, unconfirmed: int) -> str:
    """The events a worker has not delivered, in words: queued, and sent but not confirmed
    (a WebSocket client's, sent before the server went away)."""
    return f"{queued} queued" + (f", {unconfirmed} sent but not confirmed" if unconfirmed else "")
