"""The subscriber: stored then live events matching a filter, from ``<api>/events/out``
(SPEC B §5.4 with D7, D8, D15).

Each connection asks for the events since one minute before the first connect, and, from
a localevents server, for them in the order the store took them (``"after": "start"``);
each event then comes with its ``position`` in that order. A reconnect asks for the same
window ``"after"`` the position of the last event delivered, so a lost connection, a server
restart or a "fell behind" close (1013) loses nothing within the server's backfill limit
(15 minutes by default), however the events' ``occurred`` times are ordered. Ids are still
kept (see :class:`SeenIds`) until no replay can bring their events back, for a server that
cannot resume from a position (another file's).

A later subscriber can go on where an earlier one stopped: ``after=`` the earlier one's
:attr:`EventSubscriber.position` (saved with whatever the consumer did with its events).
Its first connection asks for the filter's own window (which the server limits to its
backfill) after that position.

A server that gives no positions (Prefect's) gets Prefect's way: the window moves to one
minute before the latest event seen (an event stamped in the future counts as occurring
now, or one such event would push the window past every ordinary event), the server sends
that window again and the ids already delivered are dropped; an event stored late with an
older ``occurred`` can then be missed.

A connection counts as working once it delivers an event or has stayed open for
:data:`HEALTHY_CONNECTION` seconds; only then does the count of consecutive failures start
again. A server that accepts each connection and closes it at once (say, its backfill query
fails) thus spends the reconnect budget instead of being retried for ever.

A consumer may wrap its wait for the next event in ``fail_after``. A timeout that fires while
the subscriber reconnects leaves it without a connection (a half-made one is closed), and the
next wait reconnects; the count of consecutive failures goes on across such waits, so the
consumer's timeouts do not renew the reconnect budget.

Frames are read by a task of the subscriber's own task group (see ``_websocket``) into a
small buffer; a consumer slower than the stream fills it, the server's queue for this
subscriber overflows, and the server says so with 1013.
"""

from __future__ import annotations

import collections
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NoReturn, Self

import anyio
import msgspec
from httpx_ws import WebSocketDisconnect

from localevents._exceptions import ConfigurationError, InvalidEventError, InvalidRequestError
from localevents._metrics import EVENTS_OBSERVED, count_connection
from localevents._settings import get_settings
from localevents.client._connection import resolve_connection
from localevents.client._websocket import (
    Reconnects,
    SocketOpener,
    describe,
    is_clean_close,
    is_retryable,
    is_unreachable,
    socket_url,
)
from localevents.events._filters import EventFilter, EventOccurredFilter
from localevents.events._schemas import ReceivedEvent, reading_stored_events
from localevents.events._time import ago, now_utc

if TYPE_CHECKING:
    import uuid
    from types import TracebackType

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from localevents._settings import ServerType
    from localevents.client._connection import Connection
    from localevents.client._websocket import Socket

__all__ = ("CONNECTION_RECORD", "EventSubscriber", "get_events_subscriber")

logger = logging.getLogger("localevents.client")

SEEN_CACHE_SIZE = 500_000
"""Most event ids remembered at once, to drop the events a reconnect's backfill repeats."""
REPLAY_MARGIN = timedelta(minutes=1)
CONNECTION_RECORD = "localevents_connection"
"""The attribute of the log records that say a subscriber lost its connection (``"lost"``,
with ``reason``) or has it back (``"back"``), for a program that tells its user."""
HEALTHY_CONNECTION = 30.0
"""Seconds after which a connection that delivered nothing still counts as having worked."""
BUFFERED_EVENTS = 64
"""Events read ahead of the consumer; beyond, the socket is left unread (backpressure)."""

_PATH = "events/out"
_REFUSED_REQUEST = frozenset({1002, 1003, 1007, 1008})
"""Protocol error, unsupported data, invalid payload, policy violation: what the server says
of a subscription it cannot serve (a bad filter or ``after``, a backfill past its query time
limit); asking again would be refused again. A refused key is a 1008 as well, but during the
handshake, which raises :class:`~localevents.AuthenticationError` before this is reached."""
_START = "start"  # "after" for no position yet: the whole window, in the store's order


class _Envelope(msgspec.Struct):
    type: str
    event: ReceivedEvent | None = None
    position: str | None = None


_Positioned = tuple[ReceivedEvent, str | None]
"""An event, and its position in the server's order if the server gives it."""
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_encode = msgspec.json.Encoder().encode


