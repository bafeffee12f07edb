"""The names of localevents' ASGI extensions (checkpoint, queued, raw frames), apart
from uvicorn.

``_ws_protocol`` (uvicorn's side) implements the extensions and ``_handshake`` (the app's
side) uses them; keeping the names here lets the app load without importing uvicorn.
"""

from __future__ import annotations

__all__ = (
    "CHECKPOINT",
    "HANDSHAKE_DONE",
    "HANDSHAKE_MESSAGE_LIMIT",
    "QUEUED",
    "RAW_FRAMES",
    "RAW_FRAMES_NOW",
)

CHECKPOINT = "localevents.checkpoint"
"""ASGI extension. An app that sends ``{"type": CHECKPOINT}`` is told where each client ping
stood among the frames, by a ``{"type": "websocket.receive", CHECKPOINT: True}`` message, and
the ping is answered on the app's next ``receive()``."""

QUEUED = "localevents.queued"
"""ASGI extension: a callable that says how many messages wait for the app's next
``receive()`` (0: it would wait). ``/api/events/in`` thereby tells a pause in a stream from
a busy one without arming a timer for every frame."""

RAW_FRAMES = "localevents.raw_frames"
"""ASGI extension: a coroutine function ``write(data)`` where ``data`` is one or more
complete, unmasked WebSocket frames (see ``_frames``); the server writes them to the
connection as they are, in order with everything else it sends, and raises
``ClientDisconnected`` once the connection is closing. The app calls it directly, not
through ``send``, so a live event's frames skip the middleware stack, which would only
pass them on."""

RAW_FRAMES_NOW = "localevents.raw_frames_now"
"""ASGI extension: a plain function ``write_now(data) -> bool``, :data:`RAW_FRAMES` without
the wait. It writes the frames and returns ``True`` when the connection is open and not
paused by flow control, and otherwise writes nothing and returns ``False`` (the caller then
waits through :data:`RAW_FRAMES`). Being synchronous, it can be called from a callback on
the event loop, outside any task: the live hub sends a waiting subscriber its few new
events that way without waking the subscriber's task."""

HANDSHAKE_MESSAGE_LIMIT = 1024 * 1024
"""Bytes the server reads of one WebSocket message until the app says its handshake is
done (:data:`HANDSHAKE_DONE`): what an ``auth`` or ``filter`` message may be. Over it, the
connection is closed with 1009 before the message is complete, so a client that has not
given the key cannot make the server hold the full message limit (16 MiB) per socket."""

HANDSHAKE_DONE = "localevents.handshake_done"
"""ASGI extension: a plain function the app calls once the client has passed the
handshake and may send messages up to the full limit (``/api/events/in``'s events); until
then :data:`HANDSHAKE_MESSAGE_LIMIT` applies."""
