"""uvicorn's WebSocket protocol, with pongs that mean "processed" (the producer checkpoint).

Prefect's producer learns that the frames it sent were stored from a ping's pong (SPEC B
§4.2, §5.4), and ``/api/events/in`` stores each frame before it reads the next. But uvicorn
answers a ping as soon as its bytes arrive, usually while the frames sent before it still
wait in the ASGI queue: measured here, a pong after three frames came back before they were
committed every time. This protocol queues the ping behind those frames instead and answers
it when the app asks for the frame after them, i.e. once the app has finished with every
frame sent before the ping.

Serve with ``uvicorn.run(app, ws=CheckpointWSProtocol,
ws_max_size=websocket_message_limit(settings))`` (or ``--ws
localevents.server._ws_protocol:CheckpointWSProtocol``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

import wsproto.events
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.connection import ConnectionState

from localevents.server._checkpoint import (
    CHECKPOINT,
    HANDSHAKE_DONE,
    HANDSHAKE_MESSAGE_LIMIT,
    QUEUED,
    RAW_FRAMES,
    RAW_FRAMES_NOW,
)

if TYPE_CHECKING:
    from uvicorn._types import WebSocketEvent
    from wsproto import events

    from localevents._settings import Settings

__all__ = ("CHECKPOINT", "UVICORN_MESSAGE_LIMIT", "CheckpointWSProtocol", "websocket_message_limit")

UVICORN_MESSAGE_LIMIT = 16 * 1024 * 1024
"""uvicorn's own limit on an incoming WebSocket message (``ws_max_size``), in bytes."""


def websocket_message_limit(settings: Settings) -> int:
    """The largest WebSocket message the server reads (``ws_max_size``): uvicorn's 16 MiB,
    or twice the event size limit when that is higher.

    A frame up to it is read, and one holding an event over the size limit is refused with
    1007 naming the event, which the producer then drops. A frame over it is closed with 1009
    unread, naming nothing. Without the raise, an event size limit set above 16 MiB could
    never be reached over ``/api/events/in``. Twice the limit leaves room for the spaces a
    producer may send that the limit (on compact JSON) does not count.
    """
    return max(UVICORN_MESSAGE_LIMIT, 2 * settings.events_maximum_size_bytes)


_PING = "localevents.ping"  # a queue entry the app never sees as such


def _size(event: events.TextMessage | events.BytesMessage) -> int:
    """Bytes of a message's data on the wire (UTF-8 for text), as uvicorn counts them."""
    data = event.data
    return len(data.encode()) if isinstance(data, str) else len(data)


CLOSE_DRAIN_S = 5.0
"""Seconds a closing connection may take to send what it holds (its close frame last)
before it is cut: a client that reads nothing would otherwise keep it open for good."""


