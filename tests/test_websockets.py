"""The events WebSockets (SPEC B §4 with D3, D5, D7-D9, D12) and the live hub behind them.

In-process tests run the real app (its lifespan holding a DuckDB file in ``tmp_path``)
through the in-process WebSocket transport, on asyncio and on trio. The tests that need a
real network (HTTP 403 on refusal, TCP backpressure from a subscriber that stops reading,
a crash, pongs) run a real uvicorn in a subprocess.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import socket as socket_module
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
import wsproto
from _servers import free_port, serve, spawn, uvicorn_command
from _sockets import closed
from httpx_ws import WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws

from localevents._settings import Settings, get_settings, temporary_settings
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.events._filters import EventFilter, EventNameFilter, EventOccurredFilter
from localevents.events._schemas import ReceivedEvent
from localevents.server import _backfill, create_app
from localevents.server._handshake import close_reason, requested_subprotocols
from localevents.server._hub import FellBehind, LiveHub, live_hub
from localevents.server._live_match import LiveEvent, live_event
from localevents.server._websockets import frames_sender, subscription_filter
from localevents.storage._engine import open_store, release
from localevents.storage._rows import EncodedEvents

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
    from pathlib import Path

    from httpx_ws import AsyncWebSocketSession
    from litestar import Litestar

SMALL_QUEUE = {"LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE": "1000"}  # fills fast
BASE_URL = "http://test/api/"
WIRE_KEYS = ["occurred", "event", "resource", "related", "payload", "id", "follows", "received"]
DEADLINE = 10.0
"""Seconds a step may take before the test fails (a guard against hangs, not a timing)."""


# -- helpers -------------------------------------------------------------------------------


def make_event(**changes: Any) -> dict[str, Any]:
    """A valid event as JSON occurring now, with ``changes`` applied."""
    event: dict[str, Any] = {
        "occurred": datetime.now(UTC).isoformat(),
        "event": "ws.made",
        "resource": {"prefect.resource.id": "acme.widget.1"},
        "id": str(uuid.uuid4()),
    }
    event.update(changes)
    return event


def received(event: dict[str, Any]) -> ReceivedEvent:
    """An event's JSON as a ReceivedEvent (received now)."""
    return msgspec.json.decode(json.dumps(event), type=ReceivedEvent)


def ago(**delta: float) -> str:
    """An ISO instant ``delta`` before now."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


@contextlib.asynccontextmanager
async def open_app(
    tmp_path: Path, settings: Settings | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Litestar]]:
    """A client of a fresh app over ``tmp_path/events.duckdb`` (HTTP and WebSockets)."""
    app = create_app(settings, database=str(tmp_path / "events.duckdb"), docs=False)
    transport = InProcessWebSocketTransport(app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c, app


@contextlib.asynccontextmanager
async def open_socket(
    client: httpx.AsyncClient, url: str, *, token: str | None = None, **options: Any
) -> AsyncIterator[AsyncWebSocketSession]:
    """A socket past the ``prefect`` handshake."""
    async with aconnect_ws(url, client, subprotocols=["prefect"], **options) as ws:
        await ws.send_json({"type": "auth", "token": token})
        assert await ws.receive_json(timeout=DEADLINE) == {"type": "auth_success"}
        yield ws


@contextlib.asynccontextmanager
async def subscribe(
    client: httpx.AsyncClient,
    event_filter: dict[str, Any],
    *,
    backfill: bool = True,
    after: str | None = None,
    url: str = "events/out",
    **options: Any,
) -> AsyncIterator[AsyncWebSocketSession]:
    """A subscription to ``/events/out`` with ``event_filter`` (resuming ``after`` a
    position, if given)."""
    async with open_socket(client, url, **options) as ws:
        message = {"type": "filter", "filter": event_filter, "backfill": backfill}
        await ws.send_json(message if after is None else {**message, "after": after})
        yield ws


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (it depends on another thread or task)."""
    with anyio.fail_after(DEADLINE):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)


async def wait_subscribed(app: Litestar, count: int = 1) -> None:
    """Wait until the app's store has ``count`` live subscribers."""
    hub = live_hub(app.state.store)
    await eventually(lambda: hub.subscriber_count >= count)


