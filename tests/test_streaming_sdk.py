"""Streaming with the SDK: the events clients (``/events/in``) and the subscriber
(``/events/out``), in-process and against real server processes that crash and restart."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from _servers import free_port, serve
from _sockets import STORAGE_DOWN, took_the_handshake
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError

import localevents
from localevents import (
    AuthenticationError,
    ConfigurationError,
    Event,
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventsClient,
    EventSubscriber,
    EventTooLarge,
    HTTPStatusError,
    NullEventsClient,
    ReceivedEvent,
    Resource,
    ServerType,
    ServerUnreachable,
    WebSocketEventsClient,
    ephemeral,
    get_client,
    get_events_client,
    get_events_subscriber,
    temporary_settings,
)
from localevents.client import _subscriber, _websocket
from localevents.client._connection import Connection
from localevents.client._websocket import is_retryable, poison_event_id, socket_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from _servers import ServerProcess

SMALL_QUEUE = {"LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE": "1000"}  # fills fast
ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds any one test step may take before the test fails instead of hanging."""
HOUR = timedelta(hours=1)


def event(name: str, payload_bytes: int = 0) -> Event:
    payload = {"blob": "x" * payload_bytes}
    return Event(event=name, resource=Resource({ID: "acme.widget"}), payload=payload)


def named(prefix: str) -> EventFilter:
    return EventFilter(event=EventNameFilter(prefix=[prefix]))


async def stored(prefix: str, api_url: str | None = None) -> list[ReceivedEvent]:
    """Every stored event whose name starts with ``prefix``, oldest first."""
    async with get_client(api_url=api_url) as client:
        query = EventFilter(event=EventNameFilter(prefix=[prefix]), order="ASC")
        return [event async for event in client.iter_events(query, page_size=1000)]


async def take(subscriber: EventSubscriber, count: int) -> list[ReceivedEvent]:
    """The next ``count`` events of ``subscriber``."""
    received = []
    with anyio.fail_after(PATIENCE):
        async for received_event in subscriber:
            received.append(received_event)
            if len(received) == count:
                break
    return received


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[None]:
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        yield


class SharedServers:
    """``localevents serve`` processes, one per command line and environment, each started
    when a test first asks for it and shared by the later ones: for tests that only connect
    and add events under names of their own (:func:`unique`), never stopping, killing or
    hanging the server."""

    def __init__(self, folder: Path, stack: contextlib.ExitStack) -> None:
        self._folder = folder
        self._stack = stack
        self._servers: dict[tuple[tuple[str, ...], frozenset[tuple[str, str]]], ServerProcess] = {}

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        key = (args, frozenset((env or {}).items()))
        if key not in self._servers:
            database = self._folder / f"events-{len(self._servers)}.duckdb"
            self._servers[key] = self._stack.enter_context(serve(database, *args, env=env))
        return self._servers[key]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServers]:
    """The module's :class:`SharedServers`, stopped once its tests are done."""
    with contextlib.ExitStack() as stack:
        yield SharedServers(tmp_path_factory.mktemp("shared-servers"), stack)


def unique(name: str) -> str:
    """``name`` with a part no other test uses: a prefix for events on a shared server."""
    return f"{name}.{uuid.uuid4().hex[:12]}"


# The rules every events client follows


class FailingClient(EventsClient):
    async def _emit(self, event: Event) -> None:
        raise RuntimeError("cannot deliver")


async def test_emit_outside_the_block_is_a_type_error() -> None:
    """emit() works only between __aenter__ and __aexit__, before and after it raises."""
    client = NullEventsClient()
    message = "only be emitted while this client is being used as a context manager"
    with pytest.raises(TypeError, match=message):
        await client.emit(event("too.early"))
    async with client:
        await client.emit(event("in.time"))
    with pytest.raises(TypeError, match=message):
        await client.emit(event("too.late"))
    assert client.client_name == "NullEventsClient"


async def test_emitted_counts_failed_emits_too() -> None:
    """The per-client `emitted` counter grows even when delivery raises."""
    async with FailingClient() as client:
        with pytest.raises(RuntimeError, match="cannot deliver"):
            await client.emit(event("lost"))
    assert client.emitted == 1


def test_socket_urls_accept_http_and_ws_spellings() -> None:
    """An API URL given as http(s) or ws(s), with or without a trailing slash, gives one
    WebSocket URL under it (httpx-ws wants http schemes)."""
    assert socket_url("http://h:1/api", "events/in") == "http://h:1/api/events/in"
    assert socket_url("ws://h:1/api/", "events/out") == "http://h:1/api/events/out"
    assert socket_url("WSS://h/api", "events/in") == "https://h/api/events/in"
    client = WebSocketEventsClient("wss://example.test/api/", api_key="k")
    assert client.url == "https://example.test/api/events/in"
    assert client.server_type is ServerType.SERVER


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (WebSocketNetworkError(), True),
        (WebSocketDisconnect(1006), True),
        (WebSocketDisconnect(1011, "boom"), True),
        (WebSocketDisconnect(1012), True),
        (WebSocketDisconnect(1013, "subscriber fell behind"), True),
        (WebSocketDisconnect(1008, "Invalid token"), False),
        (WebSocketDisconnect(1002, "Expected 'filter' message"), False),
        (WebSocketDisconnect(1007, "invalid event"), False),
        (AuthenticationError("no"), False),
        (ValueError("a bug"), False),
    ],
)
def test_producer_and_subscriber_retry_the_same_errors(error: BaseException, retried: bool) -> None:
    """One classification of failures decides every reconnect (D15): network trouble,
    timeouts and abnormal closes are retried; refused keys and refused data are not."""
    assert is_retryable(error) is retried


def test_a_refused_event_is_named_by_its_close_reason() -> None:
    """A 1007 close whose reason names an event id points at the event to drop (D3)."""
    refused = uuid.uuid4()
    reason = f"invalid event {refused}: the frame is 9000 bytes, over the limit"
    assert poison_event_id(WebSocketDisconnect(1007, reason)) == refused
    assert poison_event_id(WebSocketDisconnect(1007, "invalid event: not JSON")) is None
    assert poison_event_id(WebSocketDisconnect(1011, reason)) is None


