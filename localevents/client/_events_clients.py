"""Events clients: what emits events, as async context managers (SPEC B §5.1-5.3, D3, D15).

:class:`WebSocketEventsClient` streams events to ``<api>/events/in``, one text frame each.
The server sends nothing back, so delivery is confirmed by *checkpoints*: a ping whose pong
says the server has handled every frame sent before it. Until confirmed, every event is kept
and, after a reconnect, sent again in order; the server ignores ids it already has (D2), so
a resend never duplicates.

A checkpoint is only as strong as the server's pong: localevents answers a ping once every
earlier frame is stored, over the network and in-process. A plain uvicorn (Prefect's server)
answers on arrival, so there a crash can lose events that a pong had confirmed.
"""

from __future__ import annotations

import abc
import logging
import math
import uuid
from typing import TYPE_CHECKING, Self

import anyio
import msgspec

from localevents._exceptions import ConfigurationError, EventTooLarge, InvalidEventError
from localevents._metrics import CHECKPOINTS, EVENTS_EMITTED, count_connection
from localevents._settings import get_settings
from localevents.client._connection import resolve_connection
from localevents.client._websocket import (
    Reconnects,
    Socket,
    SocketOpener,
    describe,
    is_refused_frame,
    is_retryable,
    is_too_big,
    is_unreachable,
    poison_event_id,
    socket_url,
)
from localevents.events._schemas import Event

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from localevents._settings import ServerType
    from localevents.client._connection import Connection

__all__ = ("EventsClient", "NullEventsClient", "WebSocketEventsClient", "get_events_client")

logger = logging.getLogger("localevents.client")

_encode = msgspec.json.Encoder().encode
_event_decoder = msgspec.json.Decoder(Event)
_PATH = "events/in"


class EventsClient(abc.ABC):
    """Emits events; only inside ``async with client:``.

    ``emitted`` counts calls to :meth:`emit`, including those that failed; ``refused``
    counts the events whose :meth:`emit` returned but which the server refused afterwards
    (logged and dropped: they are not delivered).
    """

    def __init__(self) -> None:
        self.emitted = 0
        self.refused = 0
        self._emitted_metric = EVENTS_EMITTED.labels(self.client_name)
        self._in_context = False

    @property
    def client_name(self) -> str:
        """The class name (what metrics and logs call this client)."""
        return type(self).__name__

    @property
    def unconfirmed_count(self) -> int:
        """Events emitted and held until the server confirms them (none for a client that
        delivers as it emits)."""
        return 0

    async def emit(self, event: Event) -> None:
        """Emit ``event``; raises :class:`TypeError` outside ``async with``."""
        if not self._in_context:
            raise TypeError(
                "Events may only be emitted while this client is being used as a context manager"
            )
        try:
            await self._emit(event)
        finally:
            self.emitted += 1
            self._emitted_metric.inc()

    @abc.abstractmethod
    async def _emit(self, event: Event) -> None:
        """Deliver one event (called only inside the ``async with`` block)."""

    async def flush(self) -> None:
        """Return once every event emitted so far is delivered (clients that deliver as they
        emit have nothing to wait for); raises :class:`TypeError` outside ``async with``."""
        if not self._in_context:
            raise TypeError("Events may only be flushed while this client is open")

    async def __aenter__(self) -> Self:
        self._in_context = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._in_context = False


class NullEventsClient(EventsClient):
    """Drops every event (still only inside ``async with``)."""

    async def _emit(self, event: Event) -> None:
        pass


class _Pending(msgspec.Struct, gc=False):
    id: uuid.UUID
    frame: str
    emit_failed: bool = False  # its emit() raised: the caller knows it may not be delivered


class _Stream:
    """What one ``async with`` block of a :class:`WebSocketEventsClient` holds (made inside
    the event loop that uses it, so a client may be built anywhere)."""

    def __init__(self, opener: SocketOpener) -> None:
        self.opener = opener
        self.lock = anyio.Lock()  # one socket operation at a time, reconnects included
        self.periodic = anyio.CancelScope()
        self.socket: Socket | None = None


