"""How the WebSocket clients (producer, subscriber, background worker) fail: refused frames
that name no event, a first open that failed, a refused subscription, a wrong API URL, and a
server that is not there (fail fast at first, bounded at exit)."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _servers import clean_environ, free_port, serve
from _sockets import AUTH_SUCCESS, took_the_handshake

from localevents import (
    AuthenticationError,
    DatabaseInUseError,
    Event,
    EventFilter,
    EventNameFilter,
    EventSubscriber,
    EventTextFilter,
    InvalidRequestError,
    ReceivedEvent,
    Resource,
    ServerUnreachable,
    ServiceUnavailable,
    WebSocketEventsClient,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents.client import EventsWorker, _websocket
from localevents.client import _worker as worker_module
from localevents.client._connection import Connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from _servers import ServerProcess

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds any one step may take before the test fails instead of hanging."""
NOT_A_UUID = "order-42"


def event(name: str) -> Event:
    return Event(event=name, resource=Resource({ID: "acme.widget"}))


def unreadable_id_event(name: str) -> Event:
    """An event whose id is not a UUID, as a frame the server cannot read the id of
    (``Event(...)`` may refuse such an id itself: set past its checks)."""
    built = event(name)
    msgspec.structs.force_setattr(built, "id", NOT_A_UUID)
    return built


async def stored(prefix: str, api_url: str | None = None) -> list[ReceivedEvent]:
    """Every stored event whose name starts with ``prefix``, oldest first."""
    async with get_client(api_url=api_url) as client:
        query = EventFilter(event=EventNameFilter(prefix=[prefix]), order="ASC")
        return [found async for found in client.iter_events(query, page_size=1000)]


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[None]:
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        yield


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The failures a client would have reconnected after (each is raised instead)."""
    retried: list[BaseException] = []

    async def record(self: _websocket.Reconnects, error: BaseException, **_: Any) -> None:
        retried.append(error)
        raise error

    monkeypatch.setattr(_websocket.Reconnects, "after_failure", record)
    return retried


@pytest.fixture
def open_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of every WebSocket connection attempt, in order, from any thread."""
    attempts: list[str] = []
    original = _websocket.SocketOpener.open

    async def counted(self: _websocket.SocketOpener, reader: Any) -> _websocket.Socket:
        attempts.append(self.url)
        return await original(self, reader)

    monkeypatch.setattr(_websocket.SocketOpener, "open", counted)
    return attempts


@pytest.fixture
def no_worker_left_behind() -> Iterator[None]:
    yield
    assert EventsWorker.drain_all(PATIENCE)


# 1. A refused frame whose id the server cannot read