async def receive_events(ws: AsyncWebSocketSession, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a subscription (their envelopes checked)."""
    events = []
    for _ in range(count):
        message = json.loads(await ws.receive_text(timeout=DEADLINE))
        assert message["type"] == "event"
        assert list(message) in (["type", "event"], ["type", "event", "position"])
        events.append(message["event"])
    return events


async def receive_positioned(ws: AsyncWebSocketSession, count: int) -> list[tuple[str, str]]:
    """The next ``count`` events of a subscription that says where each stands: each one's
    name and position."""
    messages = [json.loads(await ws.receive_text(timeout=DEADLINE)) for _ in range(count)]
    return [(message["event"]["event"], message["position"]) for message in messages]


def seqs(positioned: list[tuple[str, str]]) -> list[int]:
    """The store order numbers of positioned events (all from one store)."""
    streams = {at.partition(":")[0] for _, at in positioned}
    assert len(streams) == 1
    return [int(at.partition(":")[2]) for _, at in positioned]


async def refusal(client: httpx.AsyncClient, url: str, **options: Any) -> BaseException:
    """The error of a connect that fails (unwrapped from single-member groups)."""
    try:
        with anyio.fail_after(DEADLINE):
            async with aconnect_ws(url, client, **options):
                pass
    except Exception as exc:
        error: BaseException = exc
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        return error
    raise AssertionError("the connection was accepted")


async def post(client: httpx.AsyncClient, url: str, events: list[dict[str, Any]]) -> None:
    """Store events over HTTP."""
    response = await client.post(url, json=events)
    assert response.status_code == 204, response.text


async def stored(client: httpx.AsyncClient, url: str = "events/filter") -> list[dict[str, Any]]:
    """Every stored event from 2000 to 2100, oldest first."""
    window = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    body = {"filter": {"occurred": window, "order": "ASC"}, "limit": 1000}
    response = await client.post(url, json=body)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def ids(events: list[dict[str, Any]]) -> list[str]:
    """The ids of events, in order."""
    return [event["id"] for event in events]


# -- the handshake ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_without_subprotocol_and_without_key_the_socket_runs_in_legacy_mode(
    tmp_path: Path, path: str
) -> None:
    """No ``prefect`` subprotocol and no key: accepted, no handshake, the endpoint starts."""
    event = make_event()
    async with open_app(tmp_path) as (client, _):
        if path == "events/in":
            async with aconnect_ws(path, client) as ws:
                await ws.send_json(event)
                await ws.send_text("{}")  # invalid: its close proves the first was stored
                assert (await closed(ws)).code == 1007
            assert ids(await stored(client)) == [event["id"]]
        else:
            await post(client, "events", [event])
            async with aconnect_ws(path, client) as ws:
                assert ws.subprotocol is None
                await ws.send_json({"type": "filter", "filter": {}})
                assert ids(await receive_events(ws, 1)) == [event["id"]]


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_without_subprotocol_a_server_with_a_key_refuses_with_1002(
    tmp_path: Path, path: str
) -> None:
    """No ``prefect`` subprotocol while a key is set: closed with 1002 before accepting."""
    async with open_app(tmp_path, Settings(api_key="s3cret")) as (client, _):
        error = await refusal(client, path)
    assert isinstance(error, WebSocketDisconnect)
    assert error.code == 1002


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_a_first_message_other_than_auth_closes_with_1008(tmp_path: Path, path: str) -> None:
    """With the subprotocol, a first message that is not ``auth`` closes with 1008."""
    async with (
        open_app(tmp_path) as (client, _),
        aconnect_ws(path, client, subprotocols=["prefect"]) as ws,
    ):
        assert ws.subprotocol == "prefect"
        await ws.send_json({"type": "filter", "filter": {}})
        close = await closed(ws)
    assert (close.code, close.reason) == (1008, "Expected 'auth' message")


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_a_client_that_never_authenticates_is_closed_with_1013(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket that sends no ``auth`` within the handshake timeout is closed with 1013
    ("try again later", not a refused key) saying so, instead of holding its connection
    for ever."""
    import localevents.server._handshake as handshake

    monkeypatch.setattr(handshake, "HANDSHAKE_TIMEOUT_S", 0.2)
    async with (
        open_app(tmp_path) as (client, _),
        aconnect_ws(path, client, subprotocols=["prefect"]) as ws,
    ):
        close = await closed(ws)
    assert (close.code, close.reason) == (1013, "No 'auth' message within 0.2 s")


async def test_a_subscriber_that_never_sends_its_filter_is_closed_with_1013(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``auth``, a subscriber that sends no ``filter`` within the handshake timeout
    is closed with 1013 saying so."""
    import localevents.server._handshake as handshake

    monkeypatch.setattr(handshake, "HANDSHAKE_TIMEOUT_S", 0.2)
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/out") as ws:
        close = await closed(ws)
    assert (close.code, close.reason) == (1013, "No 'filter' message within 0.2 s")


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        pytest.param({"type": "auth"}, "Auth required but no token provided", id="missing"),
        pytest.param(
            {"type": "auth", "token": None}, "Auth required but no token provided", id="null"
        ),
        pytest.param(
            {"type": "auth", "token": ""}, "Auth required but no token provided", id="empty"
        ),
        pytest.param({"type": "auth", "token": "wrong"}, "Invalid token", id="wrong"),
        pytest.param({"type": "auth", "token": 12345}, "Invalid token", id="not-a-string"),
    ],
)
async def test_a_bad_token_closes_with_1008_and_the_reason(
    tmp_path: Path, auth: dict[str, Any], reason: str
) -> None:
    """With a key set, a missing, empty or wrong token closes with 1008 and says which."""
    async with (
        open_app(tmp_path, Settings(api_key="s3cret")) as (client, _),
        aconnect_ws("events/in", client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_json(auth)
        close = await closed(ws)
    assert (close.code, close.reason) == (1008, reason)


@pytest.mark.parametrize(("key", "token"), [("s3cret", "s3cret"), (None, None), (None, "anything")])
async def test_the_right_token_or_no_key_gets_auth_success(
    tmp_path: Path, key: str | None, token: str | None
) -> None:
    """The configured key (or, without one, any token) answers ``auth_success``."""
    async with (
        open_app(tmp_path, Settings(api_key=key)) as (client, _),
        aconnect_ws("events/out", client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_json({"type": "auth", "token": token})
        assert await ws.receive_json(timeout=DEADLINE) == {"type": "auth_success"}


def test_requested_subprotocols_come_from_every_header_and_the_scope() -> None:
    """Subprotocols are collected from every ``Sec-WebSocket-Protocol`` header, trimmed."""
    scope = {
        "subprotocols": [" graphql-ws"],
        "headers": [
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"host", b"test"),
            (b"Sec-WebSocket-Protocol", b" prefect "),
        ],
    }
    assert requested_subprotocols(scope) == ["graphql-ws", "chat", "superchat", "prefect"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("short", "short", id="short"),
        pytest.param("a" * 123, "a" * 123, id="exactly-123"),
        pytest.param("a" * 200, "a" * 123, id="ascii"),
        pytest.param("a" + "€" * 60, "a" + "€" * 40, id="cut-inside-a-character"),
        pytest.param("\ud800", "?", id="lone-surrogate"),
    ],
)
def test_close_reasons_are_cut_to_123_bytes_at_a_character_boundary(
    text: str, expected: str
) -> None:
    """A close reason is at most 123 UTF-8 bytes and never ends in half a character."""
    assert close_reason(text) == expected
    assert len(close_reason(text).encode()) <= 123


# -- /events/in ------------------------------------------------------------------------------


async def test_frames_are_stored_once_each_in_order(tmp_path: Path) -> None:
    """Each frame is one event, stored before the next is read; a repeated id is stored once."""
    first, second = make_event(event="ws.first"), make_event(event="ws.second")
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            for event in (first, second, first):
                await ws.send_text(json.dumps(event))
            await ws.send_text("not json")  # its close proves every frame before it was stored
            close = await closed(ws)
        events = await stored(client)
    assert close.code == 1007
    assert sorted(ids(events)) == sorted([first["id"], second["id"]])
    assert all(list(event) == WIRE_KEYS for event in events)


async def test_an_invalid_frame_closes_with_1007_naming_the_event(tmp_path: Path) -> None:
    """A frame that breaks a rule closes with 1007 and a reason naming its id; it is not stored."""
    bad = make_event(resource={"acme.color": "red"})
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            await ws.send_json(bad)
            close = await closed(ws)
        assert await stored(client) == []
    assert close.code == 1007
    assert close.reason == (
        f"invalid event {bad['id']}: Resources must include the prefect.resource.id label "
        "(at $.resource)"
    )


async def test_an_instant_past_the_calendar_in_utc_closes_with_1007_after_storing_the_rest(
    tmp_path: Path,
) -> None:
    """``9999-12-31T23:00:00-05:00`` is a valid instant that UTC cannot hold: the frame is
    refused with 1007 naming its event (it closed with 4500, and the frames sent before it
    were lost), and the frames before it are stored."""
    good = [make_event(event=f"ws.good.{i}") for i in range(5)]
    late = make_event(occurred="9999-12-31T23:00:00-05:00")
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            for event in [*good, late]:
                await ws.send_json(event)
            close = await closed(ws)
        events = await stored(client)
    assert close.code == 1007
    assert close.reason == (
        f"invalid event {late['id']}: the instant is outside years 1-9999 in UTC (at $.occurred)"
    )
    assert sorted(ids(events)) == sorted(event["id"] for event in good)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param("{not json", "invalid event: the frame is not valid JSON", id="not-json"),
        pytest.param("[]", "invalid event: Expected `object`, got `array`", id="not-an-object"),
        pytest.param(
            json.dumps({**make_event(), "id": "nope"}), "invalid event: Invalid UUID", id="bad-id"
        ),
    ],
)
async def test_a_frame_without_a_readable_id_closes_with_1007(
    tmp_path: Path, frame: str, reason: str
) -> None:
    """A frame whose id cannot be read still closes with 1007 and says what is wrong."""
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/in") as ws:
        await ws.send_text(frame)
        close = await closed(ws)
    assert close.code == 1007
    assert close.reason.startswith(reason)


DEEP = "[" * 20_000 + "]" * 20_000
"""JSON nested deeper than the decoder reads (it raised RecursionError: a close with 4500
and a traceback in the log): about 1000 levels on Python 3.11 and 3.12, 9999 on 3.13."""


@pytest.mark.parametrize(
    ("path", "message", "expected"),
    [
        pytest.param(
            "events/in",
            f'{{"payload": {{"a": {DEEP}}}}}',
            (1007, "invalid event: the frame is not valid JSON: it is nested too deeply to read"),
            id="event-frame",
        ),
        pytest.param(
            "events/out",
            f'{{"type": "filter", "filter": {DEEP}}}',
            (
                1002,
                "Invalid filter: the message is not valid JSON: it is nested too deeply to read",
            ),
            id="filter",
        ),
    ],
)
async def test_a_message_nested_too_deeply_is_refused_as_unreadable(
    tmp_path: Path, path: str, message: str, expected: tuple[int, str]
) -> None:
    """An event frame or a subscriber's filter nested thousands of levels deep is refused as
    unreadable JSON, as other bad frames and filters are."""
    async with open_app(tmp_path) as (client, _), open_socket(client, path) as ws:
        await ws.send_text(message)
        close = await closed(ws)
    assert (close.code, close.reason) == expected


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(
            json.dumps({"type": "auth", "token": "k" * 17_000}),
            "The 'auth' message is over 16384 bytes",
            id="too-long",
        ),
        pytest.param(
            json.dumps({"type": "auth", "token": "é" * 12_000}, ensure_ascii=False),
            "The 'auth' message is over 16384 bytes",
            id="too-many-bytes-in-fewer-characters",
        ),
        # within the 16 KiB: too deep for 3.11 and 3.12, read (and refused alike) on 3.13
        pytest.param("[" * 5000 + "]" * 5000, "Expected 'auth' message", id="too-deep"),
    ],
)
async def test_an_auth_message_too_long_or_too_deep_closes_with_1008(
    tmp_path: Path, message: str, reason: str
) -> None:
    """An ``auth`` message over 16 KiB (of UTF-8, not characters) is refused unread, and one
    nested too deeply as no
    ``auth`` message: neither is decoded into memory nor ends in an internal error."""
    async with (
        open_app(tmp_path) as (client, _),
        aconnect_ws("events/in", client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_text(message)
        close = await closed(ws)
    assert (close.code, close.reason) == (1008, reason)


def latin1(message: dict[str, Any]) -> bytes:
    """``message`` as JSON whose ``é`` are Latin-1 bytes, not UTF-8."""
    return json.dumps(message, ensure_ascii=False).encode("latin-1")


async def test_an_event_frame_that_is_not_utf8_closes_with_1007(tmp_path: Path) -> None:
    """A binary frame whose event name is Latin-1 closes with 1007 naming the event and the
    byte (it closed with 4500, a traceback in the log); the event before it is stored."""
    good, bad = make_event(), make_event(event="acme.café")
    frame = latin1(bad)
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            await ws.send_json(good)
            await ws.send_bytes(frame)
            close = await closed(ws)
        assert ids(await stored(client)) == [good["id"]]
    at = frame.index(b"\xe9")
    assert close.code == 1007
    assert close.reason == (
        f"invalid event {bad['id']}: the frame is not valid JSON: JSON is malformed: "
        f"invalid UTF-8 (byte {at})"
    )


async def test_a_payload_that_is_not_utf8_closes_with_1007(tmp_path: Path) -> None:
    """A frame whose payload holds Latin-1 bytes closes with 1007 naming the event (the
    store's commit refused it: a close 1011)."""
    good, bad = make_event(), make_event(payload={"note": "café"})
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            await ws.send_json(good)
            await ws.send_bytes(latin1(bad))
            close = await closed(ws)
        assert ids(await stored(client)) == [good["id"]]
    assert close.code == 1007
    assert close.reason.startswith(  # the payload as sent: {"note": "caf\xe9"}
        f"invalid event {bad['id']}: JSON is malformed: invalid UTF-8 (byte 13 of the payload)"
    )


async def test_a_filter_that_is_not_utf8_closes_with_1002(tmp_path: Path) -> None:
    """A subscriber's filter message holding Latin-1 text is refused as unreadable JSON (it
    closed with 4500)."""
    message = latin1({"type": "filter", "filter": {"event": {"name": ["acme.café"]}}})
    at = message.index(b"\xe9")
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/out") as ws:
        await ws.send_bytes(message)
        close = await closed(ws)
    assert (close.code, close.reason) == (
        1002,
        "Invalid filter: the message is not valid JSON: JSON is malformed: invalid UTF-8 "
        f"(byte {at})",
    )


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_an_auth_message_that_is_not_utf8_closes_with_1008(tmp_path: Path, path: str) -> None:
    """An ``auth`` message whose token is Latin-1 is no ``auth`` message (it closed with
    4500, a traceback in the log)."""
    async with (
        open_app(tmp_path) as (client, _),
        aconnect_ws(path, client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_bytes(latin1({"type": "auth", "token": "clé"}))
        close = await closed(ws)
    assert (close.code, close.reason) == (1008, "Expected 'auth' message")


async def test_a_frame_whose_payload_is_not_an_object_closes_with_1007(tmp_path: Path) -> None:
    """The payload must be a JSON object; a number is refused, naming the event."""
    event = make_event(payload=12)
    async with open_app(tmp_path) as (client, _):
        async with open_socket(client, "events/in") as ws:
            await ws.send_json(event)
            close = await closed(ws)
        assert await stored(client) == []
    assert close.code == 1007
    assert close.reason == (
        f"invalid event {event['id']}: Expected `object`, got `number` (at $.payload)"
    )


async def test_a_frame_over_the_size_limit_closes_with_1007(tmp_path: Path) -> None:
    """A frame longer than the event size limit is refused (D13), naming the event."""
    event = make_event(payload={"pad": "x" * 2_000})
    settings = Settings(events_maximum_size_bytes=1_000)
    async with open_app(tmp_path, settings) as (client, _):
        async with open_socket(client, "events/in") as ws:
            await ws.send_json(event)
            close = await closed(ws)
        assert await stored(client) == []
    assert close.code == 1007
    assert close.reason.startswith(f"invalid event {event['id']}: the frame is ")
    assert "over the limit of 1000" in close.reason


async def test_a_long_close_reason_is_cut_at_a_character_boundary(tmp_path: Path) -> None:
    """A reason longer than 123 bytes reaches the client cut, at a character boundary."""
    label = "€" * 40  # 3 bytes each: the 123-byte cut falls inside one
    event = make_event(resource={"prefect.resource.id": "acme.1", label: 7})
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/in") as ws:
        await ws.send_json(event)
        close = await closed(ws)
    prefix = f"invalid event {event['id']}: label '"
    assert close.code == 1007
    assert close.reason == prefix + "€" * ((123 - len(prefix.encode())) // 3)


# -- /events/out: the subscription request ------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(
            {"type": "filter", "filter": {"bogus": 1}},
            "Invalid filter: Object contains unknown field `bogus`",
            id="unknown-field",
        ),
        pytest.param(
            {"type": "filter", "filter": {"occurred": {"since": "yesterday"}}},
            "Invalid filter: Invalid RFC3339 encoded datetime",
            id="bad-datetime",
        ),
        pytest.param("{oops", "Invalid filter: the message is not valid JSON", id="not-json"),
        pytest.param(
            {"type": "filter", "filter": {}, "after": "0123456789abcdef:-1"},
            "'after' must be \"start\" or the position of an event this server sent, not "
            "'0123456789abcdef:-1'",
            id="bad-position",
        ),
        pytest.param({"type": "subscribe"}, "Expected 'filter' message", id="wrong-type"),
        pytest.param(["filter"], "Expected 'filter' message", id="not-an-object"),
    ],
)
async def test_a_bad_subscription_request_closes_with_1002(
    tmp_path: Path, message: Any, reason: str
) -> None:
    """A first message that is not a valid filter message closes with 1002 and says why."""
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/out") as ws:
        await ws.send_text(message if isinstance(message, str) else json.dumps(message))
        close = await closed(ws)
    assert close.code == 1002
    assert close.reason.startswith(reason)
    assert len(close.reason.encode()) <= 123


async def test_an_overlong_invalid_filter_reason_is_cut(tmp_path: Path) -> None:
    """An invalid-filter reason over 123 bytes is cut (Prefect's overflows the close frame)."""
    message = {"type": "filter", "filter": {"occurred": {"since": "ü" * 200}}}
    async with open_app(tmp_path) as (client, _), open_socket(client, "events/out") as ws:
        await ws.send_json(message)
        close = await closed(ws)
    assert close.code == 1002
    assert close.reason.startswith("Invalid filter: ")
    assert len(close.reason.encode()) <= 123


# -- /events/out: backfill and live --------------------------------------------------------------


async def test_backfill_sends_the_window_oldest_first_within_the_backfill_limit(
    tmp_path: Path,
) -> None:
    """Backfill sends stored events oldest first, in pages, no older than the backfill limit."""
    too_old = make_event(event="ws.old", occurred=ago(minutes=20))
    newest = make_event(event="ws.new", occurred=ago(minutes=1))
    middle = make_event(event="ws.mid", occurred=ago(minutes=5))
    oldest = make_event(event="ws.early", occurred=ago(minutes=10))
    other = make_event(event="other.thing", occurred=ago(minutes=3))
    settings = Settings(events_websocket_backfill_page_size=2)
    async with open_app(tmp_path, settings) as (client, _):
        await post(client, "events", [too_old, newest, middle, other, oldest])
        wanted = {"occurred": {"since": ago(hours=1)}, "event": {"prefix": ["ws."]}}
        async with subscribe(client, wanted) as ws:
            backfilled = await receive_events(ws, 3)
            live = make_event(event="ws.live")
            await post(client, "events", [live])
            [after] = await receive_events(ws, 1)
    assert ids(backfilled) == [oldest["id"], middle["id"], newest["id"]]
    assert after["id"] == live["id"]


async def test_live_events_say_where_they_stand_in_the_stores_order(tmp_path: Path) -> None:
    """Each live event carries its position: the store's id and the event's number in the
    order the store took the events, one after another across commits."""
    async with open_app(tmp_path) as (client, _):
        await post(client, "events", [make_event(event="ws.stored")])
        async with subscribe(client, {"event": {"prefix": ["ws."]}}) as ws:
            await receive_events(ws, 1)  # the backfill is done: what follows comes live
            await post(client, "events", [make_event(event=f"ws.{i}") for i in range(3)])
            await post(client, "events", [make_event(event="ws.3"), make_event(event="other")])
            await post(client, "events", [make_event(event="ws.4")])
            positioned = await receive_positioned(ws, 5)
    assert [name for name, _ in positioned] == [f"ws.{i}" for i in range(5)]
    assert seqs(positioned) == [1, 2, 3, 4, 6]  # "ws.stored" was number 0, "other" 5


async def test_a_subscriber_resuming_after_a_position_gets_what_was_stored_after_it(
    tmp_path: Path,
) -> None:
    """Resuming ``after`` the position of the last event it got, a subscriber is sent the
    events of its window stored after that one, in the order they were stored, whatever
    their ``occurred``, each with its position; then the live ones."""
    settings = Settings(events_websocket_backfill_page_size=2)
    async with open_app(tmp_path, settings) as (client, _):
        wanted = {"occurred": {"since": ago(minutes=10)}, "event": {"prefix": ["ws."]}}
        await post(client, "events", [make_event(event="ws.stored")])
        async with subscribe(client, wanted) as ws:
            await receive_events(ws, 1)  # the backfill is done: what follows comes live
            await post(client, "events", [make_event(event="ws.seen")])
            [(_, last)] = await receive_positioned(ws, 1)
        missed = [
            make_event(event="ws.a", occurred=ago(minutes=1)),
            make_event(event="ws.b", occurred=ago(minutes=8)),  # a backlog sent late
            make_event(event="ws.too-old", occurred=ago(minutes=20)),  # outside the window
            make_event(event="ws.c", occurred=ago(minutes=4)),
            make_event(event="ws.d", occurred=ago(seconds=1)),
        ]
        for event in missed:
            await post(client, "events", [event])
        async with subscribe(client, wanted, after=last) as ws:
            resumed = await receive_positioned(ws, 4)
            await post(client, "events", [make_event(event="ws.live")])
            [live] = await receive_positioned(ws, 1)
    assert [name for name, _ in resumed] == ["ws.a", "ws.b", "ws.c", "ws.d"]
    assert seqs([("ws.seen", last), *resumed, live]) == [1, 2, 3, 5, 6, 7]


@pytest.mark.parametrize("after", ["0123456789abcdef:1", "start"], ids=["foreign", "start"])
async def test_a_position_in_another_store_resumes_from_the_start_of_the_window(
    tmp_path: Path, after: str
) -> None:
    """A position the store does not recognise (another file's, say) is no reason to skip
    anything, and ``"start"`` asks for everything: the whole window is sent, in the order
    the store took it, with positions."""
    async with open_app(tmp_path) as (client, _):
        await post(client, "events", [make_event(event="ws.1", occurred=ago(minutes=1))])
        await post(client, "events", [make_event(event="ws.2", occurred=ago(minutes=5))])
        async with subscribe(client, {"event": {"prefix": ["ws."]}}, after=after) as ws:
            resumed = await receive_positioned(ws, 2)
    assert [name for name, _ in resumed] == ["ws.1", "ws.2"]
    assert seqs(resumed) == [0, 1]


async def test_a_position_past_what_the_store_holds_resumes_from_the_start_of_the_window(
    tmp_path: Path,
) -> None:
    """A position of this store beyond its newest event (the file was restored from a
    backup older than the subscriber's last event) skips nothing either: the events the
    restored file takes next get the seqs the subscriber already went past."""
    async with open_app(tmp_path) as (client, _):
        await post(client, "events", [make_event(event="ws.1")])
        async with subscribe(client, {"event": {"prefix": ["ws."]}}, after="start") as ws:
            [(_, first)] = await receive_positioned(ws, 1)
        await post(client, "events", [make_event(event="ws.2")])
        stream = first.partition(":")[0]
        async with subscribe(client, {"event": {"prefix": ["ws."]}}, after=f"{stream}:2") as ws:
            resumed = await receive_positioned(ws, 2)
    assert [name for name, _ in resumed] == ["ws.1", "ws.2"]
    assert seqs(resumed) == [0, 1]


async def test_backfill_without_until_includes_events_stamped_ahead(tmp_path: Path) -> None:
    """A subscription without ``until`` has no upper bound (D7), in its backfill too: an
    event stored with a clock running ahead is backfilled, as it would have been sent live
    (a subscriber reconnecting after it was stored used to lose it)."""
    ahead = make_event(event="ws.ahead", occurred=ago(seconds=-30))
    past = make_event(event="ws.past", occurred=ago(minutes=1))
    async with open_app(tmp_path) as (client, _):
        await post(client, "events", [ahead, past])
        async with subscribe(client, {"event": {"prefix": ["ws."]}}) as ws:
            backfilled = await receive_events(ws, 2)
    assert ids(backfilled) == [past["id"], ahead["id"]]


async def test_without_backfill_only_live_events_are_sent(tmp_path: Path) -> None:
    """``backfill: false`` skips stored events: the first event sent is a live one."""
    async with open_app(tmp_path) as (client, app):
        await post(client, "events", [make_event(), make_event()])
        async with subscribe(client, {}, backfill=False) as ws:
            await wait_subscribed(app)
            live = make_event()
            await post(client, "events", [live])
            assert ids(await receive_events(ws, 1)) == [live["id"]]


async def test_an_event_both_backfilled_and_live_is_sent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event committed after subscribing but before the backfill query is sent once."""
    from localevents.storage._queries import query_events

    both = make_event(event="ws.both")

    def commit_then_query(store: Any, event_filter: EventFilter, limit: int) -> Any:
        store.write_events([received(both)])  # the hub already has the subscriber
        return query_events(store, event_filter, limit)

    monkeypatch.setattr(_backfill, "query_events", commit_then_query)
    async with (
        open_app(tmp_path) as (client, _),
        subscribe(client, {"event": {"prefix": ["ws."]}}) as ws,
    ):
        [first] = await receive_events(ws, 1)
        live = make_event(event="ws.after")
        await post(client, "events", [live])
        [second] = await receive_events(ws, 1)
    assert (first["id"], second["id"]) == (both["id"], live["id"])


async def test_after_the_backfill_only_ids_also_live_are_kept_for_skipping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids a subscriber keeps to skip live repeats of backfilled events are those the
    live stream holds too, not every backfilled id (15 minutes of events, for the
    connection's life); the repeat is still skipped and later events still arrive."""
    import localevents.server._websockets as websockets
    from localevents.storage._queries import query_events

    kept: list[set[str]] = []
    forward_live = websockets._forward_live

    async def recording(socket: Any, subscription: Any, backfilled: set[uuid.UUID]) -> None:
        kept.append({str(event_id) for event_id in backfilled})
        await forward_live(socket, subscription, backfilled)

    both = make_event(event="ws.both")

    def commit_then_query(store: Any, event_filter: EventFilter, limit: int) -> Any:
        store.write_events([received(both)])  # the hub already has the subscriber
        return query_events(store, event_filter, limit)

    monkeypatch.setattr(websockets, "_forward_live", recording)
    monkeypatch.setattr(_backfill, "query_events", commit_then_query)
    async with open_app(tmp_path) as (client, _):
        stored_first = [make_event() for _ in range(30)]
        await post(client, "events", stored_first)
        async with subscribe(client, {"event": {"prefix": ["ws."]}}) as ws:
            backfilled = await receive_events(ws, 31)
            live = make_event(event="ws.after")
            await post(client, "events", [live])
            [after] = await receive_events(ws, 1)
    assert set(ids(backfilled)) == {*ids(stored_first), both["id"]}
    assert kept == [{both["id"]}]
    assert after["id"] == live["id"]


async def test_an_event_whose_commit_listeners_lag_the_backfill_is_sent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event that the backfill's query already sees while its commit is still telling
    the hub (the commit listeners run after the commit) is not sent again live: the
    subscription waits for that commit before it settles which ids to skip."""
    from localevents.storage._queries import query_events

    both = make_event(event="ws.both")
    publish = LiveHub.publish
    writers: list[threading.Thread] = []

    def lagging_publish(self: LiveHub, batches: Sequence[EncodedEvents]) -> None:
        if any(str(event.id) == both["id"] for batch in batches for event in batch.events):
            time.sleep(0.5)  # queries see the commit; the hub hears of it later
        publish(self, batches)

    def query_during_the_commit(store: Any, event_filter: EventFilter, limit: int) -> Any:
        writer = threading.Thread(target=store.write_events, args=([received(both)],))
        writers.append(writer)
        writer.start()
        deadline = time.monotonic() + DEADLINE
        while not store.fetchall("SELECT 1 FROM events WHERE id = ?", [both["id"]]):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return query_events(store, event_filter, limit)

    monkeypatch.setattr(LiveHub, "publish", lagging_publish)
    monkeypatch.setattr(_backfill, "query_events", query_during_the_commit)
    async with (
        open_app(tmp_path) as (client, _),
        subscribe(client, {"event": {"prefix": ["ws."]}}) as ws,
    ):
        assert ids(await receive_events(ws, 1)) == [both["id"]]
        await anyio.to_thread.run_sync(writers[0].join)
        later = make_event(event="ws.after")
        await post(client, "events", [later])
        assert ids(await receive_events(ws, 1)) == [later["id"]]  # not ``both`` again


async def test_live_events_have_the_query_answers_json(tmp_path: Path) -> None:
    """A live event is the JSON a query returns for it: wire key order, UTC ``Z`` times."""
    event = make_event(
        occurred="2030-01-02T03:04:05.000006+02:00",
        related=[{"prefect.resource.id": "acme.line.1", "prefect.resource.role": "line"}],
        payload={"ü": [1, None, {"x": "y"}]},
        follows=str(uuid.uuid4()),
    )
    async with open_app(tmp_path) as (client, app), subscribe(client, {}, backfill=False) as ws:
        await wait_subscribed(app)
        await post(client, "events", [event])
        [live] = await receive_events(ws, 1)
        [queried] = await stored(client)
    assert live == queried
    assert list(live) == WIRE_KEYS
    assert live["occurred"] == "2030-01-02T01:04:05.000006Z"


async def test_live_events_pass_the_related_filter(tmp_path: Path) -> None:
    """The live stream applies ``related`` (D5): an event without the role is not sent."""
    role = {"prefect.resource.id": "acme.line.1", "prefect.resource.role": "line"}
    unrelated = make_event()
    related = make_event(related=[role])
    async with (
        open_app(tmp_path) as (client, app),
        subscribe(client, {"related": {"role": ["line"]}}, backfill=False) as ws,
    ):
        await wait_subscribed(app)
        await post(client, "events", [unrelated, related])
        assert ids(await receive_events(ws, 1)) == [related["id"]]


async def test_live_events_pass_the_name_filter(tmp_path: Path) -> None:
    """The live stream applies ``event`` names (D5), prefixes and exclusions alike."""
    wanted = {"event": {"prefix": ["ws."], "exclude_name": ["ws.skipped"]}}
    sent = [make_event(event=name) for name in ("ws.a", "other.b", "ws.skipped", "ws.c")]
    async with (
        open_app(tmp_path) as (client, app),
        subscribe(client, wanted, backfill=False) as ws,
    ):
        await wait_subscribed(app)
        await post(client, "events", sent)
        last = make_event(event="ws.last")
        await post(client, "events", [last])
        assert ids(await receive_events(ws, 3)) == [sent[0]["id"], sent[3]["id"], last["id"]]


async def test_live_events_pass_the_text_filter(tmp_path: Path) -> None:
    """The live stream applies ``text`` (D5), over names, label values and the payload."""
    plain = make_event(payload={"note": "nothing here"})
    needle = make_event(payload={"note": "a NEEDLE in the payload"})
    labelled = make_event(resource={"prefect.resource.id": "acme.1", "color": "needle-green"})
    async with (
        open_app(tmp_path) as (client, app),
        subscribe(client, {"text": {"query": "needle"}}, backfill=False) as ws,
    ):
        await wait_subscribed(app)
        await post(client, "events", [plain, needle, plain | {"id": str(uuid.uuid4())}])
        await post(client, "events", [labelled])
        assert ids(await receive_events(ws, 2)) == [needle["id"], labelled["id"]]


async def test_a_filter_without_until_receives_future_live_events(tmp_path: Path) -> None:
    """No ``occurred.until`` means no upper bound for live events (D7)."""
    future = make_event(occurred=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    async with (
        open_app(tmp_path) as (client, app),
        subscribe(client, {"occurred": {"since": ago(minutes=1)}}) as ws,
    ):
        await wait_subscribed(app)
        await post(client, "events", [future])
        assert ids(await receive_events(ws, 1)) == [future["id"]]


async def test_one_post_larger_than_the_queue_bound_reaches_subscribers_whole(
    tmp_path: Path,
) -> None:
    """A POST of more events than LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE (one import)
    reaches a subscriber of them whole, and a subscriber of something else stays connected."""
    with temporary_settings(events_subscriber_queue_size=50):
        async with (
            open_app(tmp_path) as (client, app),
            subscribe(client, {"event": {"prefix": ["bulk."]}}, backfill=False) as bulk,
            subscribe(client, {"event": {"prefix": ["other."]}}, backfill=False) as other,
        ):
            await wait_subscribed(app, 2)
            batch = [make_event(event="bulk.loaded") for _ in range(120)]
            await post(client, "events", batch)
            assert ids(await receive_events(bulk, 120)) == ids(batch)
            later = make_event(event="other.thing")
            await post(client, "events", [later])
            assert ids(await receive_events(other, 1)) == [later["id"]]


async def test_a_closed_subscription_leaves_the_hub(tmp_path: Path) -> None:
    """When a subscriber disconnects, the server notices and unsubscribes it."""
    app = create_app(database=str(tmp_path / "events.duckdb"), docs=False)
    transport = InProcessWebSocketTransport(app, close_timeout=DEADLINE * 2)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        async with subscribe(c, {}, backfill=False):
            await wait_subscribed(app)
        hub = live_hub(app.state.store)
        await eventually(lambda: hub.subscriber_count == 0)  # before the transport's cancel


async def _post_with_own_app(database: str, event: dict[str, Any]) -> None:
    app = create_app(get_settings(), database=database, docs=False)
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        await post(c, "events", [event])


async def test_an_event_written_on_another_threads_loop_reaches_the_subscriber(
    tmp_path: Path, anyio_backend: str
) -> None:
    """An event stored by another app on another thread's event loop is sent live here."""
    database = str(tmp_path / "events.duckdb")
    event = make_event(event="ws.threaded")
    other_backend = "trio" if anyio_backend == "asyncio" else "asyncio"
    write = functools.partial(anyio.run, _post_with_own_app, database, event, backend=other_backend)
    async with open_app(tmp_path) as (client, app), subscribe(client, {}, backfill=False) as ws:
        await wait_subscribed(app)
        await anyio.to_thread.run_sync(write)
        assert ids(await receive_events(ws, 1)) == [event["id"]]


# -- the live hub ------------------------------------------------------------------------------


def _committed(count: int) -> EncodedEvents:
    """A commit of ``count`` new events, as the store hands it to the hub."""
    return EncodedEvents.of([received(make_event()) for _ in range(count)])


def _ids(*commits: EncodedEvents) -> list[uuid.UUID]:
    return [event.id for commit in commits for event in commit.events]


async def test_a_subscriber_whose_queue_overflows_falls_behind_alone() -> None:
    """A commit that finds more events than the bound unsent drops the subscriber's queue
    and marks it; others get all."""
    hub = LiveHub(maximum=4)
    with hub.open_subscription(EventFilter()) as slow, hub.open_subscription(EventFilter()) as fast:
        commits = [_committed(2) for _ in range(4)]  # the fourth finds 6 unsent
        got: list[uuid.UUID] = []
        for commit in commits:
            hub.fan_out([commit])  # returns at once: nobody is waiting for anyone
            got += [live.id for live in await fast.receive()]
        with pytest.raises(FellBehind):
            await slow.receive()
    assert got == _ids(*commits)
    assert slow.fell_behind
    assert not fast.fell_behind
    assert hub.subscriber_count == 0


async def test_a_subscriber_rides_out_bursts_of_full_batches_by_default(
    tmp_path: Path,
) -> None:
    """With the default bound a subscriber that has taken one full batch and not yet sent
    it keeps its place while several more full batches (1000 events each) arrive; the
    bound is LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE."""
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        hub = live_hub(store)
        with hub.open_subscription(EventFilter()) as subscription:
            hub.fan_out([_committed(1000)])
            assert len(await subscription.receive()) == 1000  # taken, being sent
            for _ in range(5):
                hub.fan_out([_committed(1000)])
            assert not subscription.fell_behind
            assert len(await subscription.receive()) == 5000
    finally:
        release(store)
    with temporary_settings(events_subscriber_queue_size=1500):
        small = open_store(str(tmp_path / "small.duckdb"))
        try:
            with live_hub(small).open_subscription(EventFilter()) as subscription:
                live_hub(small).fan_out([_committed(1000)])
                await subscription.receive()
                live_hub(small).fan_out([_committed(1000)])
                assert not subscription.fell_behind  # 1000 unsent: within the bound
                live_hub(small).fan_out([_committed(1000)])  # 2000 unsent: past it
                with pytest.raises(FellBehind):
                    await subscription.receive()
        finally:
            release(small)


async def test_events_received_but_not_yet_sent_count_against_the_queue_bound() -> None:
    """A subscriber still sending what it took is as far behind as if it were queued."""
    hub = LiveHub(maximum=3)
    with hub.open_subscription(EventFilter()) as subscription:
        hub.fan_out([_committed(2)])
        assert len(await subscription.receive()) == 2  # taken, being sent
        hub.fan_out([_committed(2)])  # 2 + 2 unsent
        hub.fan_out([_committed(1)])
        with pytest.raises(FellBehind):
            await subscription.receive()


async def test_a_subscriber_falls_behind_on_the_bytes_it_has_unsent_too() -> None:
    """Large events bound a subscriber's queue by their frames' bytes
    (LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_BYTES) long before their count: a commit that
    finds more bytes unsent than the bound, taken or queued, puts it behind."""
    hub = LiveHub(maximum=10_000, maximum_bytes=5_000)

    def large(count: int) -> EncodedEvents:
        return EncodedEvents.of(
            [received(make_event(payload={"pad": "x" * 2_000})) for _ in range(count)]
        )

    with hub.open_subscription(EventFilter()) as subscription:
        hub.fan_out([large(3)])  # 6 kB: queued whole, nothing was unsent before
        assert len(await subscription.receive()) == 3  # taken, being sent
        hub.fan_out([large(1)])  # finds 6 kB unsent
        with pytest.raises(FellBehind):
            await subscription.receive()
    with hub.open_subscription(EventFilter()) as subscription:
        hub.fan_out([large(2)])
        assert len(await subscription.receive()) == 2  # 4 kB taken, being sent
        hub.fan_out([large(1)])  # finds 4 kB unsent: within the bound
        assert len(await subscription.receive()) == 1


async def test_a_stores_hub_takes_its_bounds_from_the_settings(tmp_path: Path) -> None:
    """LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE and _BYTES bound the subscribers of a
    store's hub (64 MiB of frames by default)."""
    from localevents.server._hub import SUBSCRIBER_QUEUE_BYTES

    assert get_settings().events_subscriber_queue_bytes == SUBSCRIBER_QUEUE_BYTES == 64 << 20
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        with temporary_settings(events_subscriber_queue_size=7, events_subscriber_queue_bytes=9):
            hub = live_hub(store)  # made on first use, with the settings of then
        with hub.open_subscription(EventFilter()) as subscription:
            assert (subscription.maximum, subscription.maximum_bytes) == (7, 9)
    finally:
        release(store)


async def test_a_commit_larger_than_every_bound_reaches_a_subscriber_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One commit of more events than the subscriber's bound and the hub's backlog limit
    (one big import) is delivered whole to a subscriber with nothing unsent, and leaves a
    subscriber whose filter matches none of it alone."""
    import localevents.server._hub as hub_module

    monkeypatch.setattr(hub_module, "BACKLOG_EVENTS", 3)
    hub = LiveHub(maximum=3)
    unrelated = EventFilter(event=EventNameFilter(prefix=["elsewhere."]))
    with (
        hub.open_subscription(EventFilter()) as everything,
        hub.open_subscription(unrelated) as elsewhere,
    ):
        big = _committed(8)
        hub.publish([big])
        hub.flush()
        assert [live.id for live in await everything.receive()] == _ids(big)
        assert not elsewhere.fell_behind
        later = EncodedEvents.of([received(make_event(event="elsewhere.one"))])
        hub.publish([later])
        hub.flush()
        assert [live.id for live in await elsewhere.receive()] == _ids(later)


async def test_commits_the_fan_out_cannot_keep_up_with_put_every_subscriber_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit that finds more than the hub's backlog limit of earlier commits still
    waiting for the fan-out drops them all: every subscriber is told, even one that
    none of them concern."""
    import localevents.server._hub as hub_module

    monkeypatch.setattr(hub_module, "BACKLOG_EVENTS", 3)
    hub = LiveHub()
    fanning_out, release_fan_out = threading.Event(), threading.Event()
    fan_out = hub.fan_out

    def held_fan_out(batches: Sequence[EncodedEvents]) -> None:
        fanning_out.set()
        release_fan_out.wait(DEADLINE)
        fan_out(batches)

    hub.fan_out = held_fan_out  # type: ignore[method-assign]
    unrelated = EventFilter(event=EventNameFilter(prefix=["elsewhere."]))
    limit = hub_module.BACKLOG_EVENTS
    with hub.open_subscription(EventFilter()) as one, hub.open_subscription(unrelated) as two:
        hub.publish([_committed(1)])  # the fan-out takes it, and is held there
        assert await anyio.to_thread.run_sync(fanning_out.wait, DEADLINE)
        hub.publish([_committed(limit + 1)])  # waits for the fan-out: nothing was waiting
        assert (one.fell_behind, two.fell_behind) == (False, False)
        hub.publish([_committed(1)])  # finds limit + 1 events waiting
        assert (one.fell_behind, two.fell_behind) == (True, True)
        release_fan_out.set()
        hub.flush()
        for subscription in (one, two):
            with pytest.raises(FellBehind):
                await subscription.receive()


async def test_subscribers_woken_by_one_commit_cost_their_loop_one_hand_off() -> None:
    """However many subscribers of one event loop a commit wakes, the hub's thread hands
    that loop one callback (each hand-off writes to the loop's wake-up pipe), and every
    subscriber gets its events."""
    hub = LiveHub()
    handed: list[Callable[[], object]] = []
    with contextlib.ExitStack() as stack:
        subscriptions = [
            stack.enter_context(hub.open_subscription(EventFilter())) for _ in range(10)
        ]
        schedule = subscriptions[0].schedule

        def counted(callback: Callable[[], object]) -> object:
            handed.append(callback)
            return schedule(callback)

        got: dict[int, list[uuid.UUID]] = {}

        async def wait_for_events(index: int) -> None:
            got[index] = [live.id for live in await subscriptions[index].receive()]

        commit = _committed(3)
        async with anyio.create_task_group() as waiting:
            for index, subscription in enumerate(subscriptions):
                subscription.schedule = counted
                waiting.start_soon(wait_for_events, index)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(hub.fan_out, [commit])
            with anyio.fail_after(DEADLINE):
                await eventually(lambda: len(got) == 10)
    assert len(handed) == 1
    assert all(ids == _ids(commit) for ids in got.values())


class _Sent:
    """A subscription's sender that records what it sends, or declines everything (and
    runs ``meanwhile`` as it does, as if the hub's thread went on at that moment)."""

    def __init__(self, *, declines: bool = False, meanwhile: Callable[[], None] = list) -> None:
        self.declines = declines
        self.meanwhile = meanwhile
        self.ids: list[uuid.UUID] = []
        self.calls = 0

    def __call__(self, events: Sequence[LiveEvent]) -> bool:
        self.calls += 1
        if self.declines:
            self.meanwhile()
            return False
        self.ids += [live.id for live in events]
        return True


async def test_a_waiting_subscriber_with_a_sender_is_sent_its_events_without_waking() -> None:
    """While a subscriber waits in receive, the hub sends its new events through its
    sender on its own loop; the waiting task is not woken and never sees them again."""
    hub = LiveHub()
    woken: list[list[uuid.UUID]] = []
    with hub.open_subscription(EventFilter()) as subscription:
        sent = subscription.sender = _Sent()

        async def wait() -> None:
            woken.append([live.id for live in await subscription.receive()])

        commits = [_committed(2) for _ in range(3)]
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            for commit in commits:
                await anyio.to_thread.run_sync(hub.fan_out, [commit])
            await eventually(lambda: len(sent.ids) == 6)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            subscription.sender = None  # the task sends from here on
            last = _committed(1)
            await anyio.to_thread.run_sync(hub.fan_out, [last])
    assert sent.ids == _ids(*commits)
    assert woken == [_ids(last)]


async def test_events_a_sender_declines_wake_the_subscriber_in_commit_order() -> None:
    """Events the sender declines stay first in line, before those committed while it
    tried: the woken subscriber receives them all, each once, in commit order."""
    hub = LiveHub()
    first, second = _committed(2), _committed(3)
    with hub.open_subscription(EventFilter()) as subscription:
        sent = subscription.sender = _Sent(
            declines=True, meanwhile=functools.partial(hub.fan_out, [second])
        )
        got: list[uuid.UUID] = []

        async def wait() -> None:
            got.extend(live.id for live in await subscription.receive())

        async with anyio.create_task_group() as waiting:
            waiting.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(hub.fan_out, [first])
    assert sent.calls == 1  # the second's hand-off found the subscriber woken already
    assert got == _ids(first, second)


async def test_events_a_sender_declines_still_count_their_bytes() -> None:
    """Events the sender declines go back to the queue with their bytes: taken by the
    woken subscriber, they still count against the byte bound when more arrive."""
    hub = LiveHub(maximum=10_000, maximum_bytes=1_000)
    declined = EncodedEvents.of([received(make_event(payload={"pad": "x" * 2_000}))])
    with hub.open_subscription(EventFilter()) as subscription:
        subscription.sender = _Sent(declines=True)
        got: list[LiveEvent] = []

        async def wait() -> None:
            got.extend(await subscription.receive())

        async with anyio.create_task_group() as waiting:
            waiting.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(hub.fan_out, [declined])
        assert [live.id for live in got] == _ids(declined)  # taken, 2 kB being sent
        hub.fan_out([_committed(1)])
        with pytest.raises(FellBehind):
            await subscription.receive()


async def test_a_failing_sender_wakes_its_subscriber_and_spares_the_others() -> None:
    """A sender that raises is taken as declining: its subscriber is woken and receives
    the events itself, and the other subscribers handed over with it still get theirs."""
    hub = LiveHub()

    def failing(events: Sequence[LiveEvent]) -> bool:
        raise RuntimeError("the connection broke")

    with (
        hub.open_subscription(EventFilter()) as broken,
        hub.open_subscription(EventFilter()) as healthy,
    ):
        broken.sender, sent = failing, _Sent()
        healthy.sender = sent
        commit = _committed(2)
        got: list[uuid.UUID] = []

        async def wait() -> None:
            got.extend(live.id for live in await broken.receive())

        async with anyio.create_task_group() as waiting:
            waiting.start_soon(wait)
            waiting.start_soon(healthy.receive)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(hub.fan_out, [commit])
            await eventually(lambda: bool(got) and bool(sent.ids))
            waiting.cancel_scope.cancel()
    assert got == _ids(commit)
    assert sent.ids == _ids(commit)


async def test_a_subscriber_not_waiting_takes_its_events_itself() -> None:
    """Events committed while the subscriber is busy (not in receive) wait in its queue,
    whatever its sender: it takes them with its next receive."""
    hub = LiveHub()
    with hub.open_subscription(EventFilter()) as subscription:
        sent = subscription.sender = _Sent()
        commit = _committed(2)
        hub.fan_out([commit])
        assert [live.id for live in await subscription.receive()] == _ids(commit)
    assert sent.calls == 0


def test_the_frames_sender_skips_each_backfilled_event_once_and_sends_the_rest() -> None:
    """A waiting subscriber's frames go out in one write, without the events the backfill
    sent already; each of those is skipped once."""
    written: list[bytes] = []
    events = [live_event(uuid.uuid4(), f'{{"n":{n}}}'.encode()) for n in range(4)]
    never_live = uuid.uuid4()
    backfilled = {events[1].id, never_live}
    send = frames_sender(lambda data: written.append(data) is None, backfilled)
    assert send(events)
    assert written == [b"".join(live.wire for live in (events[0], events[2], events[3]))]
    assert backfilled == {never_live}
    assert send(events[1:2])  # live a second time: no longer skipped
    assert written[-1] == events[1].wire


def test_the_frames_sender_declines_many_events_and_a_connection_it_cannot_write() -> None:
    """More events than one write carries, or a connection held back by flow control (or
    closing), are declined and change nothing: the woken task sends them."""
    many = [live_event(uuid.uuid4(), b"{}") for _ in range(17)]
    written: list[bytes] = []
    backfilled = {many[0].id}
    assert not frames_sender(lambda data: written.append(data) is None, backfilled)(many)
    assert not frames_sender(lambda data: False, backfilled)(many[:2])
    assert written == []
    assert backfilled == {many[0].id}


async def test_commits_reach_subscribers_in_commit_order() -> None:
    """Commits published one after another arrive in that order, through the hub's thread."""
    hub = LiveHub()
    commits = [_committed(3) for _ in range(20)]
    with hub.open_subscription(EventFilter()) as subscription:
        for commit in commits:
            hub.publish([commit])
        got: list[uuid.UUID] = []
        with anyio.fail_after(DEADLINE):
            while len(got) < 60:
                got += [live.id for live in await subscription.receive()]
    assert got == _ids(*commits)


async def test_subscribers_sharing_a_filter_keep_their_own_time_windows() -> None:
    """Filters alike but for their window are tested together, yet each window still holds."""
    hub = LiveHub()
    names = {"event": {"prefix": ["ws."]}}
    ended = msgspec.json.decode(
        msgspec.json.encode({**names, "occurred": {"since": "2020-01-01T00:00:00Z",
                                                   "until": "2021-01-01T00:00:00Z"}}),
        type=EventFilter,
    )  # fmt: skip
    current = msgspec.json.decode(msgspec.json.encode(names), type=EventFilter)
    with hub.open_subscription(ended) as old, hub.open_subscription(current) as new:
        assert old.key == new.key
        commit = _committed(2)
        hub.fan_out([commit])
        with anyio.fail_after(10):
            assert [live.id for live in await new.receive()] == _ids(commit)
        with anyio.move_on_after(0.2) as waited:
            await old.receive()
        assert waited.cancelled_caught


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_subscriber_whose_loop_has_closed_is_dropped(tmp_path: Path, backend: str) -> None:
    """A commit after a subscriber's event loop closed drops that subscriber, and succeeds."""
    store = open_store(str(tmp_path / "events.duckdb"))
    hub = live_hub(store)
    leave_open = contextlib.ExitStack()

    async def subscribe_and_leave() -> None:
        subscription = leave_open.enter_context(hub.open_subscription(EventFilter()))
        with anyio.move_on_after(0.01):
            await subscription.receive()  # registers a waiter on this loop

    try:
        anyio.run(subscribe_and_leave, backend=backend)
        assert hub.subscriber_count == 1
        event = received(make_event())
        assert store.write_events([event]) == [event]
        hub.flush()
        assert hub.subscriber_count == 0
    finally:
        leave_open.close()
        release(store)


# -- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``localevents serve`` shared by this module's tests; its base URL."""
    # a small subscriber queue, so that the test of a stalled subscriber fills it quickly
    with serve(tmp_path_factory.mktemp("server") / "events.duckdb", env=SMALL_QUEUE) as process:
        yield process.url


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``localevents serve --api-key s3cret`` shared by this module's tests."""
    database = tmp_path_factory.mktemp("keyed") / "events.duckdb"
    with serve(database, "--api-key", "s3cret") as process:
        yield process.url


def ws_url(url: str) -> str:
    """The WebSocket form of a server URL."""
    return url.replace("http://", "ws://", 1)


async def test_a_real_server_refuses_a_socket_without_subprotocol_with_403(
    keyed_server: str,
) -> None:
    """Over a real server, the refusal without the subprotocol (key set) is an HTTP 403."""
    url = f"{ws_url(keyed_server)}/events/in"
    async with httpx.AsyncClient() as client:
        error = await refusal(client, url)
        assert isinstance(error, WebSocketUpgradeError)
        assert error.response.status_code == 403
        async with open_socket(client, url, token="s3cret"):
            pass


@pytest.mark.parametrize("path", ["events/in", "events/out"])
async def test_a_real_server_reads_no_more_than_a_mebibyte_before_the_handshake(
    keyed_server: str, path: str
) -> None:
    """Before a client has given the key, ``localevents serve`` closes a message over 1 MiB
    with 1009 as it arrives, instead of holding up to 16 MiB per socket for anyone."""
    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(f"{ws_url(keyed_server)}/{path}", client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_text("x" * (1024 * 1024 + 1))
        close = await closed(ws)
    assert (close.code, close.reason) == (
        1009,
        "a message before the handshake is done is limited to 1048576 bytes",
    )


async def test_a_real_server_takes_events_over_a_mebibyte_once_a_producer_is_in(
    keyed_server: str,
) -> None:
    """Past the handshake, ``/events/in`` reads frames up to the full limit: an event of
    1.2 MB (under the 1.5 MB event limit) is stored."""
    event = make_event(payload={"pad": "x" * 1_200_000})
    async with httpx.AsyncClient(headers={"Authorization": "Bearer s3cret"}) as client:
        async with open_socket(client, f"{ws_url(keyed_server)}/events/in", token="s3cret") as ws:
            await ws.send_json(event)
            await ws.send_text("{}")  # read only once the event before it was stored
            assert (await closed(ws)).code == 1007
        found = await client.post(
            f"{keyed_server}/events/filter",
            json={"filter": {"id": {"id": [event["id"]]}}, "limit": 1},
        )
    assert [e["id"] for e in found.json()["events"]] == [event["id"]]


STALLED_AFTER = 2000
"""Events after which a subscriber that reads nothing has fallen behind: more than its
queue (1000 here) and its connection's buffers (a few MB of these 8 KB events) hold."""


@pytest.mark.parametrize("per_request", [100, 10])
async def test_a_subscriber_that_stops_reading_is_closed_with_1013(
    server: str, per_request: int
) -> None:
    """A subscriber that stops reading is closed with 1013 while ingest goes on and a
    subscriber that keeps reading gets every event (D8): whether its task sends the
    events (many per commit) or the hub does while it waits (a few per commit, held back
    by the connection's flow control all the same)."""
    prefix = f"slow.{uuid.uuid4().hex}."
    ready = make_event(event=f"{prefix}ready")
    wanted = {"event": {"prefix": [prefix]}}
    # Enough bytes to fill the socket buffers of the stalled subscriber, then its queue;
    # then as many events again as that queue holds, for the reader alone.
    batches = [
        [make_event(event=f"{prefix}x", payload={"pad": "x" * 8_000}) for _ in range(per_request)]
        for _ in range((STALLED_AFTER + 1000) // per_request)
    ]
    received: list[str] = []
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await post(client, f"{server}/events", [ready])
        out = f"{ws_url(server)}/events/out"
        async with (
            subscribe(client, wanted, url=out) as slow,
            subscribe(client, wanted, url=out) as fast,
        ):
            for ws in (slow, fast):  # the backfilled marker proves each is subscribed
                assert ids(await receive_events(ws, 1)) == [ready["id"]]

            read_more = anyio.Event()

            async def keep_reading() -> None:
                for _ in range(sum(map(len, batches))):
                    received.append(
                        json.loads(await fast.receive_text(timeout=DEADLINE))["event"]["id"]
                    )
                    read_more.set()

            closes: list[WebSocketDisconnect] = []

            async def read_the_close() -> None:
                closes.append(await closed(slow))

            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_reading)
                sent = 0
                for batch in batches:
                    await post(client, f"{server}/events", batch)
                    sent += len(batch)
                    if sent == STALLED_AFTER:  # it has fallen behind: take its close in
                        tg.start_soon(read_the_close)  # time (the server waits 5 s for it)
                    # The reader keeps up however loaded the machine (its queue holds 1000):
                    # only the subscriber that stopped reading falls behind.
                    with anyio.fail_after(DEADLINE):
                        while len(received) < sent - 500:  # 500 more are on their way
                            read_more = anyio.Event()
                            await read_more.wait()
    assert received == [event["id"] for batch in batches for event in batch]
    assert [(close.code, close.reason) for close in closes] == [(1013, "subscriber fell behind")]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_frames_read_before_a_crash_survive_it(tmp_path: Path) -> None:
    """Every frame the server has read past is durably stored: a SIGKILL loses none (D1)."""
    database = tmp_path / "events.duckdb"
    events = [make_event() for _ in range(20)]
    async with httpx.AsyncClient() as client:
        with serve(database) as process:
            async with open_socket(client, f"{ws_url(process.url)}/events/in") as ws:
                for event in [*events, events[0]]:
                    await ws.send_json(event)
                await ws.send_text("{}")  # read only after every frame before it was stored
                assert (await closed(ws)).code == 1007
            process.kill()
        with serve(database) as process:
            assert sorted(ids(await stored(client, f"{process.url}/events/filter"))) == sorted(
                ids(events)
            )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_with_the_checkpoint_protocol_a_pong_follows_the_commit(tmp_path: Path) -> None:
    """Under uvicorn with CheckpointWSProtocol, a pong after frames means they are stored."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "localevents.server:create_app",
        "--port",
        str(port),
        "--ws",
        "localevents.server._ws_protocol:CheckpointWSProtocol",
    ]
    env = {"LOCALEVENTS_DATABASE": str(tmp_path / "events.duckdb")}
    with spawn(command, port, env=env) as process:
        async with (
            httpx.AsyncClient() as client,
            open_socket(client, f"{ws_url(process.url)}/events/in") as ws,
        ):
            for _ in range(20):
                events = [make_event() for _ in range(3)]
                for event in events:
                    await ws.send_json(event)
                with anyio.fail_after(DEADLINE):
                    await (await ws.ping()).wait()
                body = {"filter": {"id": {"id": ids(events)}}}
                response = await client.post(f"{process.url}/events/filter", json=body)
                assert response.json()["total"] == 3


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_prebuilt_frames_are_the_frames_wsproto_would_send(size: int) -> None:
    """A live event's frame, built once for every subscriber, is byte for byte the text
    frame a WebSocket server sends (each length encoding, and text beyond ASCII)."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    from localevents.server._frames import text_frame

    text = ("é" * size)[: size // 2] + "x" * (size - len(("é" * size)[: size // 2].encode()))
    expected = Connection(ConnectionType.SERVER).send(TextMessage(data=text))
    assert text_frame(text.encode()) == expected


async def test_a_real_server_sends_events_of_every_frame_size_intact(server: str) -> None:
    """Over ``localevents serve`` (which writes prebuilt frames, several at once), events
    whose frames need each length encoding arrive whole and in order."""
    prefix = f"sizes.{uuid.uuid4().hex}."
    ready = make_event(event=f"{prefix}ready")
    events = [
        make_event(event=f"{prefix}{n}", payload={"pad": "ü" * n})
        for _ in range(3)
        for n in (0, 40, 70, 30_000, 40_000, 90_000, 3)
    ]
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await post(client, f"{server}/events", [ready])
        wanted = {"event": {"prefix": [prefix]}}
        out = f"{ws_url(server)}/events/out"
        async with subscribe(client, wanted, url=out, max_message_size_bytes=2**20) as ws:
            assert ids(await receive_events(ws, 1)) == [ready["id"]]
            await post(client, f"{server}/events", events)
            received = await receive_events(ws, len(events))
    assert [e["id"] for e in received] == [e["id"] for e in events]
    assert [e["payload"] for e in received] == [e["payload"] for e in events]


class _SilentSubscriber:
    """A raw subscriber over a blocking socket that, once subscribed, reads nothing more:
    it answers no ping, like a peer that vanished without closing its connection."""

    def __init__(self, port: int) -> None:
        from wsproto import WSConnection
        from wsproto.connection import ConnectionType
        from wsproto.events import AcceptConnection, Request, TextMessage

        self._socket = socket_module.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self._ws = WSConnection(ConnectionType.CLIENT)
        request = Request(host="127.0.0.1", target="/api/events/out", subprotocols=["prefect"])
        self._socket.sendall(self._ws.send(request))
        assert isinstance(self._next_event(), AcceptConnection)
        for message in ({"type": "auth", "token": None}, {"type": "filter", "filter": {}}):
            self._socket.sendall(self._ws.send(TextMessage(json.dumps(message))))
            if message["type"] == "auth":
                reply = self._next_event()
                assert isinstance(reply, TextMessage)
                assert json.loads(reply.data) == {"type": "auth_success"}

    def _next_event(self) -> object:
        while True:
            for event in self._ws.events():
                return event
            self._ws.receive_data(self._socket.recv(65536) or None)

    def closed_by_server(self) -> bool:
        """Read what the server sent since; whether it ended with the connection closed."""
        while data := self._socket.recv(65536):
            del data
        return True

    def close(self) -> None:
        self._socket.close()


async def test_a_real_server_closes_a_subscriber_that_stops_answering_pings(
    tmp_path: Path,
) -> None:
    """The server pings every WebSocket (LOCALEVENTS_SERVER_WEBSOCKET_PING_INTERVAL) and
    closes one that does not answer in time: a subscriber whose peer vanished leaves the
    hub, while one whose client answers pings stays and gets its events."""
    # A second to answer: 0.3 s let a loaded machine drop the answering subscriber too (its
    # pong was late). The answering one joins first, so the silent one, counted from the
    # moment it joins, has interval + timeout to be seen in the hub before it is dropped.
    env = {
        "LOCALEVENTS_SERVER_WEBSOCKET_PING_INTERVAL": "0.5",
        "LOCALEVENTS_SERVER_WEBSOCKET_PING_TIMEOUT": "1",
    }
    with serve(tmp_path / "events.duckdb", env=env) as process:
        async with httpx.AsyncClient(timeout=DEADLINE) as client:

            async def subscribers() -> float:
                answer = await client.get(f"{process.url}/metrics")
                found = re.search(r"^localevents_server_subscribers (\S+)$", answer.text, re.M)
                assert found is not None, answer.text
                return float(found[1])

            silent: _SilentSubscriber | None = None
            try:
                url = f"{ws_url(process.url)}/events/out"
                async with subscribe(client, {}, backfill=False, url=url) as answering:
                    await eventually_async(subscribers, 1.0)
                    silent = await anyio.to_thread.run_sync(_SilentSubscriber, process.port)
                    await eventually_async(subscribers, 2.0)
                    await eventually_async(subscribers, 1.0)  # the silent one left
                    assert await anyio.to_thread.run_sync(silent.closed_by_server)
                    live = make_event()
                    await post(client, f"{process.url}/events", [live])
                    assert ids(await receive_events(answering, 1)) == [live["id"]]
            except* wsproto.utilities.LocalProtocolError as group:
                # httpx-ws answers a ping that arrives while it closes the socket with a
                # pong that wsproto refuses (the SDK counts it as the connection gone)
                others = [e for e in group.exceptions if "LOCAL_CLOSING" not in str(e)]
                if others:
                    raise ExceptionGroup("while the subscriber closed", others) from group
            finally:
                if silent is not None:
                    silent.close()


async def eventually_async(value: Callable[[], Awaitable[float]], expected: float) -> None:
    """Wait until ``await value()`` equals ``expected`` (it depends on another process)."""
    with anyio.fail_after(DEADLINE):
        while True:
            if await value() == expected:
                return
            await anyio.sleep(0.05)


def test_the_ping_settings_read_durations_and_refuse_a_zero_timeout() -> None:
    """Pings every 20 s with 20 s to answer by default; an interval of 0 turns them off, a
    timeout of 0 is refused, naming the setting."""
    from localevents._exceptions import ConfigurationError
    from localevents._settings import settings_from_environ

    defaults = settings_from_environ({})
    assert (defaults.server_websocket_ping_interval, defaults.server_websocket_ping_timeout) == (
        timedelta(seconds=20),
        timedelta(seconds=20),
    )
    changed = settings_from_environ(
        {
            "LOCALEVENTS_SERVER_WEBSOCKET_PING_INTERVAL": "0",
            "LOCALEVENTS_SERVER_WEBSOCKET_PING_TIMEOUT": "1m",
        }
    )
    assert changed.server_websocket_ping_interval == timedelta(0)
    assert changed.server_websocket_ping_timeout == timedelta(minutes=1)
    with pytest.raises(ConfigurationError, match="WEBSOCKET_PING_TIMEOUT must be > 0"):
        settings_from_environ({"LOCALEVENTS_SERVER_WEBSOCKET_PING_TIMEOUT": "0"})


async def test_keepalive_waits_for_a_pong_the_server_is_not_reading(tmp_path: Path) -> None:
    """While the app holds off reading (``/api/events/in`` committing a batch), a client
    that answers pings is not closed for a pong the server has not read yet: the
    connection carries on once the app reads again."""
    port = free_port()
    command = uvicorn_command(
        "_held_app:app",
        port,
        "--ws",
        "localevents.server._ws_protocol:CheckpointWSProtocol",
        "--ws-ping-interval",
        "0.2",
        "--ws-ping-timeout",
        "0.2",
    )
    with spawn(command, port):
        async with (
            httpx.AsyncClient() as client,
            aconnect_ws(f"ws://127.0.0.1:{port}/held", client) as ws,
        ):
            await ws.send_text("0.8")  # several ping timeouts without reading
            await ws.send_text("still here")  # queued: the server stops reading
            assert await ws.receive_text(timeout=DEADLINE) == "held"
            assert await ws.receive_text(timeout=DEADLINE) == "still here"


def test_a_backfill_limit_longer_than_the_calendar_reaches_back_to_year_1() -> None:
    """LOCALEVENTS_EVENTS_MAXIMUM_WEBSOCKET_BACKFILL of 5,000 years lets a subscription's
    window start at year 1 (it was an OverflowError on every subscription)."""
    settings = Settings(events_maximum_websocket_backfill=timedelta(days=5000 * 366))
    window = EventFilter(occurred=EventOccurredFilter(since=datetime(1, 1, 1, tzinfo=UTC)))

    limited = subscription_filter(window, settings, datetime.now(UTC))

    assert limited.occurred.since == datetime(1, 1, 1, tzinfo=UTC)
