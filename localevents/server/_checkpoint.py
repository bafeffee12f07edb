"""The name of the checkpoint ASGI extension, apart from uvicorn.

``_ws_protocol`` (uvicorn's side) implements the extension and ``_handshake`` (the app's
side) opts in to it; keeping the name here lets the app load without importing uvicorn.
"""

from __future__ import annotations

__all__ = ("CHECKPOINT",)

CHECKPOINT = "localevents.checkpoint"
"""ASGI extension. An app that sends ``{"type": CHECKPOINT}`` is told where each client ping
stood among the frames, by a ``{"type": "websocket.receive", CHECKPOINT: True}`` message, and
the ping is answered on the app's next ``receive()``."""