def test_negative_reconnection_attempts_are_refused() -> None:
    """A negative reconnect budget is a configuration error, for both directions."""
    with pytest.raises(ConfigurationError, match="non-negative"):
        WebSocketEventsClient("http://h/api", reconnection_attempts=-1)
    with pytest.raises(ConfigurationError, match="non-negative"):
        EventSubscriber("http://h/api", reconnection_attempts=-1)


def test_selection_follows_the_configuration() -> None:
    """get_events_client/get_events_subscriber go to the configured server, and refuse to
    guess when nothing is configured."""
    with temporary_settings(api_url="http://127.0.0.1:9/api", api_key="k"):
        client = get_events_client()
        subscriber = get_events_subscriber(named("acme."))
    assert isinstance(client, WebSocketEventsClient)
    assert client.server_type is ServerType.SERVER
    assert client.connection.api_key == "k"
    assert subscriber.url == "http://127.0.0.1:9/api/events/out"
    with temporary_settings(ephemeral=False), pytest.raises(ConfigurationError):
        get_events_client()


# Scripted servers: an ASGI app in this process that plays one script per connection

Script = list[tuple[str, Any]]
"""Steps after the handshake: ("event", ReceivedEvent), ("close", (code, reason)),
("read", n) to take n frames (events in), ("stall", None) to wait for the client to go."""


