"""Requests to an app that holds no open store: refused with 503 (HTTP) or 1013 (WebSockets)
and the reason, not an internal error; nothing is stored."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from httpx_ws import WebSocketDisconnect

from localevents import Event, EventSubscriber, WebSocketEventsClient
from localevents.client import _websocket
from localevents.client._connection import Connection
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.server import create_app
from localevents.server._state import NOT_OPEN

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from litestar import Litestar

ID = "prefect.resource.id"
EVENT = {
    "occurred": datetime.now(UTC).isoformat(),
    "event": "acme.widget.made",
    "resource": {ID: "acme.widget.1"},
    "id": str(uuid.uuid4()),
}
REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "events", [EVENT]),
    ("POST", "events/filter", {}),
    ("POST", "events/count-by/event", {"filter": {}}),
    ("POST", "events/export", {}),
    ("GET", "ready", None),
]


@contextlib.asynccontextmanager
async def client_of(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` that does not run its lifespan (as ``uvicorn --lifespan off``)."""
    transport = InProcessWebSocketTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/") as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
async def test_a_request_to_an_app_whose_lifespan_never_ran_is_refused_with_503(
    tmp_path: Path, method: str, path: str, body: Any
) -> None:
    """The answer says why (not "Internal Server Error"), and no events file appears."""
    app = create_app(database=str(tmp_path / "events.duckdb"), docs=False)
    async with client_of(app) as client:
        answer = await client.request(method, path, json=body)
    assert answer.status_code == 503
    assert answer.json()["detail"] == NOT_OPEN
    assert not (tmp_path / "events.duckdb").exists()


async def test_a_request_after_the_lifespan_ended_is_refused_with_503(tmp_path: Path) -> None:
    """An app serves while its lifespan holds the store, and refuses once it has let go."""
    app = create_app(database=str(tmp_path / "events.duckdb"), docs=False)
    async with client_of(app) as client:
        async with app.lifespan():
            assert (await client.post("events", json=[EVENT])).status_code == 204
        answer = await client.post("events/filter", json={})
        assert (answer.status_code, answer.json()["detail"]) == (503, NOT_OPEN)
        async with app.lifespan():
            assert (await client.post("events/filter", json={})).json()["total"] == 1


class WithoutLifespan:
    """``app`` as an ASGI server run without the lifespan serves it: the lifespan messages
    are answered here, and the app's own lifespan never runs."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


@pytest.mark.parametrize("side", ["producer", "subscriber"])
async def test_the_sdks_sockets_to_an_app_whose_lifespan_never_ran_end_with_1013(
    tmp_path: Path, side: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1013 is "try again later": the SDK's producer and subscriber read it after their
    handshake, reconnect on it, and give up with its reason once their budget is spent
    (closed before the handshake, they waited out a 30 s handshake timeout instead)."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    app = WithoutLifespan(create_app(database=str(tmp_path / "events.duckdb"), docs=False))
    connection = Connection(api_url="http://test/api", app=app)

    async def use() -> None:
        if side == "producer":
            async with WebSocketEventsClient(connection=connection, reconnection_attempts=1) as c:
                await c.emit(Event(event="acme.made", resource={ID: "acme.widget.1"}))
        else:
            async with EventSubscriber(connection=connection, reconnection_attempts=1) as s:
                await s.__anext__()

    with anyio.fail_after(10), pytest.raises(WebSocketDisconnect) as close:
        await use()
    assert (close.value.code, close.value.reason) == (1013, NOT_OPEN)
    assert not (tmp_path / "events.duckdb").exists()


async def test_a_503_is_logged_as_one_warning_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal the server explains is a warning line, not an error with a traceback (a
    client retrying a closed store printed one screen per attempt)."""
    app = create_app(database=str(tmp_path / "events.duckdb"), docs=False)
    with caplog.at_level("WARNING", logger="localevents.server"):
        async with client_of(app) as client:
            assert (await client.post("events/filter", json={})).status_code == 503
    (record,) = [r for r in caplog.records if r.name == "localevents.server"]
    assert (record.levelname, record.getMessage()) == ("WARNING", f"request refused: {NOT_OPEN}")
    assert record.exc_info is None