class WebSocketEventsClient(EventsClient):
    """Streams events to a server's ``/events/in`` WebSocket (or to the in-process store).

    ``api_url`` and ``api_key`` default to the settings (``LOCALEVENTS_API_URL``,
    ``LOCALEVENTS_API_KEY``); with neither, events go to the in-process store (ephemeral mode).
    The key, if any, goes in-band in the auth message and as ``Authorization: Bearer`` on the
    upgrade request.

    Entering connects (or raises, e.g. :class:`~localevents.AuthenticationError`). Every
    ``checkpoint_every`` events and every ``checkpoint_interval`` seconds a ping confirms
    delivery (see the module docstring). A lost connection is reopened, up to
    ``reconnection_attempts`` consecutive failures, and every unconfirmed event is sent again
    in order. An event the server refuses (close 1007 naming its id, SPEC D3) is logged and
    dropped, never resent; so is, after a close 1007 naming no event (its id could not be
    read), the first unconfirmed event that is not a valid event here, or else the oldest
    unconfirmed one; and, after a close 1009 (a frame over the WebSocket message limit
    of the server or of a proxy before it, which names no event), the largest unconfirmed
    event. ``refused`` counts them. Leaving the block without an error confirms everything
    sent, within the same reconnect budget, or logs a warning saying how many events stayed
    unconfirmed. Leaving it by an error or a cancellation sends nothing more: what went out
    on the connection is the server's to store (in-process too: the app takes all of it
    before the goodbye), and a warning counts the unconfirmed events if that connection
    failed. ``reconnects`` counts the connections opened after the first.

    Before any connection has worked, nothing listening at the URL raises
    :class:`~localevents.ServerUnreachable` at once (a wrong URL, most likely), as the HTTP
    client does; once one has, a refused connection is a restart worth waiting out. After
    the reconnect budget is spent on a server that cannot be reached, a checkpoint (a flush,
    the periodic one, the one when the block closes) tries once until a connection works.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        api_key: str | None = None,
        reconnection_attempts: int = 10,
        checkpoint_every: int = 700,
        checkpoint_interval: float = 30.0,
        connection: Connection | None = None,
    ) -> None:
        super().__init__()
        if reconnection_attempts < 0:
            raise ConfigurationError("reconnection_attempts must be a non-negative integer")
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise ConfigurationError("checkpoint_every and checkpoint_interval must be positive")
        self.connection = connection or resolve_connection(api_url=api_url, api_key=api_key)
        self.reconnection_attempts = reconnection_attempts
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.reconnects = 0
        self._stream: _Stream | None = None
        self._unconfirmed: list[_Pending] = []
        self._connections = 0
        self._unreachable = False  # the last delivery gave up: nothing listened at the URL
        self._dropped_last: _Pending | None = None  # the last refused event dropped
        self._connection_failed = False  # since the unconfirmed events were last sent

    @property
    def url(self) -> str:
        """The WebSocket URL events are streamed to."""
        return socket_url(self.connection.api_url, _PATH)

    @property
    def server_type(self) -> ServerType:
        """Whether events go to the in-process store or to a server."""
        return self.connection.server_type

    @property
    def unconfirmed_count(self) -> int:
        """Events emitted whose delivery no checkpoint has confirmed yet."""
        return len(self._unconfirmed)

    async def __aenter__(self) -> Self:
        if self._stream is not None:
            raise RuntimeError("this client is already open")
        self._stream = stream = _Stream(SocketOpener(self.connection, _PATH))
        try:
            await stream.opener.__aenter__()  # e.g. DatabaseInUseError, in ephemeral mode
        except BaseException:
            self._stream = None  # nothing is open: the client may be entered again
            raise
        try:
            async with stream.lock:
                await self._deliver(stream, self._nothing)
            stream.opener.start_soon(self._checkpoint_periodically)
        except BaseException:
            await self._close(stream)
            raise
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, traceback)
        stream = self._stream
        if stream is None:
            return
        stream.periodic.cancel()
        try:
            if exc is None:
                await self._confirm_all(stream)
            else:
                self._report_left_behind(stream, exc)
        finally:
            await self._close_leaving(stream, exc)

    async def _close_leaving(self, stream: _Stream, error: BaseException | None) -> None:
        try:
            await self._close(stream)
        except anyio.get_cancelled_exc_class():
            if error is None or anyio.current_effective_deadline() != -math.inf:
                raise  # not an enclosing scope's cancellation (asyncio's task.cancel, Ctrl-C)
            # The block's own error goes on. On trio, closing the task group inside a
            # cancelled scope raises the cancellation, which would replace that error and
            # then be absorbed by the scope: the error would vanish. The scope stays
            # cancelled, and delivers it again at the next wait.

    async def _close(self, stream: _Stream) -> None:
        stream.periodic.cancel()
        with anyio.CancelScope(shield=True):
            await self._disconnect(stream)
        self._stream = None
        await stream.opener.__aexit__(None, None, None)  # not shielded: it holds a task group

    async def _emit(self, event: Event) -> None:
        stream = self._stream
        assert stream is not None  # emit() checks that the block is open
        frame = _encode(event)
        maximum = get_settings().events_maximum_size_bytes
        if len(frame) > maximum:  # refused here: a frame too big for the server's socket
            raise EventTooLarge(len(frame), maximum)  # would be resent before every other
        pending = _Pending(event.id, frame.decode())
        async with stream.lock:
            self._unconfirmed.append(pending)
            try:
                await self._deliver(stream, lambda socket: self._send(socket, pending))
            except Exception:
                if any(held is pending for held in self._unconfirmed):
                    pending.emit_failed = True  # if refused later, not counted in ``refused``
                elif self._dropped_last is pending:  # refused, then this emit failed: the
                    self.refused -= 1  # caller learns of it from the error, as it does above
                raise

    async def flush(self) -> None:
        """Return once a checkpoint has confirmed every event emitted so far, reconnecting
        (and resending) within the reconnect budget, or with one attempt when the last
        delivery found the server unreachable; raises when that budget runs out."""
        await super().flush()
        stream = self._stream
        assert stream is not None
        async with stream.lock:
            await self._checkpoint_all(stream)

    async def _checkpoint_all(self, stream: _Stream) -> None:
        """Checkpoint until every event is confirmed, all within one reconnect budget: a
        reconnect that resends the events does not confirm them, so a server that accepts
        connections but cannot store them spends the budget instead of being retried for
        ever (with the lock held). A server found unreachable last time gets one attempt: a
        flush that failed, then the close, must not each wait out the whole budget."""
        reconnects = Reconnects(0 if self._unreachable else self.reconnection_attempts)
        while self._unconfirmed:
            await self._deliver(stream, self._checkpoint, reconnects)

    async def _send(self, socket: Socket, pending: _Pending) -> None:
        await socket.send_text(pending.frame)
        if len(self._unconfirmed) >= self.checkpoint_every:
            await self._checkpoint(socket)

    async def _deliver(
        self,
        stream: _Stream,
        action: Callable[[Socket], Awaitable[None]],
        reconnects: Reconnects | None = None,
    ) -> None:
        """Run ``action`` on the socket (with the lock held); after a connection failure,
        reconnect (which resends every unconfirmed event, and returns) within the reconnect
        budget: ``reconnects``, or a new one."""
        if reconnects is None:
            reconnects = Reconnects(self.reconnection_attempts)
        while True:
            socket = stream.socket
            connecting = socket is None
            try:
                if socket is None:
                    await self._reconnect(stream)  # sends every unconfirmed event: done
                else:
                    await action(socket)
                return
            except Exception as exc:
                self._connection_failed |= _failed_connection(socket)
                await self._disconnect(stream)
                if self._drop_refused_event(exc):
                    continue
                if not self._connections and is_unreachable(exc):
                    raise  # no connection has worked yet: most likely a wrong URL (as over HTTP)
                if not is_retryable(exc):
                    raise
                self._log_failure(exc, reconnects, connecting=connecting)
                if reconnects.failures >= reconnects.attempts:  # this one spends the budget
                    self._unreachable = is_unreachable(exc)
                await reconnects.after_failure(exc)
            except BaseException:  # cancelled mid-frame, maybe: never write on that socket again
                with anyio.CancelScope(shield=True):
                    await self._disconnect(stream)
                raise

    async def _reconnect(self, stream: _Stream) -> None:
        stream.socket = socket = await stream.opener.open(self._watch_for_close)
        count_connection(self.client_name, "in", reconnect=self._connections > 0)
        self._unreachable = False
        if self._connections:
            self.reconnects += 1
        self._connections += 1
        for pending in list(self._unconfirmed):
            await socket.send_text(pending.frame)
        self._connection_failed = False
        if len(self._unconfirmed) >= self.checkpoint_every:
            await self._checkpoint(socket)

    async def _disconnect(self, stream: _Stream) -> None:
        socket, stream.socket = stream.socket, None
        if socket is not None:
            await socket.aclose()

    async def _checkpoint(self, socket: Socket) -> None:
        """Ping; once the pong is back, the events sent before the ping are delivered."""
        sent = len(self._unconfirmed)
        await socket.ping()
        del self._unconfirmed[:sent]
        CHECKPOINTS.labels(self.client_name).inc()

    async def _nothing(self, socket: Socket) -> None:
        pass

    async def _checkpoint_periodically(self) -> None:
        stream = self._stream
        assert stream is not None
        with stream.periodic:
            while True:
                await anyio.sleep(self.checkpoint_interval)
                if not self._unconfirmed:
                    continue
                try:
                    async with stream.lock:
                        await self._checkpoint_all(stream)
                except Exception as exc:  # the next interval tries again
                    if stream.periodic.cancel_called:
                        return  # the block is closing: the lock came too late to matter
                    logger.warning(
                        "Could not confirm %d events sent to %r; trying again in %s s. Reason: %s",
                        len(self._unconfirmed),
                        self.url,
                        self.checkpoint_interval,
                        describe(exc),
                    )

    async def _confirm_all(self, stream: _Stream) -> None:
        """Checkpoint until every event is confirmed (once, unless reconnecting)."""
        try:
            async with stream.lock:
                await self._checkpoint_all(stream)
        except Exception as exc:
            logger.warning(
                "%d events sent to %r were not confirmed before the client closed. Reason: %s",
                len(self._unconfirmed),
                self.url,
                describe(exc),
            )

    def _report_left_behind(self, stream: _Stream, error: BaseException) -> None:
        """Leaving by ``error`` sends nothing more (see the class docstring): say how many
        unconfirmed events that leaves, with a warning if the connection they went out on
        failed (they may never have reached the server). One this client cut, cancelled
        mid-frame, has handed over every frame before (the server stores them)."""
        if not self._unconfirmed:
            return
        socket = stream.socket  # its reader, cancelled with the block, sets no error
        failed = self._connection_failed if socket is None else socket.error is not None
        how = "a cancellation" if isinstance(error, anyio.get_cancelled_exc_class()) else None
        if not failed:
            logger.debug(
                "%d events sent to %r were not confirmed before the block ended by %s; they "
                "went out on a connection that did not fail",
                len(self._unconfirmed),
                self.url,
                how or describe(error),
            )
            return
        logger.warning(
            "%d events emitted to %r were not confirmed, and the connection failed: the block "
            "ended by %s before they could be sent again, so some may not be stored",
            len(self._unconfirmed),
            self.url,
            how or describe(error),
        )

    def _drop_refused_event(self, error: BaseException) -> bool:
        """Drop the event a close 1007 names (SPEC D3), or, naming none, the one
        :meth:`_drop_unnamed_refusal` finds; after a close 1009 the largest unconfirmed one
        (the frame that broke the limit, unless a smaller one did and this one would break
        it next); ``False`` if ``error`` is neither."""
        if is_too_big(error) and self._unconfirmed:
            sizes = [len(pending.frame) for pending in self._unconfirmed]
            largest = self._drop(sizes.index(max(sizes)))
            logger.error(
                "Dropped event %s (%d characters of JSON): %s (the frame is over the "
                "WebSocket message limit of the server or of a proxy)",
                largest.id,
                len(largest.frame),
                describe(error),
            )
            return True
        if not is_refused_frame(error):
            return False
        refused = poison_event_id(error)
        if refused is None:
            return self._drop_unnamed_refusal(error)
        for index, pending in enumerate(self._unconfirmed):
            if pending.id == refused:
                self._drop(index)
                logger.error("Dropped event %s: %s", refused, describe(error))
                return True
        raise InvalidEventError(f"the server refused an event: {describe(error)}") from error

    def _drop_unnamed_refusal(self, error: BaseException) -> bool:
        """After a close 1007 naming no event (the server could not read its id), drop the
        first unconfirmed event that is not a valid event here, else the oldest one.

        The server takes frames in order and handles those before the one it refuses, so
        the oldest unconfirmed event is either handled already (a resend would be ignored)
        or the refused one: dropping it loses nothing, and each such close drops one event,
        so no frame is resent for ever."""
        if not self._unconfirmed:
            return False
        for index, pending in enumerate(self._unconfirmed):
            problem = _invalid_here(pending.frame)
            if problem is not None:
                self._drop(index)
                logger.error(
                    "Dropped event %s (not a valid event: %s): %s",
                    pending.id,
                    problem,
                    describe(error),
                )
                return True
        oldest = self._drop(0)
        logger.error(
            "Dropped event %s, the oldest of %d unconfirmed events: %s, naming no event, and "
            "all of them are valid here (the server handles frames in order, so the oldest "
            "was either refused or handled already)",
            oldest.id,
            len(self._unconfirmed) + 1,
            describe(error),
        )
        return True

    def _drop(self, index: int) -> _Pending:
        """Forget the unconfirmed event at ``index``, refused by the server, and count it
        (unless its emit raised: the caller knows that one already)."""
        pending = self._unconfirmed.pop(index)
        if not pending.emit_failed:
            self.refused += 1
        self._dropped_last = pending
        return pending

    async def _watch_for_close(self, socket: Socket) -> None:
        """The server sends nothing on ``/events/in``: read until it closes (to learn why)."""
        while True:
            await socket.session.receive()

    def _log_failure(
        self, error: BaseException, reconnects: Reconnects, *, connecting: bool
    ) -> None:
        if reconnects.failures >= reconnects.attempts and not (
            self._unreachable and is_unreachable(error)  # said when it was found unreachable
        ):
            # The last failure may come after connections that succeeded but could not
            # deliver (a server that accepts, then fails every checkpoint).
            what = "connect to" if connecting else "deliver events to"
            logger.warning(
                "Unable to %s %r after %d attempts. Reason: %s",
                what,
                self.url,
                reconnects.failures + 1,
                describe(error),
            )
        else:
            logger.debug("Reconnecting to %r: %s", self.url, describe(error))


def _failed_connection(socket: Socket | None) -> bool:
    """Whether a delivery that failed on ``socket`` (``None``: connecting) means the
    connection failed: not when this side had closed it (its reader, cancelled with the
    block, stopped without an error)."""
    return socket is None or socket.error is not None or not socket.closed.is_set()


def _invalid_here(frame: str) -> str | None:
    """Why ``frame`` is not a valid event by this process's rules, if it is not."""
    try:
        _event_decoder.decode(frame)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        return str(exc)
    return None


def get_events_client(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    reconnection_attempts: int = 10,
    checkpoint_every: int = 700,
    checkpoint_interval: float = 30.0,
) -> EventsClient:
    """The events client for the configured destination (see :class:`~localevents.ServerType`):
    a server's ``/events/in``, or the in-process store in ephemeral mode."""
    return WebSocketEventsClient(
        api_url,
        api_key=api_key,
        reconnection_attempts=reconnection_attempts,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
    )