class ScriptedServer:
    """Plays the handshake, then the next script, on each WebSocket connection; records the
    filters asked for and the frames received."""

    def __init__(
        self,
        *scripts: Script,
        auth_reply: dict[str, Any] | None = None,
        healthy: int | None = None,
    ) -> None:
        self.scripts = list(scripts)
        self.auth_reply = auth_reply or {"type": "auth_success"}
        self.healthy = healthy  # connections after this many fail their handshake (1011)
        self.connections = 0
        self.filters: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # the whole subscription messages
        self.frames: list[list[str]] = []
        self.handled_before_pong: list[int] = []

    def connection(self) -> Connection:
        return Connection(api_url="http://scripted/api", app=self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await took_the_handshake(scope, receive, send):
            return
        self.connections += 1
        if self.healthy is not None and self.connections > self.healthy:
            await send(STORAGE_DOWN)
            return
        await send({"type": "websocket.send", "text": json.dumps(self.auth_reply)})
        if self.auth_reply["type"] != "auth_success":
            await send({"type": "websocket.close", "code": 1008, "reason": "refused"})
            return
        if scope["path"].endswith("/events/out"):
            self.requests.append(json.loads((await receive())["text"]))
            self.filters.append(self.requests[-1]["filter"])
        frames: list[str] = []
        self.frames.append(frames)
        script = self.scripts.pop(0) if self.scripts else [("close", (1000, "no more"))]
        for step, argument in script:
            await self._play(step, argument, receive, send, frames)

    async def _play(
        self, step: str, argument: Any, receive: Any, send: Any, frames: list[str]
    ) -> None:
        if step == "event":
            envelope = {"type": "event", "event": msgspec.to_builtins(argument)}
            await send({"type": "websocket.send", "text": json.dumps(envelope)})
        elif step == "positioned":  # (event, position), as localevents sends live events
            event, position = argument
            envelope = {"type": "event", "event": msgspec.to_builtins(event), "position": position}
            await send({"type": "websocket.send", "text": json.dumps(envelope)})
        elif step == "close":
            await send({"type": "websocket.close", "code": argument[0], "reason": argument[1]})
        elif step == "read":
            for _ in range(argument):
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                await anyio.sleep(0.01)  # slow handling: an early pong would be noticed
                frames.append(message["text"])
        elif step == "stall":
            while (await receive())["type"] != "websocket.disconnect":
                pass


def received_event(name: str, later: timedelta = timedelta()) -> ReceivedEvent:
    occurred = datetime.now(UTC) + later
    return ReceivedEvent(
        occurred=occurred, event=name, resource=Resource({ID: "acme.widget"}), id=uuid.uuid4()
    )


def frame_names(frames: list[str]) -> list[str]:
    return [json.loads(frame)["event"] for frame in frames]


async def test_a_clean_close_ends_the_iteration() -> None:
    """A server closing with 1000 ends `async for` (no reconnect) and it stays ended."""
    first, second = received_event("a"), received_event("b")
    server = ScriptedServer([("event", first), ("event", second), ("close", (1000, "bye"))])
    with anyio.fail_after(PATIENCE):
        async with EventSubscriber(connection=server.connection()) as subscriber:
            names = [e.event async for e in subscriber]
            assert [e async for e in subscriber] == []
    assert names == ["a", "b"]
    assert subscriber.reconnects == 0


async def test_reconnect_on_clean_close_replays_from_the_last_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With reconnect_on_clean_close, a clean close reconnects; the new connection asks
    for events since one minute before the last one seen, and repeats are dropped."""
    connected = datetime.now(UTC)
    clock = iter([connected])  # the first connect; the event arrives an hour later
    monkeypatch.setattr(_subscriber, "now_utc", lambda: next(clock, connected + HOUR))
    first = received_event("a", later=timedelta(seconds=30))
    second = received_event("b")
    server = ScriptedServer(
        [("event", first), ("close", (1000, "restarting"))],
        [("event", first), ("event", second), ("close", (1001, "going away"))],
    )
    subscriber = EventSubscriber(connection=server.connection(), reconnect_on_clean_close=True)
    with anyio.fail_after(PATIENCE):
        async with subscriber:
            names = [e.event for e in await take(subscriber, 2)]
    assert names == ["a", "b"]
    assert subscriber.reconnects == 1
    assert replayed_since(server, 0) == connected - timedelta(minutes=1)
    assert replayed_since(server, 1) == first.occurred - timedelta(minutes=1)
    assert "until" not in server.filters[1]["occurred"]  # open-ended (D7)


async def test_a_server_that_gives_positions_is_resumed_after_the_last_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the server says where each event stands, a reconnect resumes right after the
    last event delivered, over the first connection's window: events stored late with an
    older ``occurred`` (a backlog, an import) are not skipped."""
    connected = datetime.now(UTC)
    clock = iter([connected])
    monkeypatch.setattr(_subscriber, "now_utc", lambda: next(clock, connected + HOUR))
    backfilled = received_event("a")
    live = received_event("b", later=timedelta(minutes=30))
    late = received_event("c", later=timedelta(minutes=-0.5))
    server = ScriptedServer(
        [("event", backfilled), ("positioned", (live, "s:7")), ("close", (1013, "behind"))],
        [("positioned", (late, "s:9")), ("close", (1000, "bye"))],
    )
    subscriber = EventSubscriber(connection=server.connection())
    with anyio.fail_after(PATIENCE):
        async with subscriber:
            names = [e.event async for e in subscriber]
    assert names == ["a", "b", "c"]
    assert server.requests[0]["after"] == "start"  # the store's order from the first event
    assert server.requests[1]["after"] == "s:7"
    assert (
        replayed_since(server, 1) == replayed_since(server, 0) == connected - timedelta(minutes=1)
    )


async def test_a_replay_the_server_cannot_resume_repeats_no_event() -> None:
    """A server restarted on another file cannot resume from a position in the old one and
    sends the whole window again: the events already delivered are dropped by id."""
    first, second, third = (received_event(name) for name in "abc")
    server = ScriptedServer(
        [("positioned", (first, "1:0")), ("positioned", (second, "1:1")), ("close", (1012, ""))],
        [
            ("positioned", (first, "2:0")),
            ("positioned", (second, "2:1")),
            ("positioned", (third, "2:2")),
            ("close", (1000, "bye")),
        ],
    )
    subscriber = EventSubscriber(connection=server.connection())
    with anyio.fail_after(PATIENCE):
        async with subscriber:
            names = [e.event async for e in subscriber]
    assert names == ["a", "b", "c"]
    assert server.requests[1]["after"] == "1:1"


def replayed_since(server: ScriptedServer, connection: int) -> datetime:
    """The start of the window a connection asked for."""
    since = server.filters[connection]["occurred"]["since"]
    return msgspec.convert(since, type=datetime)


async def test_an_event_stamped_in_the_future_does_not_move_the_window_past_now() -> None:
    """An event whose clock runs half an hour ahead counts as occurring now: the next
    connection still asks for the last minute, not for events after the future stamp
    (which would skip every ordinary event stored meanwhile)."""
    ahead = received_event("ahead", later=timedelta(minutes=30))
    server = ScriptedServer(
        [("event", ahead), ("close", (1011, "restarting"))],
        [("event", received_event("b")), ("close", (1000, "done"))],
    )
    subscriber = EventSubscriber(connection=server.connection())
    with anyio.fail_after(PATIENCE):
        async with subscriber:
            names = [e.event async for e in subscriber]
    assert names == ["ahead", "b"]
    assert replayed_since(server, 1) <= datetime.now(UTC) - timedelta(minutes=1)


def test_seen_ids_are_kept_until_the_window_passes_their_events() -> None:
    """The subscriber remembers a delivered id for as long as a backfill could send its
    event again (until the window starts after it), not for a fixed time, and keeps at
    most its capacity (the oldest delivered go first)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(4)]
    seen = _subscriber.SeenIds(capacity=3)
    for minute, event_id in enumerate(ids[:3]):
        seen.add(event_id, start + timedelta(minutes=minute))
    seen.forget_before(start + timedelta(minutes=1))
    assert [i in seen for i in ids] == [False, True, True, False]
    seen.forget_before(start)  # the window never moves back, but nothing breaks if asked
    seen.add(ids[3], start + timedelta(minutes=3))
    seen.add(uuid.uuid4(), start + timedelta(minutes=4))  # over capacity: the oldest goes
    assert [i in seen for i in ids] == [False, False, True, True]
    assert len(seen) == 3


async def test_each_successful_reconnect_restarts_the_failure_count() -> None:
    """Abnormal closes are retried without limit as long as each reconnect works and
    delivers: the budget counts consecutive failures only."""
    events = [received_event(f"e{i}") for i in range(4)]
    server = ScriptedServer(
        *[[("event", e), ("close", (1011, "oops"))] for e in events[:3]],
        [("event", events[3]), ("close", (1000, "done"))],
    )
    subscriber = EventSubscriber(connection=server.connection(), reconnection_attempts=1)
    with anyio.fail_after(PATIENCE):
        async with subscriber:
            names = [e.event async for e in subscriber]
    assert names == ["e0", "e1", "e2", "e3"]
    assert subscriber.reconnects == 3


async def test_connections_closed_before_delivering_anything_spend_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts each connection and closes it at once (1011: its backfill
    query fails) makes the subscriber raise once the budget is spent, instead of
    reconnecting for ever: a handshake alone does not count as a connection that worked."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    backfill_fails = [("close", (1011, "could not read stored events"))]
    server = ScriptedServer(*[backfill_fails] * 20)
    subscriber = EventSubscriber(connection=server.connection(), reconnection_attempts=2)
    with anyio.fail_after(PATIENCE), pytest.raises(WebSocketDisconnect) as raised:
        async with subscriber:
            await take(subscriber, 1)
    assert (raised.value.code, raised.value.reason) == (1011, "could not read stored events")
    assert server.connections == 3  # the first, then two reconnects


async def test_more_consecutive_failures_than_the_budget_are_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost connection whose reconnects keep failing raises the last failure once
    `reconnection_attempts` consecutive failures are spent."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    server = ScriptedServer([("event", received_event("a")), ("close", (1011, "lost"))], healthy=1)
    subscriber = EventSubscriber(connection=server.connection(), reconnection_attempts=2)
    with anyio.fail_after(PATIENCE), pytest.raises(WebSocketDisconnect) as raised:
        async with subscriber:
            await take(subscriber, 2)
    assert (raised.value.code, raised.value.reason) == (1011, "storage is down")
    assert server.connections == 3  # the first, then two failed reconnects


async def test_an_auth_failure_message_is_an_authentication_error() -> None:
    """A server answering the auth message with auth_failure raises AuthenticationError
    with its reason, for the subscriber and the producer."""
    server = ScriptedServer(auth_reply={"type": "auth_failure", "reason": "key expired"})
    with anyio.fail_after(PATIENCE):
        with pytest.raises(AuthenticationError, match="key expired"):
            async with EventSubscriber(connection=server.connection()):
                pass
        with pytest.raises(AuthenticationError, match="key expired"):
            async with WebSocketEventsClient(connection=server.connection()):
                pass


async def test_a_checkpoint_waits_until_the_app_has_handled_every_frame() -> None:
    """In-process, a pong comes back only once the app has taken every earlier frame, so
    a checkpoint confirms what the app has handled."""
    server = ScriptedServer([("read", 3), ("stall", None)])
    with anyio.fail_after(PATIENCE):
        async with WebSocketEventsClient(
            connection=server.connection(), checkpoint_every=3
        ) as client:
            for i in range(3):
                await client.emit(event(f"cp.{i}"))
            handled_at_pong = len(server.frames[0])
            unconfirmed = client.unconfirmed_count
    assert handled_at_pong == 3
    assert unconfirmed == 0


async def test_after_a_lost_connection_every_unconfirmed_event_is_resent_in_order() -> None:
    """A connection closed abnormally mid-stream is reopened and every event not yet
    confirmed is sent again, oldest first, before the new ones."""
    server = ScriptedServer(
        [("read", 2), ("close", (1011, "lost"))],
        [("read", 5), ("stall", None)],
    )
    with anyio.fail_after(PATIENCE):
        async with WebSocketEventsClient(connection=server.connection()) as client:
            for i in range(5):
                await client.emit(event(f"re.{i}"))
    assert frame_names(server.frames[0]) == ["re.0", "re.1"]
    assert frame_names(server.frames[1]) == [f"re.{i}" for i in range(5)]
    assert client.reconnects == 1


async def test_flush_gives_up_on_a_server_that_accepts_but_cannot_store(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that takes each connection and closes it (1011) once a frame arrives
    (its storage is down) makes `flush()` raise once the reconnect budget is spent: a
    reconnect that resends the events does not confirm them. Leaving the block then ends
    too, with the events still unconfirmed. The warning says delivering failed, not
    connecting."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    storage_down = [("read", 1), ("close", (1011, "could not store events"))]
    server = ScriptedServer(*[storage_down] * 20)
    client = WebSocketEventsClient(connection=server.connection(), reconnection_attempts=2)
    with anyio.fail_after(PATIENCE):
        async with client:
            await client.emit(event("down.1"))
            with pytest.raises(WebSocketDisconnect) as raised:
                await client.flush()
            tried = server.connections
    assert (raised.value.code, raised.value.reason) == (1011, "could not store events")
    assert tried <= 4  # the first connection, then the budget of two reconnects (and one)
    assert client.unconfirmed_count == 1
    assert "Unable to deliver events to 'http://scripted/api/events/in'" in caplog.text
    assert "Unable to connect" not in caplog.text


async def test_large_events_stream_both_ways(tmp_path: Path) -> None:
    """Events near the 1.5 MB limit go through the producer and the subscriber (httpx-ws's
    64 KiB message default is raised)."""
    big = event("big.one", payload_bytes=1_400_000)
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE):
            async with get_events_subscriber(named("big.")) as subscriber:
                async with get_events_client() as producer:
                    await producer.emit(big)
                [received] = await take(subscriber, 1)
    assert received.id == big.id
    assert received.payload == big.payload


async def test_an_event_over_the_size_limit_is_refused_at_emit_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    """The producer refuses an event over LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES at `emit`
    (EventTooLarge, nothing queued), so it is never resent ahead of the events after it;
    those are stored."""
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE), temporary_settings(events_maximum_size_bytes=5000):
            async with get_events_client() as producer:
                with pytest.raises(EventTooLarge, match=r"> 5000 bytes"):
                    await producer.emit(event("size.big", payload_bytes=10_000))
                assert producer.unconfirmed_count == 0
                small = [event(f"size.small.{i}") for i in range(3)]
                for each in small:
                    await producer.emit(each)
            found = await stored("size.")
    assert [e.id for e in found] == [e.id for e in small]


# In-process (ephemeral mode)


async def test_a_slow_in_process_subscriber_is_told_and_loses_nothing(tmp_path: Path) -> None:
    """In-process too, a subscriber that reads nothing while far more events arrive than
    its queue holds is closed with 1013 (the app's sends wait for the reader, as on a
    socket, instead of piling up in memory), reconnects and gets every event once. Each
    batch is smaller than the queue: only a reader that holds the sends back can fill it."""
    count, batch = 2000, 50
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE), temporary_settings(events_subscriber_queue_size=100):
            async with EventSubscriber(filter=named("slow.")) as subscriber:
                received = await post_then_take(subscriber, None, count, batch, 2000)
    assert subscriber.reconnects >= 1
    assert [e.event for e in received] == [f"slow.{i:04d}" for i in range(count)]


async def post_then_take(
    subscriber: EventSubscriber,
    api_url: str | None,
    count: int,
    batch: int,
    payload: int,
    *,
    prefix: str = "slow",
) -> list[ReceivedEvent]:
    """Post ``count`` events named ``<prefix>.NNNN`` in batches while ``subscriber`` reads
    nothing, then read them all."""
    async with get_client(api_url=api_url) as client:
        for start in range(0, count, batch):
            names = [f"{prefix}.{i:04d}" for i in range(start, start + batch)]
            await client.create_events([event(name, payload) for name in names])
    return await take(subscriber, count)


async def test_emitted_events_are_stored(tmp_path: Path) -> None:
    """Events emitted over the in-process WebSocket are stored, each once, in order."""
    async with in_process(tmp_path):
        client = get_events_client()
        assert isinstance(client, WebSocketEventsClient)
        assert client.server_type is ServerType.EPHEMERAL
        with anyio.fail_after(PATIENCE):
            async with client:
                for i in range(5):
                    await client.emit(event(f"stored.{i}"))
        names = [e.event for e in await stored("stored.")]
    assert names == [f"stored.{i}" for i in range(5)]
    assert client.emitted == 5
    assert client.unconfirmed_count == 0


async def test_websocket_client_emits_only_inside_its_block(tmp_path: Path) -> None:
    """The websocket client, too, refuses emit() before and after its block."""
    async with in_process(tmp_path):
        client = WebSocketEventsClient()
        with pytest.raises(TypeError, match="context manager"):
            await client.emit(event("early"))
        with anyio.fail_after(PATIENCE):
            async with client:
                await client.emit(event("ok.1"))
        with pytest.raises(TypeError, match="context manager"):
            await client.emit(event("late"))


async def test_subscriber_gets_backfill_then_live_events_once_each(tmp_path: Path) -> None:
    """A subscriber receives the recent stored events, then live ones, in order, once."""
    async with in_process(tmp_path):
        async with get_client() as client:
            await client.create_events([event("feed.old.1"), event("feed.old.2")])
        with anyio.fail_after(PATIENCE):
            async with get_events_subscriber(named("feed.")) as subscriber:
                first = await take(subscriber, 2)
                live = [event(f"feed.live.{i}") for i in range(3)]
                async with get_events_client() as producer:
                    for live_event in live:
                        await producer.emit(live_event)
                rest = await take(subscriber, 3)
                async with get_client() as client:  # a repeated id is not delivered again
                    await client.create_events([live[0], event("feed.last")])
                last = await take(subscriber, 1)
    names = [e.event for e in first + rest + last]
    assert names == [
        "feed.old.1",
        "feed.old.2",
        "feed.live.0",
        "feed.live.1",
        "feed.live.2",
        "feed.last",
    ]


async def test_subscriber_keeps_to_the_filters_own_later_since(tmp_path: Path) -> None:
    """A filter whose ``since`` is later than the minute a subscriber replays gets no event
    that occurred before it, stored or live, as a query with it would (the subscriber
    replaced that since with the minute before connecting)."""
    since = datetime.now(UTC) + timedelta(seconds=30)
    wanted = EventFilter(
        event=EventNameFilter(prefix=["late."]), occurred=EventOccurredFilter(since=since)
    )

    def at(name: str, when: datetime) -> Event:
        return Event(event=name, resource=Resource({ID: "acme.widget"}), occurred=when)

    async with in_process(tmp_path):
        async with get_client() as client:
            await client.create_events([at("late.before.stored", datetime.now(UTC))])
        with anyio.fail_after(PATIENCE):
            async with get_events_subscriber(wanted) as subscriber:
                async with get_events_client() as producer:
                    await producer.emit(at("late.before.live", datetime.now(UTC)))
                    await producer.emit(at("late.after", since + timedelta(seconds=1)))
                [first] = await take(subscriber, 1)
        ahead = EventOccurredFilter(since=since, until=since + timedelta(minutes=1))
        async with get_client() as client:  # the same since (until: now, by default)
            page = await client.read_events(EventFilter(event=wanted.event, occurred=ahead))
            queried = [e.event for e in page.events]
    assert first.event == "late.after"
    assert queried == ["late.after"]


async def test_subscriber_leaves_the_callers_filter_alone(tmp_path: Path) -> None:
    """The filter given to a subscriber is copied, never changed, across connects (D15)."""
    caller_filter = named("mine.")
    before = localevents.EventFilter(
        occurred=caller_filter.occurred, event=caller_filter.event, order=caller_filter.order
    )
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE):
            async with EventSubscriber(filter=caller_filter) as subscriber:
                async with get_events_client() as producer:
                    await producer.emit(event("mine.1"))
                [received] = await take(subscriber, 1)
    assert received.event == "mine.1"
    assert caller_filter == before
    assert subscriber.filter is not caller_filter


OVER_UVICORN_LIMIT = 17 * 1024 * 1024
"""Payload bytes of an event whose frame is over uvicorn's own 16 MiB message limit."""


@pytest.mark.parametrize(
    ("payload_bytes", "server_env", "client_limit"),
    [
        # 1007 naming the event: the server's size limit is below the client's.
        pytest.param(8000, {"LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES": "4000"}, None, id="1007"),
        # 1009 naming nothing: a frame over the server's socket limit (the client's own
        # limit raised past it to let such a frame through).
        pytest.param(OVER_UVICORN_LIMIT, None, 10**9, id="1009"),
    ],
)
async def test_a_refused_event_is_dropped_and_the_rest_are_stored(
    shared_server: SharedServers,
    caplog: pytest.LogCaptureFixture,
    payload_bytes: int,
    server_env: dict[str, str] | None,
    client_limit: int | None,
) -> None:
    """An event the server refuses is logged and dropped, not resent forever; the events
    after it are stored (D3). With 1007 the close names the event; with 1009 (a frame over
    the server's WebSocket message limit) the producer drops its largest unconfirmed event,
    instead of sending it again on every reconnect and failing every emit after it."""
    prefix = unique("poison")
    poison = event(f"{prefix}.big", payload_bytes=payload_bytes)
    limit = (
        contextlib.nullcontext()
        if client_limit is None
        else temporary_settings(events_maximum_size_bytes=client_limit)
    )
    server = shared_server(env=server_env)
    with anyio.fail_after(PATIENCE), limit:
        async with WebSocketEventsClient(server.url, reconnection_attempts=2) as client:
            await client.emit(event(f"{prefix}.before"))
            await client.emit(poison)
            for i in range(3):
                await client.emit(event(f"{prefix}.after.{i}"))
        names = [e.event for e in await stored(f"{prefix}.", api_url=server.url)]
    assert names == [f"{prefix}.{name}" for name in ("before", "after.0", "after.1", "after.2")]
    assert str(poison.id) in caplog.text
    assert client.unconfirmed_count == 0


async def test_a_raised_event_size_limit_raises_the_servers_message_limit(
    shared_server: SharedServers,
) -> None:
    """With the event size limit raised past uvicorn's 16 MiB, ``localevents serve`` reads
    frames that big: an event within the raised limit is stored over ``/events/in``."""
    prefix = unique("raised")
    big = event(f"{prefix}.big", payload_bytes=OVER_UVICORN_LIMIT)
    limit = 40_000_000
    server = shared_server(env={"LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES": str(limit)})
    with anyio.fail_after(PATIENCE), temporary_settings(events_maximum_size_bytes=limit):
        async with WebSocketEventsClient(server.url, reconnection_attempts=0) as client:
            await client.emit(big)
        [found] = await stored(f"{prefix}.", api_url=server.url)
    assert found.id == big.id
    assert len(found.payload["blob"]) == OVER_UVICORN_LIMIT


async def test_event_from_another_threads_loop_reaches_a_subscriber(tmp_path: Path) -> None:
    """An event emitted on another thread's event loop reaches a subscriber on this one."""

    async def emit_from_thread() -> None:
        async with get_events_client() as producer:
            await producer.emit(event("thread.hello"))

    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE):
            async with get_events_subscriber(named("thread.")) as subscriber:
                thread = threading.Thread(target=anyio.run, args=(emit_from_thread,))
                thread.start()
                await anyio.to_thread.run_sync(thread.join)
                [received] = await take(subscriber, 1)
    assert received.event == "thread.hello"


