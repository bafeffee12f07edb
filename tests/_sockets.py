"""Helpers for tests of the events WebSockets through httpx-ws."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from httpx_ws import WebSocketDisconnect

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

__all__ = ("closed",)

DEADLINE = 10.0
"""Seconds the server may take to close (a guard against hangs, not a timing)."""


async def closed(ws: AsyncWebSocketSession) -> WebSocketDisconnect:
    """Read until the server closes the socket; the close."""
    with anyio.fail_after(DEADLINE):
        while True:
            try:
                await ws.receive_text()
            except WebSocketDisconnect as close:
                return close
