"""The events WebSockets, client side: connecting, the ``prefect`` handshake, and which
failures are worth a reconnect (shared by the producer and the subscriber, SPEC D15).

Ownership: ``httpx_ws.aconnect_ws`` holds a task group, so the task that enters it must exit
it. A :class:`SocketOpener` therefore holds each connection in a task of its own task group
(opened with the owner's ``async with``): the task connects, authenticates, hands a
:class:`Socket` to whoever asked (``task_status.started``), runs the owner's reader on it, and
leaves ``aconnect_ws`` when :meth:`Socket.aclose` asks it to. Any task of the owner may then
use the socket, reconnect (close, then open another) or wait for it to close.

Retried (SPEC D15): connection refused or reset and other network errors, timeouts, abnormal
or going-away closes, including 1013 ("try again later"), and HTTP 408/429/5xx answers to the
upgrade. Never retried: a refused key (:class:`~localevents.AuthenticationError`, close 1008,
HTTP 401/403), protocol errors (1002, 1003), refused data (1007, 1009) and anything else. (The
producer drops the event that refused data was, then goes on: see ``_events_clients``.) A
client whose first connect finds nothing listening (:func:`is_unreachable`) does not retry
either, as over HTTP: before any connection has worked, that most likely means a wrong URL.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import uuid
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import httpcore
import httpx
import msgspec
import wsproto.utilities
from httpx_ws import (
    AsyncWebSocketSession,
    WebSocketDisconnect,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    aconnect_ws,
)

from localevents._exceptions import AuthenticationError, HTTPStatusError, ServerUnreachable
from localevents._settings import get_settings
from localevents.client._connection import auth_headers
from localevents.client._http import error_for_response
from localevents.client._http_errors import server_explanation, unreachable_error
from localevents.client._lifespan import app_lifespan
from localevents.client._ws_transport import InProcessWebSocketTransport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus
    from httpcore import AsyncNetworkStream

    from localevents.client._connection import Connection

__all__ = (
    "CLEAN_CLOSE_CODES",
    "INVALID_FRAME",
    "Reconnects",
    "Socket",
    "SocketOpener",
    "describe",
    "is_clean_close",
    "is_refused_frame",
    "is_retryable",
    "is_too_big",
    "is_unreachable",
    "poison_event_id",
    "socket_url",
    "unwrap",
)

logger = logging.getLogger("localevents.client")
_T = TypeVar("_T")

SUBPROTOCOL = "prefect"
INVALID_FRAME = 1007
MESSAGE_TOO_BIG = 1009
CLEAN_CLOSE_CODES = frozenset({1000, 1001})
RETRYABLE_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014})
"""Normal, going away, no status, abnormal, server error, restart, try again later, bad gateway."""
RETRYABLE_UPGRADE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
    WebSocketNetworkError,
    TimeoutError,
    OSError,
)

HANDSHAKE_TIMEOUT = 30.0
"""Seconds to connect, exchange a ping and authenticate before the attempt counts as failed.
The upgrade request itself has httpx's default of 5 s per step (connecting, the answer), so
a server that accepts the connection and then says nothing fails it after 5 s."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closing socket may take to say goodbye before its connection is cut."""
WRITE_TIMEOUT = 30.0
"""Seconds one frame may take to go out; a server that reads nothing for longer (a hung
process: its kernel still holds the connection open) counts as gone."""
PONG_TIMEOUT = 20.0
"""Seconds a ping may wait for its pong (localevents answers once every frame before it is
stored); a server that takes longer counts as gone, as for httpx-ws's keepalive pings."""
RECONNECT_DELAY = 1.0
"""Seconds to wait before each reconnect from the third consecutive failure on."""
QUICK_RECONNECTS = 2

_MESSAGE_SLACK = 64 * 1024
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CONNECTION_GONE = (
    wsproto.utilities.LocalProtocolError,  # sending once a close has been received
    httpcore.NetworkError,
    anyio.ClosedResourceError,  # the in-process transport after the app has gone
    anyio.BrokenResourceError,
)


class _AuthReply(msgspec.Struct):
    type: str
    reason: str | None = None


_encode = msgspec.json.Encoder().encode
_auth_reply_decoder = msgspec.json.Decoder(_AuthReply)


def socket_url(api_url: str, path: str) -> str:
    """The WebSocket URL of ``path`` under ``api_url``, spelt as httpx wants it (http/https)."""
    base = api_url.rstrip("/")
    for websocket_scheme, http_scheme in (("wss://", "https://"), ("ws://", "http://")):
        if base.lower().startswith(websocket_scheme):
            base = http_scheme + base[len(websocket_scheme) :]
    return f"{base}/{path.lstrip('/')}"


