"""An in-process ASGI transport for HTTP and WebSockets that fixes httpx-ws 0.9 (DESIGN §3).

httpx-ws's ``ASGIWebSocketTransport`` runs each WebSocket app call as a task of a task group
that the transport enters with the client (anyio, so it runs on asyncio and trio alike). It
has three bugs, each fixed below where it arises: concurrent connects can reach the wrong
route, an app that never accepts leaves an orphaned task that hangs the client's exit, and
every finished session stays registered until the client closes.

It also buffers without bound what each side sends until the other reads it, so a slow
reader made memory grow instead of making the sender wait; here at most
:data:`OUTBOX_MESSAGES` (from the app) and :data:`INBOX_MESSAGES` (from the client) wait.
And it refuses a client's ping (``UnhandledWebSocketEvent``). Here a ping is answered the
way ``localevents serve`` answers it (``server/_ws_protocol.py``): once the app has handled
every frame sent before it, i.e. when the app asks for the message after them. The
producer's checkpoint relies on that meaning.

Closing a session behaves as over a network, where the server outlives the client's
goodbye: the app gets ``websocket.disconnect`` behind every frame sent before it (httpx-ws
dropped the frames it had not read yet), runs on even if the client's task is being
cancelled, and is cancelled only once it has taken nothing for ``close_timeout`` seconds,
with a warning counting the frames it never read. A session that has ended fails the
client's reads and writes as a closed socket does (``httpcore.ReadError`` /
``WriteError``, which httpx-ws's goodbye expects), not with anyio's errors.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio
import httpcore
import wsproto.events
from httpx import Response
from httpx_ws.transport import ASGIWebSocketAsyncNetworkStream, ASGIWebSocketTransport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from types import TracebackType

    from anyio.abc import ObjectSendStream
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from httpx import Request
    from httpx_ws.transport import ASGIApp, Scope

__all__ = ("InProcessWebSocketTransport",)

logger = logging.getLogger("localevents.client")

_PING = "localevents.ping"  # queue entries the app and the client never see as such
_PONG = "localevents.pong"
CHECKPOINT = "localevents.checkpoint"  # the same ASGI extension as the server's protocol
OUTBOX_MESSAGES = 64
"""Messages from the app that wait for the client to read them, at most (per session)."""
INBOX_MESSAGES = 1024
"""Messages from the client that wait for the app to read them, at most (per session): a
client that sends faster waits, as on a socket, and a closing session has little left to
hand over."""
_FRAME = "websocket.receive"
_Message = dict[str, Any]
_GONE = (anyio.ClosedResourceError, anyio.BrokenResourceError)


@contextlib.contextmanager
def _as_network_error(error: type[httpcore.NetworkError]) -> Iterator[None]:
    """Raise ``error`` for a queue that has closed, as httpcore does for a closed socket."""
    try:
        yield
    except _GONE as exc:
        raise error("the in-process WebSocket session has ended") from exc


class _AppInbox:
    """A session's inbox: the client's messages in order, taken by the app.

    A ping is answered when the app reaches it, or, once the app has opted in by sending
    ``{"type": CHECKPOINT}``, the app gets a ``{"type": "websocket.receive", CHECKPOINT:
    True}`` message where the ping stood and the pong goes out on its next ``receive()``
    (the server protocol's rules, see there). ``taken`` counts the messages the app has
    taken: its progress, which a closing session waits on.
    """

    def __init__(self, outbox: ObjectSendStream[_Message]) -> None:
        self._to_app, self._app_side = anyio.create_memory_object_stream[_Message](
            max_buffer_size=INBOX_MESSAGES
        )
        self._outbox = outbox
        self._pongs_due: list[bytes] = []
        self.markers = False
        self.taken = 0
        self.frames_dropped = 0  # the client's frames still unread when the app stopped

    async def send(self, message: _Message) -> None:
        """The client's side: queue ``message`` behind those before it."""
        await self._to_app.send(message)

    def close_sending(self) -> None:
        """The client sends nothing more: once the app has read the rest, it reads the end."""
        self._to_app.close()

    async def receive(self) -> _Message:
        """The app's side: the client's next message."""
        while True:
            for payload in self._pongs_due:
                await self._pong(payload)
            self._pongs_due.clear()
            message: _Message = await self._app_side.receive()
            self.taken += 1
            if message["type"] != _PING:
                return message
            if self.markers:
                self._pongs_due.append(message["payload"])
                return {"type": _FRAME, CHECKPOINT: True}
            await self._pong(message["payload"])

    def close_receiving(self) -> None:
        """The app reads nothing more: count and drop what it left, and fail the client's
        writes from now on."""
        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream, *_GONE):
            while True:
                message = self._app_side.receive_nowait()
                self.frames_dropped += message["type"] == _FRAME
        self._app_side.close()

    async def _pong(self, payload: bytes) -> None:
        with contextlib.suppress(*_GONE):
            await self._outbox.send({"type": _PONG, "payload": payload})


class _AppOutbox:
    """A session's outbox: the app's messages, read by the client; the checkpoint opt-in is
    taken here."""

    def __init__(
        self,
        to_client: MemoryObjectSendStream[_Message],
        from_app: MemoryObjectReceiveStream[_Message],
        inbox: _AppInbox,
    ) -> None:
        self._to_client = to_client
        self._from_app = from_app
        self._inbox = inbox

    async def send(self, message: _Message) -> None:
        """The app's side."""
        if message["type"] == CHECKPOINT:
            self._inbox.markers = True
            return
        await self._to_client.send(message)

    async def receive(self) -> _Message:
        """The client's side."""
        message: _Message = await self._from_app.receive()
        return message

    def close(self) -> None:
        """The client reads nothing more: the app's sends fail from now on (with
        ``ClosedResourceError``, which httpx-ws's app task expects)."""
        self._to_client.close()
        self._from_app.close()


