"""A bare ASGI app for protocol tests, served by uvicorn with localevents' WebSocket
protocol: every HTTP request answers 200 (the health probe of ``_servers.spawn``), and a
WebSocket takes a number of seconds, holds off reading for that long (as
``/api/events/in`` does while its commit runs), says ``held``, then echoes one message."""

from __future__ import annotations

from typing import Any

import anyio


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app (see the module docstring)."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        seconds = float((await receive())["text"])
        await anyio.sleep(seconds)  # reading nothing meanwhile
        await send({"type": "websocket.send", "text": "held"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
            await send({"type": "websocket.close", "code": 1000})
