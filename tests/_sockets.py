"""Helpers for tests of the events WebSockets through httpx-ws."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
from httpx_ws import WebSocketDisconnect

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

__all__ = ("AUTH_SUCCESS", "STORAGE_DOWN", "closed", "took_the_handshake")

DEADLINE = 10.0
"""Seconds the server may take to close (a guard against hangs, not a timing)."""

AUTH_SUCCESS = {"type": "websocket.send", "text": json.dumps({"type": "auth_success"})}
"""A scripted app's answer to the auth message, as ASGI sends it."""

STORAGE_DOWN = {"type": "websocket.close", "code": 1011, "reason": "storage is down"}
"""A scripted app's refusal of a connection it cannot serve (a server error: retried)."""


async def took_the_handshake(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """For a scripted in-process app: ``False`` for anything but a WebSocket (it serves
    no lifespan); else accept it with the ``prefect`` subprotocol and read the auth
    message, left unanswered."""
    if scope["type"] != "websocket":
        return False
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "prefect"})
    await receive()  # the auth message
    return True


async def closed(ws: AsyncWebSocketSession) -> WebSocketDisconnect:
    """Read until the server closes the socket; the close."""
    with anyio.fail_after(DEADLINE):
        while True:
            try:
                await ws.receive_text()
            except WebSocketDisconnect as close:
                return close