# Real server processes


@contextlib.contextmanager
def restartable(tmp_path: Path, *args: str) -> Iterator[tuple[ServerProcess, contextlib.ExitStack]]:
    """A server, and the stack its restarts on the same port are kept in."""
    with contextlib.ExitStack() as servers:
        yield servers.enter_context(serve(tmp_path / "events.duckdb", *args)), servers


def restart(server: ServerProcess, servers: contextlib.ExitStack, tmp_path: Path) -> None:
    """SIGKILL ``server``, then start another on the same file and port."""
    server.kill()
    servers.enter_context(serve(tmp_path / "events.duckdb", port=server.port))


@pytest.mark.slow
async def test_producer_survives_a_server_crash_with_every_event_stored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server SIGKILLed and restarted mid-stream ends up with every event exactly once:
    unconfirmed events are resent, and resends are not duplicated."""
    count, crash_at = 300, 120
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.1)  # 600 attempts: a minute, as 60 x 1 s
    with restartable(tmp_path) as (server, servers):
        client = WebSocketEventsClient(server.url, checkpoint_every=25, reconnection_attempts=600)
        with anyio.fail_after(PATIENCE * 2):
            async with client, anyio.create_task_group() as restarting:
                for i in range(count):
                    if i == crash_at:
                        restarting.start_soon(
                            anyio.to_thread.run_sync, restart, server, servers, tmp_path
                        )
                    await client.emit(event(f"crash.{i:03d}"))
            names = [e.event for e in await stored("crash.", server.url)]
    assert client.reconnects >= 1
    assert len(names) == len(set(names)) == count
    assert names == [f"crash.{i:03d}" for i in range(count)]


@pytest.mark.slow
async def test_subscriber_across_a_server_restart_gets_every_event_once(tmp_path: Path) -> None:
    """A subscriber whose server is killed and restarted reconnects, replays the window and
    delivers every event exactly once, in order."""
    with restartable(tmp_path) as (server, servers):
        subscriber = EventSubscriber(server.url, filter=named("restart."), reconnection_attempts=60)
        with anyio.fail_after(PATIENCE * 2):
            async with subscriber:
                async with get_client(api_url=server.url) as client:
                    await client.create_events([event(f"restart.{i}") for i in range(5)])
                before = await take(subscriber, 5)
                await anyio.to_thread.run_sync(restart, server, servers, tmp_path)
                async with get_client(api_url=server.url) as client:
                    await client.create_events([event(f"restart.{i}") for i in range(5, 10)])
                after = await take(subscriber, 5)
    assert subscriber.reconnects >= 1
    assert [e.event for e in before + after] == [f"restart.{i}" for i in range(10)]


@pytest.mark.slow
async def test_slow_subscriber_is_told_and_loses_nothing(shared_server: SharedServers) -> None:
    """A subscriber that reads nothing while far more events arrive than its server-side
    queue holds is closed with 1013, reconnects and still gets every event exactly once."""
    count, batch = 3000, 250
    prefix = unique("slow")
    server = shared_server(env=SMALL_QUEUE)
    subscriber = EventSubscriber(server.url, filter=named(f"{prefix}."))
    with anyio.fail_after(PATIENCE * 2):
        async with subscriber:
            received = await post_then_take(
                subscriber, server.url, count, batch, 20_000, prefix=prefix
            )
    assert subscriber.reconnects >= 1
    assert [e.event for e in received] == [f"{prefix}.{i:04d}" for i in range(count)]


@pytest.mark.slow
async def test_slow_subscriber_loses_nothing_stored_out_of_occurred_order(
    shared_server: SharedServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events stored late with an older ``occurred`` (half of them, stamped five minutes
    back in a subscription opened ten minutes ago) still all arrive, each once, when the
    subscriber falls behind (1013) and reconnects: it resumes where it stopped in the
    server's order, not from the newest ``occurred`` it saw."""
    opened = datetime.now(UTC) - timedelta(minutes=10)
    clock = iter([opened])  # the first connect; the real time after that
    monkeypatch.setattr(_subscriber, "now_utc", lambda: next(clock, None) or datetime.now(UTC))
    count, batch = 3000, 250
    prefix = unique("skew")
    server = shared_server(env=SMALL_QUEUE)
    subscriber = EventSubscriber(server.url, filter=named(f"{prefix}."))
    with anyio.fail_after(PATIENCE * 2):
        async with subscriber:
            async with get_client(api_url=server.url) as client:
                for start in range(0, count, batch):
                    events = [
                        event(f"{prefix}.{i:04d}", 20_000) for i in range(start, start + batch)
                    ]
                    for late in events[1::2]:
                        late.occurred -= timedelta(minutes=5)
                    await client.create_events(events)
            received = await take(subscriber, count)
    assert subscriber.reconnects >= 1
    assert [e.event for e in received] == [f"{prefix}.{i:04d}" for i in range(count)]