async def test_a_frame_refused_without_an_id_is_dropped_and_the_others_are_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server closes 1007 without naming an id (it cannot read it): the client finds the
    frame that is not a valid event, logs and drops it, counts it in ``refused``, and the
    events around it are stored; flush() does not raise, and nothing stays unconfirmed."""
    async with in_process(tmp_path):
        with anyio.fail_after(PATIENCE):
            async with WebSocketEventsClient(checkpoint_interval=3600.0) as client:
                await client.emit(event("unread.before"))
                await client.emit(unreadable_id_event("unread.bad"))
                for index in range(3):
                    await client.emit(event(f"unread.after.{index}"))
                await client.flush()
                await client.emit(event("unread.later"))
                await client.flush()
                unconfirmed = client.unconfirmed_count
        names = [e.event for e in await stored("unread.")]
    assert names == ["unread.before", *(f"unread.after.{i}" for i in range(3)), "unread.later"]
    assert unconfirmed == 0
    assert client.refused == 1
    [dropped] = [r for r in caplog.records if r.getMessage().startswith("Dropped event")]
    assert dropped.levelno == logging.ERROR
    assert NOT_A_UUID in dropped.getMessage()
    assert "Invalid UUID" in dropped.getMessage()


class RefusingApp:
    """An events server (ASGI, in this process) that stores frames by id, in order, and
    closes 1007 without naming any event when a frame's event name is ``refused``: a
    refusal for a reason this client cannot see (another server's rules)."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.stored: dict[str, str] = {}  # id -> event name, in the order first stored
        self.connections = 0

    def connection(self) -> Connection:
        return Connection(api_url="http://refusing/api", app=self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await took_the_handshake(scope, receive, send):
            return
        await send(AUTH_SUCCESS)
        self.connections += 1
        while (message := await receive())["type"] == "websocket.receive":
            frame = json.loads(message["text"])
            if frame["event"] == self.refused:
                reason = "invalid event: not allowed here"
                await send({"type": "websocket.close", "code": 1007, "reason": reason})
                return
            self.stored.setdefault(frame["id"], frame["event"])


async def test_a_refusal_naming_no_event_among_valid_ones_ends_and_loses_no_other_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 1007 naming no event, when every unconfirmed event is valid here, does not make the
    client resend the refused frame for ever: it drops the oldest unconfirmed event each time
    (logged; the server has handled the ones before the frame it refused), so flush() ends
    and every other event is stored."""
    server = RefusingApp(refused="strict.refused")
    names = ["strict.a", "strict.b", "strict.refused", "strict.c", "strict.d"]
    with anyio.fail_after(PATIENCE):
        async with WebSocketEventsClient(
            connection=server.connection(), checkpoint_interval=3600.0
        ) as client:
            for name in names:
                await client.emit(event(name))
            await client.flush()
            unconfirmed = client.unconfirmed_count
    assert list(server.stored.values()) == ["strict.a", "strict.b", "strict.c", "strict.d"]
    assert unconfirmed == 0
    assert server.connections <= len(names) + 1  # at most one reconnect per dropped event
    assert "Dropped event" in caplog.text
    assert "naming no event" in caplog.text


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_worker_counts_a_refused_event_as_failed_and_delivers_the_others(
    tmp_path: Path, backend: Any, no_worker_left_behind: None
) -> None:
    """A frame the server refuses without naming it does not wedge the background worker:
    flush() succeeds, the other events (before and after it) are stored, and statistics()
    counts the refused one as failed, not sent."""
    with ephemeral(database=str(tmp_path / "events.duckdb")):
        worker = EventsWorker.instance(backend=backend, checkpoint_interval=3600.0)
        worker.send(event("wedge.before"))
        worker.send(unreadable_id_event("wedge.bad"))
        for index in range(3):
            worker.send(event(f"wedge.after.{index}"))
        worker.flush(PATIENCE)
        worker.send(event("wedge.later"))
        worker.flush(PATIENCE)
        names = [e.event for e in anyio.run(stored, "wedge.")]
        statistics = worker.statistics()
    assert names == ["wedge.before", *(f"wedge.after.{i}" for i in range(3)), "wedge.later"]
    assert (statistics.sent, statistics.failed) == (5, 1)


# 2. A first open that failed (the events file in use by another process)


@contextlib.contextmanager
def held_by_another_process(database: Path) -> Iterator[subprocess.Popen[str]]:
    """``database`` held open by another process until the block ends."""
    script = textwrap.dedent(f"""
        import sys, localevents
        with localevents.ephemeral({str(database)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=clean_environ(),
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    """End the holding process (idempotent)."""
    for pipe in (holder.stdin, holder.stdout):
        if pipe is not None:
            pipe.close()
    holder.wait(PATIENCE)


@pytest.mark.parametrize("side", ["producer", "subscriber"])
async def test_a_client_whose_first_open_failed_can_be_entered_again(
    tmp_path: Path, side: str
) -> None:
    """In ephemeral mode, entering while another process holds the events file raises
    DatabaseInUseError and leaves the client closed: once the file is free, entering the
    same client object works (no "already open")."""
    database = tmp_path / "events.duckdb"
    with temporary_settings(database=str(database)):
        client: WebSocketEventsClient | EventSubscriber = (
            WebSocketEventsClient() if side == "producer" else EventSubscriber()
        )
        with held_by_another_process(database) as holder, anyio.fail_after(PATIENCE):
            with pytest.raises(DatabaseInUseError):
                async with client:
                    pass
            release(holder)
            async with client:
                if isinstance(client, WebSocketEventsClient):
                    await client.emit(event("reopened.1"))
            names = [e.event for e in await stored("reopened.")]
    assert names == (["reopened.1"] if side == "producer" else [])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_worker_recovers_once_the_events_file_is_free(
    tmp_path: Path, backend: Any, monkeypatch: pytest.MonkeyPatch, no_worker_left_behind: None
) -> None:
    """The background worker whose first open met a busy events file delivers its events
    once the other process lets the file go."""
    monkeypatch.setattr(worker_module, "RECONNECT_DELAY", 0.05)
    database = tmp_path / "events.duckdb"
    with temporary_settings(database=str(database)):
        with held_by_another_process(database) as holder:
            worker = EventsWorker.instance(backend=backend)
            worker.send(event("busy.1"))
            with pytest.raises(ServiceUnavailable, match="in use by PID"):
                worker.flush(PATIENCE)
        assert holder.returncode is not None
        flush_until_delivered(worker)
        with ephemeral(database=str(database)):
            names = [e.event for e in anyio.run(stored, "busy.")]
    assert names == ["busy.1"]


def flush_until_delivered(worker: EventsWorker) -> None:
    """flush() until it succeeds: an attempt that began while the file was held may still
    answer the first flush after the file is free."""
    for _ in range(100):
        with contextlib.suppress(ServiceUnavailable):
            worker.flush(PATIENCE)
            return
    pytest.fail("the worker never delivered once the events file was free")


# 3. A subscription the server refuses


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"filter": EventFilter(text=EventTextFilter(query="a" * 500))}, "Invalid filter: "),
        ({"after": "garbage"}, "'after' must be"),
    ],
    ids=["filter", "after"],
)
async def test_a_refused_subscription_is_an_invalid_request_without_retries(
    tmp_path: Path, options: dict[str, Any], reason: str, no_retries: list[BaseException]
) -> None:
    """A subscription the server refuses (a bad filter or ``after``: close 1002) raises the
    SDK's InvalidRequestError, one line with the URL and the server's reason, and is not
    retried (it would be refused again)."""
    async with in_process(tmp_path):
        subscriber = EventSubscriber(**options)
        with anyio.fail_after(PATIENCE), pytest.raises(InvalidRequestError) as refused:
            await read_all(subscriber)
    message = str(refused.value)
    assert message.startswith(f"the server refused the subscription at {subscriber.url}: ")
    assert reason in message
    assert "\n" not in message
    assert no_retries == []
    assert subscriber.reconnects == 0