class EventSubscriber:
    """Stored, then live events matching ``filter``, as an async iterator::

        subscriber = EventSubscriber(filter=EventFilter(event=EventNameFilter(prefix=["acme."])))
        async with subscriber:
            async for event in subscriber:
                ...

    ``api_url`` and ``api_key`` default to the settings; with neither, events come from the
    in-process store (ephemeral mode). ``filter`` is copied, never changed; its
    ``occurred.since`` is replaced by the replay window (see the module docstring) and an
    unset ``occurred.until`` means "no end" (SPEC D7).

    Lost connections, abnormal closes, timeouts and 1013 are followed by a reconnect; more
    than ``reconnection_attempts`` consecutive failures re-raise the last one, and every
    connection that works (delivers an event, or stays open :data:`HEALTHY_CONNECTION`
    seconds) starts the count again. A clean close (1000/1001) ends the
    iteration, unless ``reconnect_on_clean_close``. A refused key raises
    :class:`~localevents.AuthenticationError`, a refused subscription (a bad filter or
    ``after``) :class:`~localevents.InvalidRequestError` with the server's reason, neither
    retried; nothing listening at the URL before any connection has worked raises
    :class:`~localevents.ServerUnreachable` at once. ``reconnects`` counts the connections
    opened after the first. ``after`` (an earlier subscriber's :attr:`position`) starts right after
    that event, within the server's backfill limit.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        api_key: str | None = None,
        filter: EventFilter | None = None,
        reconnection_attempts: int = 10,
        reconnect_on_clean_close: bool = False,
        after: str | None = None,
        connection: Connection | None = None,
    ) -> None:
        if reconnection_attempts < 0:
            raise ConfigurationError("reconnection_attempts must be a non-negative integer")
        self.connection = connection or resolve_connection(api_url=api_url, api_key=api_key)
        self.filter = msgspec.structs.replace(filter) if filter is not None else EventFilter()
        self.reconnection_attempts = reconnection_attempts
        self.reconnect_on_clean_close = reconnect_on_clean_close
        self.reconnects = 0
        self._observed_metric = EVENTS_OBSERVED.labels(type(self).__name__)
        self._backfill_since: datetime | None = None
        self._first_since: datetime | None = None
        self._position: str | None = None  # of the last event, if the server gives them
        self._resume_after = after  # until the first event: where an earlier run stopped
        self._ended = False
        self._delivered = False  # whether the current connection has given us an event
        self._connected_at = 0.0  # when it opened (anyio's clock)
        self._seen = SeenIds(SEEN_CACHE_SIZE)
        self._opener: SocketOpener | None = None
        self._socket: Socket | None = None
        self._events: MemoryObjectReceiveStream[_Positioned] | None = None
        self._connections = 0
        # Consecutive failures, counted across waits a timeout cut short (see __anext__).
        self._failures = Reconnects(reconnection_attempts)
        self._clean_closes = Reconnects(reconnection_attempts)

    @property
    def position(self) -> str | None:
        """Where this subscriber stands in the server's order of events: the position of
        the last event it returned, to pass as ``after`` to a later subscriber that should
        go on from there (the ``after`` given to this one until it returns an event).
        ``None`` when the server gives no positions (Prefect's)."""
        return self._position if self._position is not None else self._resume_after

    @property
    def server_type(self) -> ServerType:
        """Whether events come from the in-process store or from a server."""
        return self.connection.server_type

    @property
    def url(self) -> str:
        """The WebSocket URL events are read from."""
        return socket_url(self.connection.api_url, _PATH)

    async def __aenter__(self) -> Self:
        if self._opener is not None:
            raise RuntimeError("this subscriber is already open")
        self._opener = opener = SocketOpener(self.connection, _PATH)
        try:
            await opener.__aenter__()  # e.g. DatabaseInUseError, in ephemeral mode
        except BaseException:
            self._opener = None  # nothing is open: the subscriber may be entered again
            raise
        self._failures.succeeded()  # a block starts with the whole budget
        self._clean_closes.succeeded()
        try:
            await self._connect_with_retries(Reconnects(self.reconnection_attempts))
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._disconnect()
        if self._opener is not None:  # outside the shield: it holds a task group
            opener, self._opener = self._opener, None
            await opener.__aexit__(exc_type, exc, traceback)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReceivedEvent:
        if self._ended:
            raise StopAsyncIteration
        if self._opener is None:
            raise RuntimeError("use the subscriber inside 'async with' to iterate over it")
        while True:
            if self._socket is None:
                # The last wait ended between a failure and the reconnect (a consumer's
                # timeout fired, or the failure was raised): reconnect on the same budget.
                await self._connect_with_retries(self._failures)
            try:
                event, at = await self._next_event()
            except Exception as exc:
                clean = is_clean_close(exc)
                await self._after_failure(exc, self._clean_closes if clean else self._failures)
                continue
            self._delivered = True
            self._failures.succeeded()  # this connection works: the counts start again
            self._clean_closes.succeeded()
            self._resume_after = None  # the server's own positions, or none, from now on
            if event.id in self._seen:
                continue
            self._seen.add(event.id, event.occurred)
            if at is None:
                self._advance_window(event)
            else:
                self._position = at
                self._seen.forget_before(self._replay_start())
            self._observed_metric.inc()
            return event

    async def _after_failure(self, error: Exception, reconnects: Reconnects) -> None:
        """Close the failed connection; end, re-raise, or wait before the next one."""
        await self._disconnect()
        if is_clean_close(error) and not self.reconnect_on_clean_close:
            self._ended = True
            raise StopAsyncIteration from None
        if not is_retryable(error):
            self._give_up(error)
        self._log_lost("Reconnecting to", error)
        if anyio.current_time() - self._connected_at >= HEALTHY_CONNECTION:
            reconnects.succeeded()  # it worked: this failure is the first again
        # A connection that gave nothing before failing may fail the same way at once:
        # never reconnect in a tight loop.
        await reconnects.after_failure(error, pace=not self._delivered)

    async def _next_event(self) -> _Positioned:
        socket, events = self._socket, self._events
        if socket is None or events is None:
            raise RuntimeError("the subscriber is closed")
        try:
            return await events.receive()
        except anyio.EndOfStream:
            await socket.closed.wait()
            raise socket.failure() from None

    def _replay_start(self) -> datetime:
        """Where a server that gives positions starts a replay at the latest: the first
        window's start, or the backfill limit if later. A resume after a position repeats
        nothing, but one that the server cannot honour (the position is another file's,
        say) repeats the window, so the ids of its events are kept."""
        assert self._first_since is not None
        limit = ago(get_settings().events_maximum_websocket_backfill)
        return max(self._first_since, limit)

    def _advance_window(self, event: ReceivedEvent) -> None:
        assert self._backfill_since is not None
        occurred = min(event.occurred, now_utc())  # a clock ahead must not skip the present
        self._backfill_since = max(self._backfill_since, occurred - REPLAY_MARGIN)
        self._seen.forget_before(self._backfill_since)

    def _log_lost(self, what: str, error: BaseException) -> None:
        """Log (debug) that the connection failed, as a :data:`CONNECTION_RECORD` "lost"."""
        reason = describe(error)
        logger.debug(
            "%s %r: %s", what, self.url, reason, extra={CONNECTION_RECORD: "lost", "reason": reason}
        )

    async def _connect_with_retries(self, reconnects: Reconnects) -> None:
        while True:
            try:
                await self._connect()
            except Exception as exc:
                if not self._connections and is_unreachable(exc):
                    raise  # no connection has worked yet: most likely a wrong URL (as over HTTP)
                if not is_retryable(exc):
                    self._give_up(exc)
                if reconnects.failures == 0 and not self._connections:  # the first ever
                    self._log_lost("Could not connect to", exc)
                if reconnects.failures >= reconnects.attempts:
                    logger.warning(
                        "Unable to connect to %r after %d attempts. Reason: %s",
                        self.url,
                        reconnects.failures + 1,
                        describe(exc),
                    )
                await reconnects.after_failure(exc)
            else:
                return  # it counts as working once it delivers, or lasts (see _after_failure)

    def _give_up(self, error: Exception) -> NoReturn:
        """Raise ``error``, which no reconnect can cure; a subscription the server refused
        (a close 1002, 1003, 1007 or 1008: its filter or ``after``, say) as an
        :class:`~localevents.InvalidRequestError` carrying the server's reason."""
        if isinstance(error, WebSocketDisconnect) and error.code in _REFUSED_REQUEST:
            reason = error.reason or f"closed with code {error.code}"
            message = f"the server refused the subscription at {self.url}: {reason}"
            raise InvalidRequestError(message) from error
        raise error

    async def _connect(self) -> None:
        """Open a connection and subscribe; a failure, or a cancellation (a consumer's
        timeout), leaves nothing half-made: the next connect starts afresh."""
        if self._opener is None:
            raise RuntimeError("the subscriber is closed")
        if self._backfill_since is None:
            # Resuming, the window is the filter's own, which the server limits to its
            # backfill: the events it holds that the earlier run had not got.
            # Otherwise the minute before now, or the filter's own since if that is later
            # (the events before it are no more wanted live than stored).
            resuming = self._resume_after is not None
            own = self.filter.occurred.since
            since = own if resuming else now_utc() - REPLAY_MARGIN
            if own.tzinfo is not None and own > since:
                since = own
            self._backfill_since = self._first_since = since
        try:
            socket = await self._open(self._opener)
            self._count_connection()
            await socket.send_text(self._subscribe_message())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._disconnect()
            raise

    async def _open(self, opener: SocketOpener) -> Socket:
        """A new connection, whose events its reader buffers in :attr:`_events`."""
        sender, receiver = anyio.create_memory_object_stream[_Positioned](BUFFERED_EVENTS)
        self._events = receiver

        async def read(socket: Socket) -> None:
            await self._read(socket, sender)

        try:
            self._socket = socket = await opener.open(read)
        except BaseException:
            sender.close()  # the reader that owns it never started
            raise
        return socket

    def _count_connection(self) -> None:
        count_connection(type(self).__name__, "out", reconnect=self._connections > 0)
        if self._connections:
            self.reconnects += 1
            logger.info("Reconnected to %r", self.url, extra={CONNECTION_RECORD: "back"})
        self._connections += 1
        self._delivered = False
        self._connected_at = anyio.current_time()

    def _subscribe_message(self) -> str:
        after = self.position
        since = self._backfill_since if after is None else self._first_since
        assert since is not None
        occurred = EventOccurredFilter(since=since, until=self.filter.occurred.until)
        window = msgspec.structs.replace(self.filter, occurred=occurred)
        # Events in the store's order, with positions, from the first connection on (a
        # server that gives no positions ignores the key).
        request = {"type": "filter", "filter": window, "after": _START if after is None else after}
        return _encode(request).decode()

    async def _read(self, socket: Socket, events: MemoryObjectSendStream[_Positioned]) -> None:
        """Decode every event frame into ``events`` until the socket closes (and say why)."""
        async with events:
            while True:
                text = await socket.session.receive_text()
                positioned = _decode_event(text)
                if positioned is not None:
                    await events.send(positioned)

    async def _disconnect(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.aclose()
        if self._events is not None:
            self._events.close()
            self._events = None


class SeenIds:
    """The ids of the events delivered, each kept while a reconnect could deliver its event
    again: until the replay window starts after its ``occurred``. At most ``capacity`` are
    kept (the oldest go first), which bounds the memory of a subscriber to a busy stream.

    Events arrive about in ``occurred`` order, so the ids are dropped from the oldest
    delivered on, up to the first whose event is still inside the window.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._occurred: collections.OrderedDict[uuid.UUID, datetime] = collections.OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._occurred

    def __len__(self) -> int:
        return len(self._occurred)

    def add(self, event_id: uuid.UUID, occurred: datetime) -> None:
        """Remember a delivered event's id."""
        self._occurred[event_id] = occurred
        if len(self._occurred) > self._capacity:
            self._occurred.popitem(last=False)

    def forget_before(self, since: datetime) -> None:
        """Forget the ids, oldest delivered first, of events that occurred before ``since``."""
        kept = self._occurred
        while kept:
            oldest = next(iter(kept))
            if kept[oldest] >= since:
                return
            del kept[oldest]


def _decode_event(text: str) -> _Positioned | None:
    try:
        with reading_stored_events():  # the server's limits applied to it, not ours
            envelope = _envelope_decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidEventError(f"the server sent an unreadable event: {exc}") from exc
    if envelope.type != "event" or envelope.event is None:
        logger.debug("ignoring a %r message from the server", envelope.type)
        return None
    return envelope.event, envelope.position


def get_events_subscriber(
    filter: EventFilter | None = None,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    reconnection_attempts: int = 10,
    reconnect_on_clean_close: bool = False,
    after: str | None = None,
) -> EventSubscriber:
    """The subscriber for the configured source (see :class:`~localevents.ServerType`): a
    server's ``/events/out``, or the in-process store in ephemeral mode."""
    return EventSubscriber(
        api_url,
        api_key=api_key,
        filter=filter,
        reconnection_attempts=reconnection_attempts,
        reconnect_on_clean_close=reconnect_on_clean_close,
        after=after,
    )
