"""Endpoints that take what they are sent and drop it: the transport's limits.

    python -m benchmarks._sink --port P [--app asgi|litestar]

With ``asgi``, any HTTP request is read to the end of its body and answered 204 (the no-op
request of ``ingest_http`` and ``subscriber_latency``). Both serve ``/api/events/in`` (for
``ingest_ws``) under uvicorn with the protocol ``localevents serve`` uses
(:class:`CheckpointWSProtocol`: a pong once the app has taken every frame sent before the
ping), so a checkpointed producer measures the same thing against it as against the real
endpoint, minus the event work. ``asgi`` is a bare ASGI callable (uvicorn and wsproto
alone); ``litestar`` is a Litestar handler with localevents' own handshake and frame loop
(the framework's share), neither decoding nor storing. Both answer ``GET /api/ready``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import uvicorn
from litestar import Litestar, WebSocket, get, websocket

from localevents.server import CheckpointWSProtocol
from localevents.server._handshake import accept_prefect_socket, receive_frame

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ("APPS", "bare_app", "litestar_app", "main")

_Message = dict[str, Any]
_AUTH_SUCCESS = '{"type":"auth_success"}'


async def bare_app(
    scope: _Message,
    receive: Callable[[], Awaitable[_Message]],
    send: Callable[[_Message], Awaitable[None]],
) -> None:
    """Any HTTP request: read the whole body, answer 204. A WebSocket: accept with
    ``prefect``, take the auth message, answer ``auth_success``, then read frames until the
    client goes."""
    if scope["type"] == "http":
        while (await receive()).get("more_body", False):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "prefect"})
    await receive()  # the auth message: any token will do
    await send({"type": "websocket.send", "text": _AUTH_SUCCESS})
    while (await receive())["type"] == "websocket.receive":
        pass


@get("/api/ready", sync_to_thread=False)
def _ready() -> dict[str, str]:
    return {"status": "ready"}


@websocket("/api/events/in")
async def _drop_frames(socket: WebSocket[Any, Any, Any]) -> None:
    if not await accept_prefect_socket(socket, None):
        return
    while await receive_frame(socket) is not None:
        pass


def litestar_app() -> Litestar:
    """The Litestar sink: localevents' handshake, then frames read and dropped."""
    return Litestar(route_handlers=[_ready, _drop_frames], logging_config=None)


APPS: dict[str, Callable[[], Any]] = {"asgi": lambda: bare_app, "litestar": litestar_app}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the chosen sink on the loopback interface until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=sorted(APPS), default="asgi")
    args = parser.parse_args(argv)
    uvicorn.run(
        APPS[args.app](),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        ws=CheckpointWSProtocol,
    )


if __name__ == "__main__":
    main()