async def read_all(subscriber: EventSubscriber) -> None:
    async with subscriber:
        async for _ in subscriber:
            pass


# 4. An API URL without /api


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an API key, shared by the tests of this module that only try to
    connect to it (nothing is stored)."""
    database = tmp_path_factory.mktemp("keyed-server") / "events.duckdb"
    with serve(database, "--api-key", "s3cret") as server:
        yield server


async def test_an_api_url_without_api_says_so_not_wrong_key(keyed_server: ServerProcess) -> None:
    """Against a localevents server, an API URL missing its /api gets a 403 to the upgrade:
    the producer and the subscriber say the URL is likely wrong (and may be the key, as from
    Prefect Cloud), instead of blaming the key only."""
    root = keyed_server.url.removesuffix("/api")
    with anyio.fail_after(PATIENCE):
        with pytest.raises(AuthenticationError) as producer:
            async with WebSocketEventsClient(root, api_key="s3cret"):
                pass
        with pytest.raises(AuthenticationError) as subscriber:
            async with EventSubscriber(root, api_key="s3cret"):
                pass
    for error, path in ((producer.value, "events/in"), (subscriber.value, "events/out")):
        message = str(error)
        assert message.startswith(
            f"the server refused the WebSocket upgrade at {root}/{path} (HTTP 403): "
            "is the API URL right (it ends in /api)?"
        )
        assert "API key" in message
        assert "\n" not in message


# 5. A server that is not there


@pytest.mark.parametrize("side", ["producer", "subscriber"])
async def test_a_first_connect_to_nothing_fails_at_once_without_retries(
    side: str, no_retries: list[BaseException]
) -> None:
    """Nothing listening at the URL of a client that never connected: ServerUnreachable at
    once (most likely a wrong URL), with the default reconnect budget, as the HTTP client."""
    url = f"http://127.0.0.1:{free_port()}/api"
    client = WebSocketEventsClient(url) if side == "producer" else EventSubscriber(url)
    with anyio.fail_after(PATIENCE), pytest.raises(ServerUnreachable):
        async with client:
            pass
    assert no_retries == []


async def test_after_a_flush_found_the_server_gone_leaving_tries_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    open_attempts: list[str],
) -> None:
    """A connected client whose server went away retries within its budget (a restart is
    worth waiting out); once that budget is spent on an unreachable server, leaving the
    block tries to confirm once, not with the whole budget again, and warns once."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    caplog.set_level(logging.WARNING, logger="localevents.client")
    with serve(tmp_path / "events.duckdb") as server, anyio.fail_after(PATIENCE):
        async with WebSocketEventsClient(server.url, reconnection_attempts=3) as client:
            await client.emit(event("gone.1"))
            server.stop()
            with pytest.raises(ServerUnreachable):
                await client.flush()
            after_flush = len(open_attempts)
    assert after_flush == 1 + 3  # the first connection, then the budget of three reconnects
    assert len(open_attempts) == after_flush + 1
    assert caplog.text.count("Unable to connect") == 1
    assert "1 events sent to" in caplog.text
    assert "were not confirmed" in caplog.text