def unwrap(error: BaseException) -> BaseException:
    """The one error inside (nested) single-member exception groups, else ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def is_clean_close(error: BaseException) -> bool:
    """Whether the server ended the socket normally (1000 or 1001)."""
    return isinstance(error, WebSocketDisconnect) and error.code in CLEAN_CLOSE_CODES


def is_retryable(error: BaseException) -> bool:
    """Whether a reconnect may cure ``error`` (the same answer for producer and subscriber)."""
    if isinstance(error, AuthenticationError):
        return False
    if isinstance(error, WebSocketDisconnect):
        return error.code in RETRYABLE_CLOSE_CODES
    if isinstance(error, HTTPStatusError):
        return error.status in RETRYABLE_UPGRADE_STATUSES
    return isinstance(error, RETRYABLE_ERRORS)


def is_unreachable(error: BaseException) -> bool:
    """Whether nothing answered at the address (connection refused, an unknown host): never
    retried on a client's first connect, where it most likely means a wrong URL."""
    return isinstance(error, httpx.ConnectError)


def is_refused_frame(error: BaseException) -> bool:
    """Whether ``error`` is a close 1007: the server refused a frame (naming its event's id
    when it could read it, see :func:`poison_event_id`)."""
    return isinstance(error, WebSocketDisconnect) and error.code == INVALID_FRAME


def poison_event_id(error: BaseException) -> uuid.UUID | None:
    """The id of the event a server refused (close 1007 naming it, SPEC D3), if that is what
    ``error`` says."""
    if not isinstance(error, WebSocketDisconnect) or error.code != INVALID_FRAME:
        return None
    match = _UUID.search(error.reason or "")
    return uuid.UUID(match[0]) if match else None


def is_too_big(error: BaseException) -> bool:
    """Whether ``error`` is a close 1009: a frame over the server's (or a proxy's) WebSocket
    message limit, which names no event."""
    return isinstance(error, WebSocketDisconnect) and error.code == MESSAGE_TOO_BIG


