"""Opening and closing the events WebSockets: the ``prefect`` handshake (SPEC B §4.1, D12)
and close reasons that fit in a close frame (D9).

Without the ``prefect`` subprotocol a socket runs in legacy mode (no handshake) when the
server has no key, and is refused before it is accepted when it has one (close 1002, which a
real server turns into HTTP 403). With it, the socket is accepted and its first message must
be ``{"type": "auth", "token": ...}``; with a key configured the token must equal it
(constant-time), else close 1008 with the reason. Success answers ``{"type":
"auth_success"}``.

A client gets :data:`HANDSHAKE_TIMEOUT_S` for each message the handshake waits for (``auth``,
and the ``filter`` of ``/api/events/out``): a socket that sends nothing is closed with 1013
("try again later") naming the message, instead of holding a connection and its task for
ever. Not 1008: clients take that for a refused key and give up, where a client this slow
was stalled by its network and should connect again.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from litestar.exceptions import WebSocketDisconnect

from localevents.events._nesting import decoded
from localevents.server._auth import key_matches
from localevents.server._checkpoint import (
    CHECKPOINT,
    HANDSHAKE_DONE,
    QUEUED,
    RAW_FRAMES,
    RAW_FRAMES_NOW,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from litestar import WebSocket

__all__ = (
    "CHECKPOINT_MARK",
    "CLIENT_GONE",
    "HANDSHAKE_TIMEOUT_S",
    "MAXIMUM_REASON_BYTES",
    "PROTOCOL_ERROR",
    "SUBPROTOCOL",
    "TRY_AGAIN_LATER",
    "Checkpoint",
    "accept_prefect_socket",
    "close_reason",
    "close_socket",
    "end_handshake",
    "mark_checkpoints",
    "queued_messages",
    "raw_frame_writer",
    "raw_frame_writer_now",
    "receive_frame",
    "receive_frame_or_checkpoint",
    "receive_handshake_frame",
    "requested_subprotocols",
)

SUBPROTOCOL = "prefect"
MAXIMUM_REASON_BYTES = 123
"""A close frame's payload is at most 125 bytes, two of which are the code (RFC 6455)."""

PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
CLIENT_GONE = (
    WebSocketDisconnect,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What receiving or sending raises once the client has gone: Litestar's disconnect,
uvicorn's ``ClientDisconnected`` (an OSError), or the closed streams of an in-process
transport."""

HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds a client has to send each handshake message (``auth``, then ``filter``)."""

AUTH_MESSAGE_LIMIT = 16 * 1024
"""Bytes an ``auth`` message may have (a key of thousands of characters fits): a longer one
is refused unread, with 1008."""

_AUTH_SUCCESS = msgspec.json.encode({"type": "auth_success"}).decode()


_CUT = "…"
"""Ends a close reason cut after a word."""


def close_reason(text: str) -> str:
    """``text`` as it fits in a close frame's 123 UTF-8 bytes (D9): whole, or cut after
    its last word that fits, marked "…". A cut there that would keep under two thirds of
    the room falls inside one long word (a label, a value the client sent): it is then
    cut at a character boundary instead, which keeps more of it."""
    data = text.encode("utf-8", "replace")  # a lone surrogate cannot go on the wire
    if len(data) <= MAXIMUM_REASON_BYTES:
        return data.decode()
    room = MAXIMUM_REASON_BYTES - len(_CUT.encode())
    head = data[: room + 1].decode("utf-8", "ignore")  # + 1: a space just past the room
    kept = head[: max(head.rfind(" "), 0)].rstrip(" ,;:-")
    if len(kept.encode()) >= 2 * room // 3:
        return kept + _CUT
    return data[:MAXIMUM_REASON_BYTES].decode("utf-8", "ignore")  # drops a cut character


async def close_socket(socket: WebSocket[Any, Any, Any], code: int, reason: str = "") -> None:
    """Close with ``code`` and ``reason`` (cut per D9); a peer already gone is no error."""
    if socket.connection_state == "disconnect":
        return
    with contextlib.suppress(*CLIENT_GONE):
        await socket.close(code, close_reason(reason))


async def receive_frame(socket: WebSocket[Any, Any, Any]) -> str | bytes | None:
    """The next data frame (text or binary), or ``None`` once the client has gone."""
    while True:
        frame = await receive_frame_or_checkpoint(socket)
        if not isinstance(frame, Checkpoint):  # only after mark_checkpoints; skip them
            return frame


async def receive_frame_or_checkpoint(
    socket: WebSocket[Any, Any, Any],
) -> str | bytes | Checkpoint | None:
    """Like :func:`receive_frame`, and a :class:`Checkpoint` where a client's ping stood
    (after :func:`mark_checkpoints`)."""
    try:
        message = await socket.receive()
    except CLIENT_GONE:
        return None
    if message["type"] != "websocket.receive":
        return None
    if message.get(CHECKPOINT):
        return CHECKPOINT_MARK
    text: str | None = message.get("text")
    if text is not None:
        return text
    data: bytes = message.get("bytes") or b""
    return data


class Checkpoint:
    """Where a client's ping stood among its frames: answered on the next receive."""


CHECKPOINT_MARK = Checkpoint()


async def receive_handshake_frame(
    socket: WebSocket[Any, Any, Any], message: str
) -> str | bytes | None:
    """The next frame, which the handshake needs (the ``message`` one), or ``None`` when
    the client left or sent nothing for :data:`HANDSHAKE_TIMEOUT_S` (then the socket is
    closed with 1013 saying so)."""
    with anyio.move_on_after(HANDSHAKE_TIMEOUT_S):
        return await receive_frame(socket)
    await close_socket(
        socket, TRY_AGAIN_LATER, f"No '{message}' message within {HANDSHAKE_TIMEOUT_S:g} s"
    )
    return None


def _extensions(socket: WebSocket[Any, Any, Any]) -> Mapping[str, Any]:
    """The ASGI extensions the server offers on this connection (see ``_checkpoint``)."""
    return socket.scope.get("extensions") or {}


def _extension_function(socket: WebSocket[Any, Any, Any], name: str) -> Callable[..., Any] | None:
    """The function the server offers as the extension ``name``, or None."""
    function = _extensions(socket).get(name)
    return function if callable(function) else None


def end_handshake(socket: WebSocket[Any, Any, Any]) -> None:
    """Tell the server the client has passed the handshake, so its messages may be as
    large as the server's limit from now (``localevents serve``; see
    :data:`HANDSHAKE_DONE`)."""
    done = _extension_function(socket, HANDSHAKE_DONE)
    if done is not None:
        done()


async def mark_checkpoints(socket: WebSocket[Any, Any, Any]) -> bool:
    """Ask the server to mark where client pings stand (``localevents serve`` and the SDK's
    in-process transport can); whether it will."""
    if CHECKPOINT not in _extensions(socket):
        return False
    await socket.send({"type": CHECKPOINT})  # type: ignore[typeddict-item]
    return True


def queued_messages(socket: WebSocket[Any, Any, Any]) -> Callable[[], int] | None:
    """How to ask how many messages wait for the next receive, where the server says
    (``localevents serve``; see :data:`QUEUED`)."""
    return _extension_function(socket, QUEUED)


def raw_frame_writer(socket: WebSocket[Any, Any, Any]) -> Callable[[bytes], Awaitable[None]] | None:
    """How to write prebuilt frames to the connection as they are, where the server can
    (``localevents serve``; see :data:`RAW_FRAMES`)."""
    return _extension_function(socket, RAW_FRAMES)


def raw_frame_writer_now(socket: WebSocket[Any, Any, Any]) -> Callable[[bytes], bool] | None:
    """How to write prebuilt frames without waiting, where the server can (see
    :data:`RAW_FRAMES_NOW`): the function returns ``False`` when it cannot write now."""
    return _extension_function(socket, RAW_FRAMES_NOW)


def requested_subprotocols(scope: Mapping[str, Any]) -> list[str]:
    """Every subprotocol the client asked for, trimmed: from the ASGI scope's list and from
    every ``Sec-WebSocket-Protocol`` header (servers differ in which of the two they fill)."""
    found = [str(name) for name in scope.get("subprotocols") or ()]
    for name, value in scope.get("headers") or ():
        if name.lower() == b"sec-websocket-protocol":
            found += value.decode("latin-1").split(",")
    return [name.strip() for name in found if name.strip()]


class _TooLong:
    """An ``auth`` message over :data:`AUTH_MESSAGE_LIMIT`, refused unread."""


def _auth_message(frame: str | bytes) -> Any:
    """The ``auth`` message decoded; ``None`` when it is no JSON (or nested too deeply to
    read, or not UTF-8), :class:`_TooLong` when it is over the limit."""
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode(errors="surrogatepass"))
    if size > AUTH_MESSAGE_LIMIT:  # bytes: a text frame of 16K characters can be 64 KB
        return _TooLong()
    try:
        return decoded(msgspec.json.decode, frame)
    except msgspec.DecodeError:
        return None


def _auth_problem(message: Any, api_key: str | None) -> str | None:
    if isinstance(message, _TooLong):
        return f"The 'auth' message is over {AUTH_MESSAGE_LIMIT} bytes"
    if not isinstance(message, dict) or message.get("type") != "auth":
        return "Expected 'auth' message"
    if not api_key:
        return None
    token = message.get("token")
    if not token:
        return "Auth required but no token provided"
    if not isinstance(token, str) or not key_matches(token, api_key):
        return "Invalid token"
    return None


async def accept_prefect_socket(socket: WebSocket[Any, Any, Any], api_key: str | None) -> bool:
    """Run the handshake; ``True`` when the endpoint may proceed, ``False`` when the socket
    was refused or closed, or the client left (which is no error)."""
    try:
        return await _handshake(socket, api_key)
    except CLIENT_GONE:
        return False


async def _handshake(socket: WebSocket[Any, Any, Any], api_key: str | None) -> bool:
    if SUBPROTOCOL not in requested_subprotocols(socket.scope):
        if api_key:
            if socket.connection_state == "init":
                await socket.receive()  # websocket.connect: refuse only after it
            await close_socket(socket, PROTOCOL_ERROR)
            return False
        await socket.accept()
        return True
    await socket.accept(subprotocols=SUBPROTOCOL)
    frame = await receive_handshake_frame(socket, "auth")
    if frame is None:
        return False
    problem = _auth_problem(_auth_message(frame), api_key)
    if problem is not None:
        await close_socket(socket, POLICY_VIOLATION, problem)
        return False
    await socket.send_text(_AUTH_SUCCESS)
    return True
