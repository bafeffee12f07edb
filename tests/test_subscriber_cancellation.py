"""A consumer's timeout around the subscriber's wait (``fail_after`` around ``anext``): it may
fire while the subscriber reconnects, during its first connect or while it waits for an
event, and the subscriber goes on as if the wait had not been cut short."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
from _servers import serve, taken_port
from _sockets import AUTH_SUCCESS, took_the_handshake
from httpx_ws import WebSocketDisconnect

from localevents import (
    Event,
    EventFilter,
    EventNameFilter,
    EventSubscriber,
    ReceivedEvent,
    Resource,
    get_client,
)
from localevents.client._connection import Connection
from localevents.client._subscriber import CONNECTION_RECORD

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds any one step may take before the test fails instead of hanging."""
SHORT_WAIT = 0.2
"""A consumer's timeout that fires while nothing can arrive (not a measured time)."""
IN_THE_WAIT = 0.5
"""Seconds after a lost connection at which a consumer's timeout fires between two reconnects
to a server that is down: the first two attempts fail at once, then the subscriber waits
(``RECONNECT_DELAY``, 1 s) before the next."""


def named(prefix: str) -> EventFilter:
    return EventFilter(event=EventNameFilter(prefix=[prefix]))


async def post(api_url: str, names: list[str]) -> None:
    """Store events with these names through the HTTP API."""
    events = [Event(event=name, resource=Resource({ID: "acme.widget"})) for name in names]
    async with get_client(api_url=api_url) as client:
        await client.create_events(events)


async def take(subscriber: EventSubscriber, count: int) -> list[str]:
    """The names of the next ``count`` events of ``subscriber``."""
    names: list[str] = []
    with anyio.fail_after(PATIENCE):
        while len(names) < count:
            names.append((await anext(subscriber)).event)
    return names


class TimeoutOnLoss(logging.Handler):
    """Makes a ``fail_after`` scope time out ``delay`` seconds after the subscriber reports a
    lost connection (its :data:`CONNECTION_RECORD` "lost" record): a consumer's timeout that
    fires while the subscriber is reconnecting, whatever the machine's speed."""

    def __init__(self, delay: float) -> None:
        super().__init__(logging.DEBUG)
        self.delay = delay
        self.scope: anyio.CancelScope | None = None
        self.fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.scope is not None and getattr(record, CONNECTION_RECORD, None) == "lost":
            self.fired = True  # the subscriber's own task logs it: the scope is its to move
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + self.delay)


@contextlib.contextmanager
def timing_out_on_loss(delay: float) -> Iterator[TimeoutOnLoss]:
    """A :class:`TimeoutOnLoss` listening to the SDK's log records for the block."""
    logger = logging.getLogger("localevents.client")
    handler, level = TimeoutOnLoss(delay), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def next_or_lost(subscriber: EventSubscriber, delay: float = 0.0) -> ReceivedEvent | None:
    """The subscriber's next event, or ``None``: the consumer's timeout fired ``delay``
    seconds after the subscriber lost its connection, while it was reconnecting."""
    with timing_out_on_loss(delay) as timeout:
        try:
            with anyio.fail_after(PATIENCE) as timeout.scope:
                return await anext(subscriber)
        except TimeoutError:
            if not timeout.fired:
                raise  # the patience ran out: a hang, not the timeout under test
            return None


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, IN_THE_WAIT], ids=["in-the-connect", "in-the-wait"])
async def test_a_timeout_while_reconnecting_leaves_the_subscriber_working(
    tmp_path: Path, delay: float
) -> None:
    """A consumer's timeout that fires while the subscriber reconnects to a server that is
    down (in a connect attempt, or in the wait between two) does not close the subscriber:
    once the server is back, the next wait reconnects and delivers each later event once."""
    database = tmp_path / "events.duckdb"
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(serve(database))
        subscriber = EventSubscriber(server.url, filter=named("cut."), reconnection_attempts=60)
        async with subscriber:
            await post(server.url, ["cut.0", "cut.1", "cut.2"])
            before = await take(subscriber, 3)
            await anyio.to_thread.run_sync(server.kill)
            assert await next_or_lost(subscriber, delay) is None
            servers.enter_context(serve(database, port=server.port))
            await post(server.url, ["cut.3", "cut.4", "cut.5"])
            after = await take(subscriber, 3)
    assert before + after == [f"cut.{i}" for i in range(6)]
    assert subscriber.reconnects == 1


