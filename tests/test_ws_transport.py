"""The in-process WebSocket transport fixes httpx-ws 0.9's three bugs (DESIGN §3).

Each test also runs against the plain ``ASGIWebSocketTransport``, marked as a strict xfail, so
that it keeps proving the bug it guards against.
"""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from litestar import Litestar, WebSocket, websocket

from localevents.client._ws_transport import InProcessWebSocketTransport

if TYPE_CHECKING:
    from litestar.handlers import WebsocketRouteHandler


def _transports(*plain_marks: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """Parametrize ``transport_class``: ours passes, httpx-ws's fails an assertion."""
    xfail = pytest.mark.xfail(raises=AssertionError, strict=True, reason="httpx-ws 0.9 bug")
    plain = pytest.param(ASGIWebSocketTransport, id="httpx-ws", marks=[xfail, *plain_marks])
    ours = pytest.param(InProcessWebSocketTransport, id="ours")
    return pytest.mark.parametrize("transport_class", [ours, plain])


def _client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _echo_route(name: str) -> WebsocketRouteHandler:
    """A handler at ``/name`` that accepts, sends its name and closes."""

    @websocket(f"/{name}")
    async def echo(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        await socket.send_text(name)
        await socket.close()

    return echo


def _app(*handlers: WebsocketRouteHandler) -> Litestar:
    return Litestar(route_handlers=list(handlers), logging_config=None)


@_transports()
async def test_concurrent_connects_each_reach_their_own_route(transport_class: type[Any]) -> None:
    """40 concurrent connects to three routes each reach the route they asked for."""
    routes = ("a", "b", "c")
    app = _app(*(_echo_route(route) for route in routes))
    reached: list[tuple[str, str]] = []

    async def connect(client: httpx.AsyncClient, route: str) -> None:
        async with aconnect_ws(f"/{route}", client) as ws:
            reached.append((route, await ws.receive_text()))

    with anyio.fail_after(10):
        async with _client(transport_class(app)) as client, anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(connect, client, routes[i % len(routes)])

    assert len(reached) == 40
    assert [(asked, got) for asked, got in reached if asked != got] == []


# httpx-ws never closes the queues of a session whose handshake timed out.
@_transports(pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"))
async def test_app_that_never_accepts_fails_the_connect_and_leaves_no_task(
    transport_class: type[Any],
) -> None:
    """An app that never accepts: the connect raises, its task ends, the client exits promptly."""
    app_task_ended = anyio.Event()

    @websocket("/silent")
    async def never_accepts(socket: WebSocket[Any, Any, Any]) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            app_task_ended.set()

    transport = transport_class(_app(never_accepts), initial_receive_timeout=0.1)
    with anyio.fail_after(10):
        with anyio.move_on_after(1) as exit_deadline:
            async with _client(transport) as client:
                with pytest.raises(RuntimeError, match="didn't accept the connection in time"):
                    async with aconnect_ws("/silent", client):
                        pass
                ended_with_the_connect = app_task_ended.is_set()
        gc.collect()  # unclosed streams, if any, warn now, in this test
        assert not exit_deadline.cancelled_caught, "the client's exit waited on the app task"
        assert ended_with_the_connect


@_transports()
async def test_finished_sessions_are_released_before_the_client_closes(
    transport_class: type[Any],
) -> None:
    """Sessions opened and closed in turn are not kept alive until the client closes."""
    sessions: list[weakref.ref[object]] = []
    with anyio.fail_after(10):
        async with _client(transport_class(_app(_echo_route("a")))) as client:
            for _ in range(10):
                async with aconnect_ws("/a", client) as ws:
                    assert await ws.receive_text() == "a"
                    sessions.append(weakref.ref(ws.stream))
            del ws
            gc.collect()
            alive = sum(ref() is not None for ref in sessions)
    assert alive == 0


async def test_live_sessions_holds_only_open_sessions() -> None:
    """``live_sessions`` lists a session while it is open and forgets it once closed."""
    transport = InProcessWebSocketTransport(_app(_echo_route("a")))
    with anyio.fail_after(10):
        async with _client(transport) as client:
            for _ in range(5):
                async with aconnect_ws("/a", client) as ws:
                    assert transport.live_sessions == {ws.stream}
                assert transport.live_sessions == frozenset()


@_transports()
async def test_app_that_ignores_the_disconnect_is_cancelled(transport_class: type[Any]) -> None:
    """An app that keeps running after the client disconnects does not hang the client's exit."""

    @websocket("/deaf")
    async def ignores_disconnect(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        await anyio.sleep_forever()

    # ours cancels the app once it has taken nothing for close_timeout: a short one here
    options = {"close_timeout": 0.2} if transport_class is InProcessWebSocketTransport else {}
    with anyio.fail_after(10):
        with anyio.move_on_after(1.5) as exit_deadline:
            async with (
                _client(transport_class(_app(ignores_disconnect), **options)) as client,
                aconnect_ws("/deaf", client),
            ):
                pass
        assert not exit_deadline.cancelled_caught, "the client's exit waited on the app task"