def test_a_worker_that_found_its_server_gone_drains_with_one_attempt_and_one_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    open_attempts: list[str],
) -> None:
    """After a flush that failed because the server went away, draining the worker (as at
    exit) tries once, not the whole reconnect budget again, and one error says how many
    events were not delivered and why."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.0)
    caplog.set_level(logging.WARNING, logger="localevents.client")
    with serve(tmp_path / "events.duckdb") as server:
        options = {"api_url": server.url, "reconnection_attempts": 3}
        worker = EventsWorker(WebSocketEventsClient, options).start()
        try:
            worker.send(event("exit.1"))
            worker.flush(PATIENCE)
            server.stop()
            worker.send(event("exit.2"))
            with pytest.raises(ServiceUnavailable):
                worker.flush(PATIENCE)
            before_drain = len(open_attempts)
        finally:
            assert worker.drain(PATIENCE)
    assert len(open_attempts) == before_drain + 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "The events worker stopped: 1 events were not delivered (0 queued, 1 sent but not "
        "confirmed). Reason: ServerUnreachable: could not connect to"
    )


def test_a_worker_draining_with_its_server_gone_does_not_retry_each_queued_event(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    open_attempts: list[str],
) -> None:
    """Events still queued when a stop finds the server unreachable are not each given the
    reconnect budget (about 8 s apiece by default: a few outlasted the drain at exit); one
    error counts them as not delivered."""
    monkeypatch.setattr(_websocket, "RECONNECT_DELAY", 0.5)  # a budget takes 0.5 s or more
    caplog.set_level(logging.WARNING, logger="localevents.client")
    with serve(tmp_path / "events.duckdb") as server:
        options = {"api_url": server.url, "reconnection_attempts": 3}
        worker = EventsWorker(WebSocketEventsClient, options).start()
        try:
            worker.send(event("gone.0"))
            worker.flush(PATIENCE)
            server.stop()
            before = len(open_attempts)
            for index in range(1, 6):
                worker.send(event(f"gone.{index}"))
        finally:
            assert worker.drain(PATIENCE)
    assert len(open_attempts) - before <= 4  # one event's budget: the first try and 3 more
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[-1].startswith("The events worker stopped: 5 events were not delivered")


def test_a_waiting_flush_gets_a_fresh_attempt_not_the_next_scheduled_one(
    monkeypatch: pytest.MonkeyPatch, no_worker_left_behind: None
) -> None:
    """While the worker waits to open its client again, a flush() is answered by a fresh
    attempt at once, not after the worker's reconnect delay."""
    monkeypatch.setattr(worker_module, "RECONNECT_DELAY", 3600.0)
    url = f"http://127.0.0.1:{free_port()}/api"
    worker = EventsWorker(WebSocketEventsClient, {"api_url": url}).start()
    worker.send(event("waiting.1"))
    for _ in range(2):  # the second surely arrives after the first attempt has failed
        with pytest.raises(ServiceUnavailable, match="could not connect"):
            worker.flush(PATIENCE)
    assert worker.statistics().queued == 1