class CheckpointWSProtocol(WSProtocol):
    """Answer a client's ping once the app has taken every frame received before it and
    asks for the next one.

    The scope's extensions name :data:`CHECKPOINT`. An app that opts in (by sending
    ``{"type": CHECKPOINT}``) gets a marker where the ping stood, so it can finish what it
    holds (``/api/events/in`` commits its batch) before the pong goes out on its next
    ``receive()``. Other apps see nothing new.
    """

    def handle_connect(self, event: events.Request) -> None:
        """Accept as uvicorn does, and advertise localevents' extensions."""
        super().handle_connect(event)
        extensions = cast("Any", self.scope)["extensions"]
        extensions[CHECKPOINT] = {}
        extensions[QUEUED] = self.queue.qsize
        extensions[RAW_FRAMES] = self._write_frames
        extensions[RAW_FRAMES_NOW] = self._write_frames_now
        extensions[HANDSHAKE_DONE] = self._handshake_done
        self._pongs_due: list[events.Ping] = []
        self._markers = False
        self.buffer.max_length = min(HANDSHAKE_MESSAGE_LIMIT, self.config.ws_max_size)

    def handle_message(self, event: events.TextMessage | events.BytesMessage) -> None:
        """Take a message's data as uvicorn does, unless it goes over the limit of a
        handshake message: then close with 1009 naming that limit (uvicorn would name its
        own)."""
        limit = self.buffer.max_length
        if limit < self.config.ws_max_size and self.buffer.length + _size(event) > limit:
            self.close_sent = True
            reason = f"a message before the handshake is done is limited to {limit} bytes"
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1009, "reason": reason})
            if not self.transport.is_closing():
                close = wsproto.events.CloseConnection(code=1009, reason=reason)
                self.transport.write(self.conn.send(close))
                self.transport.close()
            return
        super().handle_message(event)

    def _handshake_done(self) -> None:
        """The :data:`HANDSHAKE_DONE` extension: messages up to the full limit from now."""
        self.buffer.max_length = self.config.ws_max_size

    def keepalive_timeout(self) -> None:
        """Close a connection whose answer to the keepalive ping is overdue, unless the
        server is not reading it: uvicorn stops reading after each message until the app
        asks for the next one, and ``/api/events/in`` does not ask while its commit runs,
        so the pong may be waiting unread. Then wait another timeout, until reading
        resumes."""
        if self.read_paused and self.ping_timeout is not None and not self.close_sent:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        super().keepalive_timeout()
        self._cut_unless_drained()

    def handle_ping(self, event: events.Ping) -> None:
        """Queue the ping behind the frames received before it."""
        self.queue.put_nowait(cast("Any", {"type": _PING, "ping": event}))

    async def receive(self) -> WebSocketEvent:
        """The next ASGI message; pongs for checkpoints the app has handled go out first."""
        while True:
            for ping in self._pongs_due:
                self._pong(ping)
            self._pongs_due.clear()
            message = await super().receive()
            if message["type"] != _PING:
                return message
            ping = cast("Any", message)["ping"]
            if not self._markers:
                self._pong(ping)
                continue
            self._pongs_due.append(ping)
            return cast("WebSocketEvent", {"type": "websocket.receive", CHECKPOINT: True})

    async def send(self, message: Any) -> None:
        """Send as uvicorn does; the checkpoint opt-in is taken here."""
        if message["type"] == CHECKPOINT:
            self._markers = True
            return
        if message["type"] == "websocket.close":  # before: the send waits for the buffer
            self._cut_unless_drained()
        await super().send(message)

    def _cut_unless_drained(self) -> None:
        """Cut the connection if it is still open :data:`CLOSE_DRAIN_S` seconds after its
        close: uvicorn closes a transport once its buffer drains, and the buffer of a
        client that stopped reading (a hung process, a stalled consumer) never does, so
        the connection, and what is queued for it, stayed until the server stopped."""
        self.loop.call_later(CLOSE_DRAIN_S, self._cut)

    def _cut(self) -> None:
        if self.disconnected:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a reset: the system drops the unsent bytes too, at once
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    async def _write_frames(self, data: bytes) -> None:
        """Write complete frames as they are, with uvicorn's flow control and checks (the
        :data:`RAW_FRAMES` extension)."""
        await self.writable.wait()
        if self.disconnected or self.conn.state is not ConnectionState.OPEN:
            raise ClientDisconnected  # as uvicorn does when wsproto refuses a message
        if not self.transport.is_closing():
            self.transport.write(data)

    def _write_frames_now(self, data: bytes) -> bool:
        """Write complete frames if that needs no wait: the connection is open and flow
        control lets it (the :data:`RAW_FRAMES_NOW` extension)."""
        if not self.writable.is_set() or self.disconnected or self.transport.is_closing():
            return False
        if self.conn.state is not ConnectionState.OPEN:
            return False
        self.transport.write(data)
        return True

    def _pong(self, ping: events.Ping) -> None:
        if self.conn.state is ConnectionState.OPEN and not self.transport.is_closing():
            self.transport.write(self.conn.send(ping.response()))