class _Session(ASGIWebSocketAsyncNetworkStream):
    """One WebSocket session; it owns its app task and ends it before it is forgotten."""

    def __init__(self, transport: InProcessWebSocketTransport, scope: Scope) -> None:
        app: ASGIApp = transport.app  # type: ignore[assignment]
        super().__init__(app, scope, transport._task_group, transport._initial_receive_timeout)
        self._live = transport._sessions
        self._close_timeout = transport.close_timeout
        # Shielded: the app is the server's side of the session, so the client's task being
        # cancelled does not cancel it; only _end does, once the app has stopped reading.
        self._app_scope = anyio.CancelScope(shield=True)
        self._app_finished = anyio.Event()
        self._ending = False
        self._ended = anyio.Event()
        self._goodbye_sent = False
        # httpx-ws buffers both ways without bound; bounded, a side sending faster than the
        # other reads waits, as it would on a socket, and the server's limits on a slow
        # subscriber (its queue, then 1013) apply in-process too.
        for unbounded in (self._receive_queue, self._send_queue):
            unbounded.send_stream.close()
            unbounded.receive_stream.close()
        to_client, from_app = anyio.create_memory_object_stream[_Message](OUTBOX_MESSAGES)
        self._inbox = _AppInbox(to_client)
        self._outbox = _AppOutbox(to_client, from_app, self._inbox)
        self._receive_queue, self._send_queue = self._inbox, self._outbox
        scope.setdefault("extensions", {})[CHECKPOINT] = {}

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Hand the client's frames to the app; a ping queues behind them."""
        self.connection.receive_data(buffer)
        with _as_network_error(httpcore.WriteError):
            for event in self.connection.events():
                await self._hand_over(event)

    async def _hand_over(self, event: wsproto.events.Event) -> None:
        if isinstance(event, wsproto.events.Ping):
            await self.send({"type": _PING, "payload": bytes(event.payload)})
        elif isinstance(event, wsproto.events.CloseConnection):
            await self.send(
                {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
            )
            self._goodbye_sent = True
        elif isinstance(event, wsproto.events.TextMessage):
            await self.send({"type": _FRAME, "text": event.data})
        elif isinstance(event, wsproto.events.BytesMessage):
            await self.send({"type": _FRAME, "bytes": event.data})

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """The next frame for the client: the app's messages, and pongs."""
        with _as_network_error(httpcore.ReadError):
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
        """Say goodbye (``websocket.disconnect``), then end the app task (idempotent)."""
        await self._end(grace=self._close_timeout)

    async def _end(self, *, grace: float) -> None:
        """Queue the goodbye behind the client's frames and wait for the app to return,
        for as long as it takes a message every ``grace`` seconds; then cancel it."""
        with anyio.CancelScope(shield=True):
            if self._ending:  # another task is ending the session: wait for it
                await self._ended.wait()
                return
            self._ending = True
            self._outbox.close()
            said = self._goodbye_sent or await self._while_app_reads(self._say_goodbye, grace)
            self._inbox.close_sending()
            if not (said and await self._while_app_reads(self._app_finished.wait, grace)):
                self._app_scope.cancel()
                await self._app_finished.wait()
                self._warn_if_frames_dropped(grace)
            self._ended.set()
        # Fix 3: forget the session as soon as it has ended, not when the client closes.
        self._live.discard(self)

    async def _say_goodbye(self) -> None:
        with contextlib.suppress(*_GONE):  # the app has returned already
            await self.send({"type": "websocket.disconnect", "code": 1006})  # as uvicorn says

    async def _while_app_reads(self, step: Callable[[], Awaitable[None]], grace: float) -> bool:
        """Await ``step`` for as long as the app takes a message every ``grace`` seconds;
        ``False`` if the app stopped taking any while alive."""
        while not self._app_finished.is_set():
            taken = self._inbox.taken
            with anyio.move_on_after(grace):
                await step()
                return True
            if self._inbox.taken == taken:
                return False
        return True

    def _warn_if_frames_dropped(self, grace: float) -> None:
        dropped = self._inbox.frames_dropped
        if dropped:
            logger.warning(
                "Cancelled the in-process app serving the WebSocket %s, which read nothing "
                "for %g s after its client closed: %d frames the client had sent were left "
                "unread by that session (a producer sends what stays unconfirmed again)",
                self.scope.get("path"),
                grace,
                dropped,
            )

    async def _run(self) -> None:
        try:
            with self._app_scope:
                await super()._run()
        finally:
            self._inbox.close_receiving()  # the client's writes fail from now on
            self._app_finished.set()


class InProcessWebSocketTransport(ASGIWebSocketTransport):
    """httpx transport to an ASGI app in this process, for HTTP requests and WebSockets.

    Use it through ``async with httpx.AsyncClient(transport=...)``: its WebSocket sessions run
    in a task group entered with the client. A closed session's app task gets
    ``websocket.disconnect`` behind every frame the client sent, and is cancelled once it
    has taken nothing for ``close_timeout`` seconds (see the module docstring).
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