def test_a_script_emitting_to_nothing_exits_with_one_error() -> None:
    """A one-line script calling emit_event with the server down ends without spending a
    reconnect budget, and says once, as an error, what was not delivered and why."""
    script = textwrap.dedent("""
        import logging
        logging.basicConfig(format="%(levelname)s %(message)s")
        import localevents
        localevents.emit_event("acme.down", {"prefect.resource.id": "acme.widget"})
    """)
    url = f"http://127.0.0.1:{free_port()}/api"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_environ({"LOCALEVENTS_API_URL": url}),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.strip().splitlines()
    # (The worker may have said it will try again before the exit stopped it.)
    assert not [line for line in lines if "Unable to connect" in line], completed.stderr
    [error] = [line for line in lines if line.startswith("ERROR")]
    assert error.startswith(
        "ERROR The events worker stopped: 1 events were not delivered (1 queued). "
        "Reason: ServerUnreachable: could not connect to"
    )


class RefuseThenLockOut:
    """A scripted server: the first connection refuses its first frame, naming it (1007);
    every later one refuses the key (not retried)."""

    def __init__(self) -> None:
        self.connections = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return  # no lifespan
        await receive()  # websocket.connect
        self.connections += 1
        await send({"type": "websocket.accept", "subprotocol": "prefect"})
        await receive()  # the auth message
        if self.connections > 1:
            reply = {"type": "auth_failure", "reason": "key revoked"}
            await send({"type": "websocket.send", "text": json.dumps(reply)})
            return
        await send(AUTH_SUCCESS)
        message = await receive()
        refused = json.loads(message["text"])["id"]
        await send({"type": "websocket.close", "code": 1007, "reason": f"invalid event {refused}"})


def test_an_event_refused_while_its_own_emit_fails_counts_once_as_failed(
    no_worker_left_behind: None,
) -> None:
    """An event the server refuses, whose emit then fails too (the reconnect is refused), is
    one failure in the worker's statistics: it was counted as refused and as failed, and a
    "sent" it never had was taken back (sent -1, failed 2)."""
    server = RefuseThenLockOut()
    options = {"connection": Connection(api_url="http://x/api", app=server), "checkpoint_every": 1}
    worker = EventsWorker(WebSocketEventsClient, options).start()
    try:
        worker.send(event("refused.1"))
        with contextlib.suppress(ServiceUnavailable):
            worker.flush(PATIENCE)
        statistics = worker.statistics()
    finally:
        worker.drain(PATIENCE)
    assert (statistics.sent, statistics.failed) == (0, 1)
