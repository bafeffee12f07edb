"""An in-process ASGI transport for HTTP and WebSockets that fixes httpx-ws 0.9 (DESIGN §3).

httpx-ws's ``ASGIWebSocketTransport`` runs each WebSocket app call as a task of a task group
that the transport enters with the client (anyio, so it runs on asyncio and trio alike). It
has three bugs, each fixed below where it arises: concurrent connects can reach the wrong
route, an app that never accepts leaves an orphaned task that hangs the client's exit, and
every finished session stays registered until the client closes.

It also buffers without bound what the app sends until the client reads it, so a slow
reader made memory grow instead of making the app wait; here at most
:data:`OUTBOX_MESSAGES` wait. And it refuses a client's ping (``UnhandledWebSocketEvent``).
Here a ping is answered the way ``localevents serve`` answers it
(``server/_ws_protocol.py``): once the app has handled every frame sent before it, i.e.
when the app asks for the message after them. The producer's checkpoint relies on that
meaning.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import anyio.streams.stapled
import wsproto.events
from httpx import Response
from httpx_ws.transport import ASGIWebSocketAsyncNetworkStream, ASGIWebSocketTransport

if TYPE_CHECKING:
    from types import TracebackType

    from httpx import Request
    from httpx_ws.transport import ASGIApp, Scope

__all__ = ("InProcessWebSocketTransport",)


_PING = "localevents.ping"  # queue entries the app and the client never see as such
_PONG = "localevents.pong"
CHECKPOINT = "localevents.checkpoint"  # the same ASGI extension as the server's protocol
OUTBOX_MESSAGES = 64
"""Messages from the app that wait for the client to read them, at most (per session)."""
_Message = dict[str, Any]


class _AppInbox:
    """The app's side of a session's inbox: a ping is answered when the app reaches it, or,
    once the app has opted in by sending ``{"type": CHECKPOINT}``, the app gets a
    ``{"type": "websocket.receive", CHECKPOINT: True}`` message where the ping stood and the
    pong goes out on its next ``receive()`` (the server protocol's rules, see there)."""

    def __init__(self, inbox: Any, outbox: Any) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._pongs_due: list[bytes] = []
        self.markers = False

    async def send(self, message: _Message) -> None:
        await self._inbox.send(message)

    async def receive(self) -> _Message:
        while True:
            for payload in self._pongs_due:
                await self._pong(payload)
            self._pongs_due.clear()
            message: _Message = await self._inbox.receive()
            if message["type"] != _PING:
                return message
            if self.markers:
                self._pongs_due.append(message["payload"])
                return {"type": "websocket.receive", CHECKPOINT: True}
            await self._pong(message["payload"])

    async def _pong(self, payload: bytes) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._outbox.send({"type": _PONG, "payload": payload})

    async def aclose(self) -> None:
        await self._inbox.aclose()


class _AppOutbox:
    """The app's side of a session's outbox: the checkpoint opt-in is taken here."""

    def __init__(self, outbox: Any, inbox: _AppInbox) -> None:
        self._outbox = outbox
        self._inbox = inbox

    async def send(self, message: _Message) -> None:
        if message["type"] == CHECKPOINT:
            self._inbox.markers = True
            return
        await self._outbox.send(message)

    async def receive(self) -> _Message:
        message: _Message = await self._outbox.receive()
        return message

    async def aclose(self) -> None:
        await self._outbox.aclose()


class _Session(ASGIWebSocketAsyncNetworkStream):
    """One WebSocket session; it owns its app task and ends it before it is forgotten."""

    def __init__(self, transport: InProcessWebSocketTransport, scope: Scope) -> None:
        app: ASGIApp = transport.app  # type: ignore[assignment]
        super().__init__(app, scope, transport._task_group, transport._initial_receive_timeout)
        self._live = transport._sessions
        self._close_timeout = transport.close_timeout
        self._app_scope = anyio.CancelScope()
        self._app_finished = anyio.Event()
        # httpx-ws buffers the app's messages without bound; bounded, an app sending faster
        # than the client reads waits, as it would on a socket, and the server's limits on a
        # slow subscriber (its queue, then 1013) apply in-process too.
        unbounded = self._send_queue
        unbounded.send_stream.close()
        unbounded.receive_stream.close()
        self._send_queue = anyio.streams.stapled.StapledObjectStream(
            *anyio.create_memory_object_stream[_Message](max_buffer_size=OUTBOX_MESSAGES)
        )
        inbox = _AppInbox(self._receive_queue, self._send_queue)
        self._receive_queue, self._send_queue = inbox, _AppOutbox(self._send_queue, inbox)
        scope.setdefault("extensions", {})[CHECKPOINT] = {}

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Hand the client's frames to the app; a ping queues behind them."""
        self.connection.receive_data(buffer)
        for event in self.connection.events():
            if isinstance(event, wsproto.events.Ping):
                await self.send({"type": _PING, "payload": bytes(event.payload)})
            elif isinstance(event, wsproto.events.CloseConnection):
                await self.send(
                    {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
                )
            elif isinstance(event, wsproto.events.TextMessage):
                await self.send({"type": "websocket.receive", "text": event.data})
            elif isinstance(event, wsproto.events.BytesMessage):
                await self.send({"type": "websocket.receive", "bytes": event.data})

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """The next frame for the client: the app's messages, and pongs."""
        message: _Message = await self.receive(timeout=timeout)
        kind = message["type"]
        event: wsproto.events.Event
        if kind == _PONG:
            event = wsproto.events.Pong(message["payload"])
        elif kind == "websocket.close":
            event = wsproto.events.CloseConnection(message["code"], message.get("reason"))
        elif kind == "websocket.send" and message.get("text") is not None:
            event = wsproto.events.TextMessage(message["text"])
        elif kind == "websocket.send":
            event = wsproto.events.BytesMessage(message.get("bytes") or b"")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} from the app")
        return self.connection.send(event)

    async def __aenter__(self) -> tuple[ASGIWebSocketAsyncNetworkStream, bytes]:
        self._live.add(self)
        try:
            return await super().__aenter__()
        except BaseException:
            # Fix 2: a refused, timed-out or cancelled handshake ends the app task now; httpx-ws
            # leaves it running in the client's task group, whose exit then waits forever.
            await self._end(grace=0)
            raise

    async def aclose(self) -> None:
        """Send ``websocket.disconnect``, then end the app task (idempotent)."""
        await self._end(grace=self._close_timeout)

    async def _end(self, *, grace: float) -> None:
        """Close both queues, give the app ``grace`` seconds to return, then cancel it."""
        with anyio.CancelScope(shield=True):
            await super().aclose()
            with anyio.move_on_after(grace):
                await self._app_finished.wait()
            self._app_scope.cancel()
            await self._app_finished.wait()
        # Fix 3: forget the session as soon as it has ended, not when the client closes.
        self._live.discard(self)

    async def _run(self) -> None:
        try:
            with self._app_scope:
                await super()._run()
        finally:
            self._app_finished.set()


class InProcessWebSocketTransport(ASGIWebSocketTransport):
    """httpx transport to an ASGI app in this process, for HTTP requests and WebSockets.

    Use it through ``async with httpx.AsyncClient(transport=...)``: its WebSocket sessions run
    in a task group entered with the client. A closed session's app task gets
    ``close_timeout`` seconds to return after ``websocket.disconnect``, then is cancelled.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        initial_receive_timeout: float = 1.0,
        close_timeout: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, initial_receive_timeout=initial_receive_timeout, **kwargs)
        self.close_timeout = close_timeout
        self._sessions: set[_Session] = set()

    @property
    def live_sessions(self) -> frozenset[ASGIWebSocketAsyncNetworkStream]:
        """The WebSocket sessions opened and not yet closed."""
        return frozenset(self._sessions)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> None:
        # Sessions left open end here, so the task group below has nothing left to wait for.
        for session in list(self._sessions):
            await session.aclose()
        await super().__aexit__(exc_type, exc_val, exc_tb)

    async def _handle_ws_request(self, request: Request, scope: Scope) -> Response:
        if self._exit_stack is None:
            raise RuntimeError("open the httpx.AsyncClient with 'async with' to use WebSockets")
        # Fix 1: the scope goes straight to this connection's session. httpx-ws parks it in
        # ``self.scope`` and reads it back from a task, after a concurrent connect may have
        # replaced it with its own.
        stream, accept = await _Session(self, scope).__aenter__()
        fields = (line.partition(": ") for line in accept.decode().splitlines()[1:])
        headers = [(name, value) for name, _, value in fields if name.strip()]
        return Response(101, headers=headers, extensions={"network_stream": stream})