def describe(error: BaseException) -> str:
    """One readable line for a connection failure (httpx-ws's errors have no message)."""
    if isinstance(error, WebSocketDisconnect):
        reason = f": {error.reason}" if error.reason else ""
        return f"the server closed the WebSocket with code {error.code}{reason}"
    if isinstance(error, WebSocketNetworkError):
        return "the WebSocket connection was lost"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Reconnects:
    """The reconnect budget of one operation: ``attempts`` consecutive failures are retried,
    immediately for the first two, after :data:`RECONNECT_DELAY` from the third on."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.failures = 0

    async def after_failure(self, error: BaseException, *, pace: bool = False) -> None:
        """Count a failure; re-raise ``error`` once the budget is spent, else wait as due
        (always, with ``pace``: for a connection that failed before doing any work)."""
        self.failures += 1
        if self.failures > self.attempts:
            raise error
        if pace or self.failures > QUICK_RECONNECTS:
            await anyio.sleep(RECONNECT_DELAY)

    def succeeded(self) -> None:
        """A connection worked: the next failure is the first again."""
        self.failures = 0


class Socket:
    """One open, authenticated connection, held by a task of a :class:`SocketOpener`.

    ``closed`` is set once the reader has stopped; ``error`` then says why (the close frame
    or the network error), and :meth:`aclose` releases the connection.
    """

    def __init__(self, session: AsyncWebSocketSession, scope: anyio.CancelScope) -> None:
        self.session = session
        self.closed = anyio.Event()
        self.error: BaseException | None = None
        self._scope = scope
        self._close_requested = anyio.Event()
        self._finished = anyio.Event()
        self._torn = False

    def failure(self) -> BaseException:
        """Why the socket closed (a network error if nothing better is known)."""
        return self.error if self.error is not None else WebSocketNetworkError()

    async def send_text(self, text: str) -> None:
        """Send one text frame; a socket that has closed raises why it closed, and one whose
        server reads nothing for :data:`WRITE_TIMEOUT` seconds raises :class:`TimeoutError`."""
        await self._write(lambda: self.session.send_text(text))

    async def ping(self) -> None:
        """Send a ping and wait for its pong; raises why the socket closed if it does first,
        and :class:`TimeoutError` if no pong comes within :data:`PONG_TIMEOUT` seconds."""
        pong = await self._write(self.session.ping)
        with anyio.move_on_after(PONG_TIMEOUT):
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(_cancel_when_set, self.closed, waiting.cancel_scope)
                await pong.wait()
                waiting.cancel_scope.cancel()
        if pong.is_set():
            return
        if self.closed.is_set():
            raise self.failure()
        self._torn = True  # a server that answers nothing would not answer a goodbye either
        raise TimeoutError(
            f"the server did not answer a ping within {PONG_TIMEOUT:g} s (is it hung?)"
        )

    async def _write(self, write: Callable[[], Awaitable[_T]]) -> _T:
        if self.closed.is_set():
            raise self.failure()
        try:
            with anyio.fail_after(WRITE_TIMEOUT):
                return await write()
        except (WebSocketNetworkError, *_CONNECTION_GONE) as exc:
            raise await self._why_gone(exc) from exc
        except TimeoutError:
            self._torn = True
            raise TimeoutError(
                f"the server read nothing for {WRITE_TIMEOUT:g} s (is it hung?)"
            ) from None
        except BaseException:
            self._torn = True  # cancelled mid-frame, maybe: the socket can only be cut
            raise

    async def _why_gone(self, exc: BaseException) -> BaseException:
        # A failed write usually means the server has closed; its close frame (1007 naming a
        # refused event, 1013, ...) says more than the write error, so wait briefly for it.
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self.closed.wait()
        if self.error is not None:
            return self.error
        return WebSocketNetworkError() if isinstance(exc, _CONNECTION_GONE) else exc

    async def aclose(self) -> None:
        """Close the connection and wait until its task has finished (idempotent).

        The goodbye (a close frame) gets :data:`CLOSE_TIMEOUT` seconds, none after a write
        that did not finish; then the connection is cut: a server that reads nothing would
        hold the close frame's write, and this, for ever.
        """
        self._close_requested.set()
        with anyio.CancelScope(shield=True):
            if not self._torn:
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self._finished.wait()
            if not self._finished.is_set():
                self._scope.cancel()
                await _cut(self.session.stream)
                await self._finished.wait()

    async def _serve(self, reader: Callable[[Socket], Awaitable[None]]) -> None:
        async with anyio.create_task_group() as serving:
            serving.start_soon(self._read, reader)
            await self._close_requested.wait()
            serving.cancel_scope.cancel()

    async def _read(self, reader: Callable[[Socket], Awaitable[None]]) -> None:
        try:
            await reader(self)
        except Exception as exc:
            self.error = unwrap(exc)
        finally:
            self.closed.set()


async def _cut(stream: AsyncNetworkStream) -> None:
    """Close ``stream`` at once, without a goodbye (a TLS one included): every write blocked
    on it fails."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await stream.aclose()


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _handshake(session: AsyncWebSocketSession, api_key: str | None) -> None:
    """Ping/pong (the socket works), then authenticate in-band (SPEC B §4.1)."""
    try:
        text = await _authenticate(session, api_key)
    except WebSocketDisconnect as exc:
        if exc.code in RETRYABLE_CLOSE_CODES:
            raise
        raise _auth_error(exc.reason or f"closed with code {exc.code}") from exc
    if text is None:
        return  # a legacy server: it expects no auth message
    try:
        reply = _auth_reply_decoder.decode(text)
    except msgspec.DecodeError:
        reply = _AuthReply(type="unknown", reason=f"unexpected message {text[:200]!r}")
    if reply.type != "auth_success":
        raise _auth_error(reply.reason or f"unexpected {reply.type!r} message")


async def _authenticate(session: AsyncWebSocketSession, api_key: str | None) -> str | None:
    """The server's answer to our ``auth`` message (``None``: a legacy server, not asked)."""
    try:
        pong = await session.ping()
        await pong.wait()
        if session.subprotocol != SUBPROTOCOL:
            return None
        await session.send_text(_encode({"type": "auth", "token": api_key}).decode())
    except _CONNECTION_GONE:
        # The server closed first (a stalled network delivered our ``auth`` after its
        # handshake timeout, say): receiving raises its close, whose code says more.
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await session.receive_text()
        raise
    return await session.receive_text()


def _auth_error(reason: str) -> AuthenticationError:
    return AuthenticationError(
        "Unable to authenticate to the event stream. Please ensure the API key you are using "
        f"is valid for this server. Reason: {reason}"
    )


def _upgrade_error(error: WebSocketUpgradeError) -> Exception:
    http_error = error_for_response(error.response)
    status = error.response.status_code
    if status == 401:
        refused = _auth_error(str(http_error))
    elif status == 403:
        refused = AuthenticationError(_forbidden_upgrade(error.response))
    else:
        return http_error
    refused.__cause__ = http_error
    return refused


def _forbidden_upgrade(response: httpx.Response) -> str:
    """What a 403 to the upgrade most likely means. localevents checks the key in-band,
    after the upgrade (close 1008), and uvicorn answers 403 to any handshake it refuses, an
    unknown path included: from localevents, a wrong URL. Prefect Cloud may mean the key."""
    said = server_explanation(response)
    return (
        f"the server refused the WebSocket upgrade at {response.request.url} (HTTP 403): is "
        "the API URL right (it ends in /api)? A localevents server checks the API key only "
        "after the upgrade, so its 403 means there is no WebSocket route at this URL; from "
        "Prefect Cloud, a 403 may also mean an API key without access to this workspace"
        + (f". The server said: {said}" if said else "")
    )