@pytest.mark.slow
async def test_api_key_streams_both_ways(shared_server: SharedServers) -> None:
    """With the server's key, a producer and a subscriber authenticate in-band and stream."""
    prefix = unique("keyed")
    server = shared_server("--api-key", "s3cret")
    with anyio.fail_after(PATIENCE):
        async with EventSubscriber(
            server.url, api_key="s3cret", filter=named(f"{prefix}.")
        ) as subscriber:
            async with WebSocketEventsClient(server.url, api_key="s3cret") as client:
                await client.emit(event(f"{prefix}.1"))
            [received] = await take(subscriber, 1)
    assert received.event == f"{prefix}.1"


async def test_a_handshake_that_stalls_past_the_servers_timeout_connects_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose first ``auth`` reaches the server after its handshake timeout (a
    stalled network) is closed with 1013, and the producer and the subscriber connect
    again: it is not taken for a refused key."""
    import localevents.server._handshake as handshake

    monkeypatch.setattr(handshake, "HANDSHAKE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    handshake_as_sent = _websocket._handshake
    stalled: list[bool] = []

    async def stall_the_first(session: Any, api_key: str | None) -> None:
        if not stalled:
            stalled.append(True)
            await anyio.sleep(0.6)
        await handshake_as_sent(session, api_key)

    monkeypatch.setattr(_websocket, "_handshake", stall_the_first)
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE):
            async with EventSubscriber(filter=named("stalled.")) as subscriber:
                stalled.clear()
                async with WebSocketEventsClient() as client:
                    await client.emit(event("stalled.1"))
                [received] = await take(subscriber, 1)
    assert received.event == "stalled.1"
    assert stalled == [True]


@pytest.mark.slow
@pytest.mark.parametrize(("key", "reason"), [("wrong", "Invalid token"), (None, "no token")])
async def test_a_refused_key_is_a_clear_error_without_retries(
    shared_server: SharedServers, monkeypatch: pytest.MonkeyPatch, key: str | None, reason: str
) -> None:
    """A wrong or missing key raises AuthenticationError with the server's reason at once:
    no reconnect is attempted."""
    retries: list[BaseException] = []

    async def count_retry(self: _websocket.Reconnects, error: BaseException) -> None:
        retries.append(error)
        raise error

    monkeypatch.setattr(_websocket.Reconnects, "after_failure", count_retry)
    server = shared_server("--api-key", "s3cret")
    with anyio.fail_after(PATIENCE):
        with pytest.raises(AuthenticationError, match=reason) as producer_error:
            async with WebSocketEventsClient(server.url, api_key=key):
                pass
        with pytest.raises(AuthenticationError, match=reason):
            async with EventSubscriber(server.url, api_key=key):
                pass
    assert retries == []
    assert not isinstance(producer_error.value, HTTPStatusError)


@pytest.mark.slow
async def test_unreachable_server_gives_up_after_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a connection has worked, connection refused (a server restarting) is retried
    `reconnection_attempts` times, then raised with a warning naming the URL."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    caplog.set_level(logging.WARNING, logger="localevents.client")
    with serve(tmp_path / "events.duckdb") as server, anyio.fail_after(PATIENCE):
        url = server.url
        async with WebSocketEventsClient(url, reconnection_attempts=3) as client:
            await client.emit(event("gone"))
            server.stop()
            with pytest.raises(httpx.ConnectError):
                await client.flush()
    assert f"Unable to connect to '{url}/events/in' after 4 attempts" in caplog.text


@contextlib.contextmanager
def hung(server: ServerProcess) -> Iterator[threading.Event]:
    """``server`` stopped (SIGSTOP: a hung process, whose kernel keeps its connections open
    and reads nothing more) until the block ends, or, if the code under test hangs with it,
    until a watchdog resumes it after :data:`PATIENCE` seconds and sets the event it yields."""
    rescued = threading.Event()

    def rescue() -> None:
        rescued.set()
        os.kill(server.pid, signal.SIGCONT)

    watchdog = threading.Timer(PATIENCE, rescue)
    os.kill(server.pid, signal.SIGSTOP)
    watchdog.start()
    try:
        yield rescued
    finally:
        watchdog.cancel()
        os.kill(server.pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def delivering(client: WebSocketEventsClient, sent: list[str]) -> AsyncIterator[None]:
    """``client`` open, with its first event (named ``sent[0]``) stored."""
    async with client:
        await client.emit(event(sent[0]))
        await client.flush()
        yield


async def emit_until_stuck(client: WebSocketEventsClient, sent: list[str]) -> None:
    """Emit 100 KB events until one blocks (the socket's buffers are full) or fails."""
    while True:
        sent.append(f"hung.{len(sent):04d}")
        await client.emit(event(sent[-1], payload_bytes=100_000))


STUCK = 0.5
"""Seconds of a caller's timeout around each emit: far more than one takes while the socket's
buffers have room (milliseconds), so it fires once an emit is stuck."""


async def emit_until_one_times_out(
    client: WebSocketEventsClient, sent: list[str]
) -> anyio.CancelScope:
    """Emit 100 KB events, each inside a caller's timeout of :data:`STUCK` seconds, until
    one is stuck (the socket's buffers are full) and its timeout fires; that timeout's
    scope."""
    while True:
        sent.append(f"hung.{len(sent):04d}")
        with anyio.move_on_after(STUCK) as waited:
            await client.emit(event(sent[-1], payload_bytes=100_000))
        if waited.cancelled_caught:
            return waited


async def test_an_emit_stuck_on_a_hung_server_can_be_cancelled_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """A caller's timeout ends an emit blocked in a write to a server that reads nothing:
    the connection is cut instead of waiting to say goodbye, every event stays unconfirmed,
    and all are stored once the server works again."""
    with serve(tmp_path / "events.duckdb") as server:
        sent = ["hung.start"]
        client = WebSocketEventsClient(server.url, checkpoint_every=1_000_000)
        async with delivering(client, sent):
            with hung(server) as rescued:
                waited = await emit_until_one_times_out(client, sent)
                assert not rescued.is_set(), "the emit held on until the server came back"
            assert waited.cancelled_caught
            assert client.unconfirmed_count == len(sent) - 1
            await client.flush()
        names = [e.event for e in await stored("hung.", server.url)]
    assert sorted(names) == sorted(sent)


async def test_a_checkpoint_on_a_hung_server_fails_after_the_pong_timeout_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint whose pong does not come (the server reads the ping, then hangs) fails
    after `PONG_TIMEOUT` with a message saying so, instead of waiting for httpx-ws's keepalive
    (20-40 s); the event stays unconfirmed and is stored by the next flush."""
    monkeypatch.setattr(_websocket, "PONG_TIMEOUT", 1.0)
    with serve(tmp_path / "events.duckdb") as server:
        sent = ["hung.start", "hung.pending"]
        client = WebSocketEventsClient(server.url, reconnection_attempts=0)
        async with delivering(client, sent):
            await client.emit(event(sent[1]))
            with hung(server) as rescued, pytest.raises(TimeoutError) as failed:
                await client.flush()
            assert not rescued.is_set(), "the checkpoint waited until the server came back"
            assert "did not answer a ping within 1 s" in str(failed.value)
            assert client.unconfirmed_count == 1
            await client.flush()
        names = [e.event for e in await stored("hung.", server.url)]
    assert sorted(names) == sorted(sent)


async def test_emits_interrupted_mid_write_in_process_are_resent_and_the_block_goes_on(
    tmp_path: Path,
) -> None:
    """Timeouts that interrupt in-process emits at every point of the write cut the
    session; the block goes on (no error from the cut session's goodbye), every event whose
    emit finished is stored once, and so are the interrupted ones the client had taken."""
    names = [f"cut.{i:03d}" for i in range(120)]
    interrupted: list[str] = []
    async with in_process(tmp_path):
        client = WebSocketEventsClient(checkpoint_every=7)
        with anyio.fail_after(PATIENCE):
            async with client:
                for i, name in enumerate(names):
                    with anyio.move_on_after(None if i % 3 else (i % 12 + 1) * 0.0001) as scope:
                        await client.emit(event(name, payload_bytes=20_000))
                    if scope.cancelled_caught:
                        interrupted.append(name)
                await client.flush()
        stored_names = [e.event for e in await stored("cut.")]
    assert client.reconnects >= 1  # some write was cut
    assert len(stored_names) == len(set(stored_names))
    assert set(names) - set(interrupted) <= set(stored_names) <= set(names)
    assert set(interrupted) & set(stored_names)  # taken before the cut: resent


async def test_a_block_left_while_an_emit_was_stuck_logs_nothing_misleading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The periodic checkpoint that waited for a stuck emit gets its turn as the block
    closes: it must bow out, not try to reconnect and warn about an unopened client."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    with serve(tmp_path / "events.duckdb") as server:
        sent = ["hung.start"]
        client = WebSocketEventsClient(server.url, checkpoint_interval=0.2)

        async def leave_while_stuck(stopped: contextlib.ExitStack) -> None:
            async with client:
                await client.emit(event(sent[0]))
                rescued = stopped.enter_context(hung(server))  # until the block has closed
                await emit_until_one_times_out(client, sent)
                raise LookupError(rescued)

        with contextlib.ExitStack() as stopped, pytest.raises(LookupError) as left:
            await leave_while_stuck(stopped)
    rescued = left.value.args[0]
    assert not rescued.is_set(), "leaving the block held on until the server came back"
    assert "SocketOpener" not in caplog.text
    assert "Could not confirm" not in caplog.text


async def test_an_emit_to_a_hung_server_fails_in_bounded_time_and_keeps_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nobody to cancel it, a write the server never reads fails after the write
    timeout, naming the likely cause; connecting to the hung server fails naming the URL;
    the events stay unconfirmed and are delivered once the server works again."""
    monkeypatch.setattr(_websocket, "WRITE_TIMEOUT", 1.0)
    with serve(tmp_path / "events.duckdb") as server:
        sent = ["hung.start"]
        client = WebSocketEventsClient(server.url, reconnection_attempts=0)
        async with delivering(client, sent):
            with hung(server) as rescued:
                async with anyio.create_task_group() as both:  # each waits out its own timeout
                    both.start_soon(connecting_fails_naming_the_url, server.url)
                    with pytest.raises(TimeoutError, match="the server read nothing for 1 s"):
                        await emit_until_stuck(client, sent)
                assert not rescued.is_set(), "the emit held on until the server came back"
            assert client.unconfirmed_count == len(sent) - 1
            await client.flush()
        names = [e.event for e in await stored("hung.", server.url)]
    assert sorted(names) == sorted(sent)


async def connecting_fails_naming_the_url(api_url: str) -> None:
    """A producer connecting to the (hung) server at ``api_url`` fails, naming the URL."""
    with pytest.raises(httpx.TimeoutException) as handshake:
        async with WebSocketEventsClient(api_url, reconnection_attempts=0):
            pass
    assert f"{api_url}/events/in did not answer in time" in str(handshake.value)


@pytest.mark.parametrize("side", ["producer", "subscriber"])
async def test_a_socket_with_no_server_there_names_the_address_in_one_line(side: str) -> None:
    """Nothing listens at the URL: the producer and the subscriber raise what the HTTP client
    does, naming the address and the setting that chooses it, not httpx's bare text."""
    url = f"http://127.0.0.1:{free_port()}/api"
    client: WebSocketEventsClient | EventSubscriber = (
        WebSocketEventsClient(url, reconnection_attempts=0)
        if side == "producer"
        else EventSubscriber(url, reconnection_attempts=0)
    )
    with pytest.raises(ServerUnreachable) as caught:
        async with client:
            pass
    assert url.removesuffix("/api") in str(caught.value)
    assert "LOCALEVENTS_API_URL" in str(caught.value)
    assert isinstance(caught.value, httpx.ConnectError)


async def test_a_later_subscriber_goes_on_after_an_earlier_ones_position(tmp_path: Path) -> None:
    """A consumer that saves ``position`` and restarts with ``after=`` gets exactly what it
    had not got yet, in the store's order, even events stored late with an older
    ``occurred`` (beyond the one-minute window a fresh subscriber starts with)."""
    async with in_process(tmp_path):
        async with get_client() as client:
            await client.create_events([event("resume.1"), event("resume.2")])
        with anyio.fail_after(PATIENCE):
            async with get_events_subscriber(named("resume.")) as earlier:
                assert earlier.position is None
                assert [e.event for e in await take(earlier, 1)] == ["resume.1"]
                saved = earlier.position
            assert saved is not None
            backlog = msgspec.structs.replace(
                event("resume.3"), occurred=datetime.now(UTC) - timedelta(minutes=5)
            )
            async with get_client() as client:
                await client.create_events([backlog, event("resume.4")])
            async with get_events_subscriber(named("resume."), after=saved) as later:
                assert later.position == saved  # nothing returned yet: still the given one
                names = [e.event for e in await take(later, 3)]
                assert later.position not in (None, saved)
            async with get_events_subscriber(named("resume.")) as fresh:  # no position
                fresh_names = [e.event for e in await take(fresh, 3)]
    assert names == ["resume.2", "resume.3", "resume.4"]
    assert fresh_names == ["resume.1", "resume.2", "resume.4"]  # resume.3 is older than a minute