@pytest.mark.slow
async def test_several_timeouts_while_the_server_is_down_lose_nothing(tmp_path: Path) -> None:
    """Waits that time out one after another while the server stays down (each makes a
    reconnect attempt or waits between two) leave the subscriber working: once the server is
    back, it resumes right after the last event it delivered."""
    database = tmp_path / "events.duckdb"
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(serve(database))
        subscriber = EventSubscriber(server.url, filter=named("cuts."), reconnection_attempts=60)
        async with subscriber:
            await post(server.url, ["cuts.0"])
            before = await take(subscriber, 1)
            await anyio.to_thread.run_sync(server.kill)
            assert await next_or_lost(subscriber) is None
            for _ in range(3):
                with anyio.move_on_after(SHORT_WAIT) as waiting:
                    await anext(subscriber)
                assert waiting.cancelled_caught
            servers.enter_context(serve(database, port=server.port))
            await post(server.url, ["cuts.1", "cuts.2"])
            after = await take(subscriber, 2)
    assert before + after == ["cuts.0", "cuts.1", "cuts.2"]


@pytest.mark.slow
async def test_a_timeout_while_waiting_for_an_event_changes_nothing(tmp_path: Path) -> None:
    """A consumer's timeout that fires while the subscriber waits on a working connection
    (no event yet) leaves that connection as it was: the next event comes through it."""
    with serve(tmp_path / "events.duckdb") as server:
        subscriber = EventSubscriber(server.url, filter=named("idle."))
        async with subscriber:
            with anyio.move_on_after(SHORT_WAIT) as waiting:
                await anext(subscriber)
            assert waiting.cancelled_caught
            await post(server.url, ["idle.1"])
            received = await take(subscriber, 1)
    assert received == ["idle.1"]
    assert subscriber.reconnects == 0


@pytest.mark.slow
async def test_a_timeout_during_the_first_connect_leaves_the_subscriber_reusable(
    tmp_path: Path,
) -> None:
    """A consumer's timeout that fires while the subscriber's first connection hangs (a
    server that accepts and never answers) leaves it closed and able to be entered again."""
    with taken_port() as port:
        subscriber = EventSubscriber(f"http://127.0.0.1:{port}/api", filter=named("first."))
        with anyio.move_on_after(SHORT_WAIT) as waiting:
            async with subscriber:
                pytest.fail("a server that never answers was connected to")
        assert waiting.cancelled_caught
    with serve(tmp_path / "events.duckdb", port=port) as server:
        async with subscriber:
            await post(server.url, ["first.1"])
            received = await take(subscriber, 1)
    assert received == ["first.1"]


class ClosingServer:
    """An events server that takes each subscription and closes it at once with 1011 (its
    backfill query fails, say); counts the connections."""

    def __init__(self) -> None:
        self.connections = 0

    def connection(self) -> Connection:
        return Connection(api_url="http://closing/api", app=self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await took_the_handshake(scope, receive, send):
            return
        self.connections += 1
        await send(AUTH_SUCCESS)
        await receive()  # the subscription
        await send({"type": "websocket.close", "code": 1011, "reason": "backfill failed"})


async def test_timeouts_while_reconnecting_still_spend_the_reconnect_budget() -> None:
    """Waits that time out while the subscriber waits to reconnect keep its count of
    consecutive failures: a server that closes every connection at once is given up on
    after ``reconnection_attempts`` reconnects, as without the timeouts."""
    server = ClosingServer()
    subscriber = EventSubscriber(connection=server.connection(), reconnection_attempts=2)
    timed_out: list[bool] = []
    with anyio.fail_after(PATIENCE), pytest.raises(WebSocketDisconnect) as raised:
        await wait_until_raised(subscriber, timed_out)
    assert (raised.value.code, raised.value.reason) == (1011, "backfill failed")
    assert (len(timed_out), server.connections) == (2, 3)  # the first, then two reconnects


async def wait_until_raised(subscriber: EventSubscriber, timed_out: list[bool]) -> None:
    """Wait for events, each wait timing out once the subscriber has lost its connection
    (noted in ``timed_out``), until the subscriber raises (or, wrongly, delivers)."""
    async with subscriber:
        while await next_or_lost(subscriber) is None:
            timed_out.append(True)