class SocketOpener:
    """Opens authenticated sockets to one endpoint while its ``async with`` block is open.

    It owns what every connection needs: the in-process app's lifespan (ephemeral mode), the
    httpx client and its transport, and the task group that holds the connections.
    """

    def __init__(self, connection: Connection, path: str) -> None:
        self.connection = connection
        self.url = socket_url(connection.api_url, path)
        self._maximum_message = get_settings().events_maximum_size_bytes + _MESSAGE_SLACK
        # In-process, the app is the server: after a goodbye it gets as long as a closing
        # socket does to take each message the client sent before (and is then cut off).
        transport = (
            InProcessWebSocketTransport(connection.app, close_timeout=CLOSE_TIMEOUT)
            if connection.app
            else None
        )
        self._http = httpx.AsyncClient(
            transport=transport, headers=auth_headers(connection.api_key)
        )
        self._stack = contextlib.AsyncExitStack()
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            if self.connection.app is not None:
                await stack.enter_async_context(app_lifespan(self.connection.app))
            await stack.enter_async_context(self._http)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The owner has closed every socket, so the task group has nothing left to wait for;
        # the owner's own error is not passed on, or the task group would wrap it in a group.
        self._task_group = None
        await self._stack.aclose()

    def start_soon(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a background task of the owner's (it must not raise) until the block ends."""
        if self._task_group is None:
            raise RuntimeError("open the SocketOpener with 'async with' first")
        self._task_group.start_soon(function)

    async def open(self, reader: Callable[[Socket], Awaitable[None]]) -> Socket:
        """Connect and authenticate; ``reader`` then runs on the socket until it closes.

        Raises the connection's failure as is (single-member groups unwrapped), an
        :class:`~localevents.AuthenticationError` for a refused key, or :class:`TimeoutError`
        after :data:`HANDSHAKE_TIMEOUT` seconds.
        """
        if self._task_group is None:
            raise RuntimeError("open the SocketOpener with 'async with' first")
        socket: Socket = await self._task_group.start(self._hold, reader)
        return socket

    async def _hold(
        self, reader: Callable[[Socket], Awaitable[None]], *, task_status: TaskStatus[Socket]
    ) -> None:
        socket: Socket | None = None
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + HANDSHAKE_TIMEOUT) as scope:
                try:
                    connecting: contextlib.AbstractAsyncContextManager[AsyncWebSocketSession] = (
                        aconnect_ws(
                            self.url,
                            self._http,
                            subprotocols=[SUBPROTOCOL],
                            max_message_size_bytes=self._maximum_message,
                        )
                    )
                    async with connecting as session:
                        await _handshake(session, self.connection.api_key)
                        scope.deadline = math.inf
                        socket = Socket(session, scope)
                        task_status.started(socket)
                        await socket._serve(reader)
                except Exception as exc:
                    if socket is None:
                        raise _failure(unwrap(exc), self.url) from None
                    raise
            if socket is None:
                raise TimeoutError(
                    f"no WebSocket handshake with {self.url} within {HANDSHAKE_TIMEOUT} s"
                )
        except Exception:
            if socket is None:
                raise
            # Handed over already: the socket reports its own end; this is goodbye. Caught
            # here, past the scope: a goodbye to a cut connection can fail beside this
            # scope's cancellation (one group on trio), which the scope takes out.
            logger.debug("closing the WebSocket to %s failed", self.url, exc_info=True)
        except BaseExceptionGroup as group:
            if socket is None:
                raise
            # The same beside the owner's cancellation, which this scope leaves alone (on
            # trio): the cancellation goes on, without the goodbye's failure.
            failed, cancelled = group.split(Exception)
            if failed is not None:
                logger.debug("closing the WebSocket to %s failed", self.url, exc_info=failed)
            if cancelled is not None:
                raise cancelled from None
        finally:
            if socket is not None:
                socket.closed.set()
                socket._finished.set()


def _failure(error: BaseException, url: str) -> BaseException:
    if isinstance(error, WebSocketUpgradeError):
        return _upgrade_error(error)
    if isinstance(error, httpx.ConnectError) and not isinstance(error, ServerUnreachable):
        return unreachable_error(error)  # one line naming the address, as over HTTP
    if isinstance(error, httpx.TimeoutException):  # httpx's own text is often empty
        return _timed_out(error, url)
    return error


def _timed_out(error: httpx.TimeoutException, url: str) -> httpx.TimeoutException:
    """The same timeout, saying where and what it may mean."""
    try:
        request: httpx.Request | None = error.request
    except RuntimeError:  # raised outside a request
        request = None
    what = f"{url} did not answer in time ({type(error).__name__}); is the server hung?"
    return type(error)(what, request=request)
