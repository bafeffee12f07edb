"""How a subscription ends when the server cannot or will not finish it: a backfill past the
query time limit is refused for good (1008) with a reason saying what to do, and the SDK's
subscriber raises it instead of reconnecting; a stop during a backfill closes the
subscriber (1012) with one log line; every close reason fits its frame in whole words.

Before: a backfill past the limit closed with 1011, which the SDK retries, so a subscriber
whose every attempt took the whole limit to fail (30 s, as long as a connection needs to
count as working) reconnected for ever, its reason cut mid-sentence at 123 bytes; and a
stop during a backfill logged a 45-line ``CancelledError`` traceback.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from _servers import ServerProcess, free_port, localevents_command, serve, spawn
from _sockets import closed
from httpx_ws import WebSocketDisconnect, aconnect_ws

from localevents import EventFilter, EventSubscriber, InvalidRequestError, get_events_subscriber
from localevents._settings import temporary_settings
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.samples import write_sample_database
from localevents.server import create_app
from localevents.server._backfill import past_time_limit
from localevents.server._handshake import MAXIMUM_REASON_BYTES, close_reason

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from httpx_ws import AsyncWebSocketSession

BASE_URL = "http://test/api/"
LIMIT = "0.1s"
DEADLINE = 60.0
"""Seconds a step may take before the test fails (a guard against hangs, not a timing)."""
SLOW_FILTER: dict[str, Any] = {
    "any_resource": [{"labels": {"a": [f"?{i}*{j}" for i in range(100)]}} for j in range(20)]
}
"""A filter at its size limits that matches nothing (as in ``test_query_time_limit``):
about 0.4 s over the 2000 events of :func:`recent_file` here, against a limit of 0.1 s."""
EVENTS = 2000
WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}


@pytest.fixture
def recent_file(tmp_path: Path) -> Path:
    """An events file on which :data:`SLOW_FILTER` takes far longer than :data:`LIMIT`, its
    events from the last minute (where the SDK's subscriber starts its first backfill)."""
    path = tmp_path / "events.duckdb"
    start = datetime.now(UTC) - timedelta(seconds=30)
    write_sample_database(path, EVENTS, seed=3, start=start, span=timedelta(seconds=20))
    return path


@contextlib.asynccontextmanager
async def _subscription(
    path: Path, message: dict[str, Any]
) -> AsyncIterator[AsyncWebSocketSession]:
    """A socket of an in-process app over ``path`` (the settings of now) that has sent
    ``message`` after the handshake."""
    app = create_app(None, database=str(path), docs=False)
    transport = InProcessWebSocketTransport(app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
        aconnect_ws("events/out", client, subprotocols=["prefect"]) as socket,
    ):
        await socket.send_json({"type": "auth", "token": None})
        assert await socket.receive_json() == {"type": "auth_success"}
        await socket.send_text(json.dumps(message))
        yield socket


async def _first_event(subscriber: EventSubscriber) -> None:
    """Open ``subscriber`` and wait for an event (none matches: it raises why it ended)."""
    async with subscriber:
        async for event in subscriber:
            raise AssertionError(f"no event matches the filter, got {event}")


def _wait_until_said(server: ServerProcess, text: str) -> None:
    """Wait until the server's output holds ``text``."""
    give_up = time.monotonic() + DEADLINE
    while text not in server.output():
        assert time.monotonic() < give_up, f"the server never said {text!r}"
        time.sleep(0.05)


# -- a backfill past the query time limit ---------------------------------------------------


@pytest.mark.parametrize("after", [None, "start"], ids=["by-occurred", "by-position"])
async def test_a_backfill_past_the_time_limit_is_refused_with_1008_saying_what_to_do(
    recent_file: Path, after: str | None
) -> None:
    """Both kinds of backfill, stopped at the limit, close with 1008 (which clients do not
    retry: the same backfill would take as long again), and a whole reason naming the limit
    and what to do. It was 1011 (retried), cut mid-sentence."""
    message = {"type": "filter", "filter": {**SLOW_FILTER, "occurred": WIDE}}
    if after is not None:
        message["after"] = after
    with temporary_settings(server_query_timeout=LIMIT), anyio.fail_after(DEADLINE):
        async with _subscription(recent_file, message) as socket:
            close = await closed(socket)
    assert close.code == 1008
    assert close.reason == (
        "backfill over the query time limit of 0.1 s: narrow the filter or window, or raise "
        "LOCALEVENTS_SERVER_QUERY_TIMEOUT"
    )


@pytest.mark.slow  # a real server
async def test_the_sdk_subscriber_raises_a_backfill_past_the_limit_without_reconnecting(
    recent_file: Path, tmp_path: Path
) -> None:
    """Over a real server, the SDK's subscriber gets the refusal once and raises it with the
    server's reason; the server ran the backfill once. It reconnected after each 1011 (for
    ever with the default limit)."""
    env = {"LOCALEVENTS_SERVER_QUERY_TIMEOUT": LIMIT, "LOCALEVENTS_HOME": str(tmp_path)}
    event_filter = msgspec.convert(SLOW_FILTER, EventFilter)
    with serve(recent_file, env=env) as server:
        subscriber = get_events_subscriber(event_filter, api_url=server.url)
        with anyio.fail_after(DEADLINE), pytest.raises(InvalidRequestError) as raised:
            await _first_event(subscriber)
    error = raised.value
    assert str(error) == (
        f"the server refused the subscription at {subscriber.url}: {past_time_limit(0.1)}"
    )
    assert isinstance(error.__cause__, WebSocketDisconnect)
    assert error.__cause__.code == 1008
    assert subscriber.reconnects == 0
    stopped = [line for line in server.output().splitlines() if "backfill of /events" in line]
    assert len(stopped) == 1, server.output()
    assert "WARNING:  localevents.server: stopped the backfill of /events/out (127." in stopped[0]
    assert "longer than the server's limit of 0.1 s" in stopped[0]


# -- close reasons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param("short", "short", id="fits"),
        pytest.param("word " * 30, "word " * 23 + "word…", id="prose"),
        pytest.param(
            "could not read stored events: the query needed more memory than the database's "
            "limit of 256MB (LOCALEVENTS_DATABASE_MEMORY_LIMIT), which the queries share",
            "could not read stored events: the query needed more memory than the database's "
            "limit of 256MB…",
            id="a-long-word-just-past-the-room",
        ),
        pytest.param("é " * 80, "é " * 39 + "é…", id="two-byte-characters"),
        pytest.param("a, " * 60, "a, " * 39 + "a…", id="no-dangling-punctuation"),
        pytest.param("label '" + "€" * 60 + "'", "label '" + "€" * 38, id="one-long-word"),
    ],
)
def test_a_long_close_reason_is_cut_after_a_whole_word(reason: str, expected: str) -> None:
    """A reason over 123 bytes ends after its last whole word that fits, marked "…", unless
    that keeps under two thirds of it (one long word: cut inside it, at a character)."""
    assert close_reason(reason) == expected
    if expected != reason:
        assert len(expected.encode()) <= MAXIMUM_REASON_BYTES


@pytest.mark.parametrize("limit", [0.1, 30.0, 86_400.0, 1_234_567.0, 0.000_123_456_7])
def test_the_time_limit_reason_fits_whole_whatever_the_limit(limit: float) -> None:
    """The reason of a backfill past the limit fits a close frame uncut, for any limit."""
    reason = past_time_limit(limit)
    assert len(reason.encode()) <= MAXIMUM_REASON_BYTES
    assert close_reason(reason) == reason
    assert reason.endswith("LOCALEVENTS_SERVER_QUERY_TIMEOUT")


async def test_an_overlong_refusal_reaches_the_client_cut_after_a_whole_word(
    tmp_path: Path,
) -> None:
    """A refused subscription whose reason is long (an unknown field made of words) is
    closed with the reason cut after a whole word, not mid-word."""
    field = " ".join(["unknown"] * 30)
    message = {"type": "filter", "filter": {field: 1}}
    with anyio.fail_after(DEADLINE):
        async with _subscription(tmp_path / "events.duckdb", message) as socket:
            close = await closed(socket)
    assert close.code == 1002
    assert close.reason.startswith("Invalid filter: Object contains unknown field `unknown ")
    assert close.reason.endswith(" unknown…")
    assert len(close.reason.encode()) <= MAXIMUM_REASON_BYTES


# -- a stop during a backfill ---------------------------------------------------------------

READING = "test: the backfill is reading"
NEVER_ENDING_BACKFILL = f"""
import sys

from localevents.cli import main
from localevents.server import _backfill


def never_ending(store, *args):
    print({READING!r}, file=sys.stderr, flush=True)
    store.fetchall("SELECT count(*) FROM range(1000000000000) t(a) WHERE a % 7 = 3")
    raise AssertionError("a read of hours ended")


_backfill.query_events = _backfill.events_after = never_ending
main(prog_name="localevents")
"""
"""``localevents serve`` whose backfill reads run for hours (until the time limit, or until
the store closes), saying so when one starts."""


@pytest.mark.slow  # a real server, stopped after its grace period
def test_a_stop_during_a_backfill_closes_the_subscriber_with_1012_and_one_line(
    tmp_path: Path,
) -> None:
    """SIGTERM while a subscriber's backfill reads: the client is closed with 1012 (service
    restart: the SDK reconnects) and, once the grace period has run out
    (LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT, 5 s by default), the server ends the subscription
    with one warning line. It logged a 45-line CancelledError traceback."""
    port = free_port()
    command = [sys.executable, "-c", NEVER_ENDING_BACKFILL]
    command += localevents_command(port, tmp_path / "events.duckdb")[3:]  # after "-m localevents"
    env = {
        "LOCALEVENTS_DATABASE_THREADS": "1",
        "LOCALEVENTS_HOME": str(tmp_path),
        "LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT": "1s",
    }
    with spawn(command, port, env=env) as server:

        async def subscribe_then_stop() -> WebSocketDisconnect:
            async with (
                httpx.AsyncClient() as client,
                aconnect_ws(f"{server.url}/events/out", client, subprotocols=["prefect"]) as ws,
            ):
                await ws.send_json({"type": "auth", "token": None})
                assert await ws.receive_json() == {"type": "auth_success"}
                await ws.send_json({"type": "filter", "filter": {}})
                await anyio.to_thread.run_sync(_wait_until_said, server, READING)
                server.process.send_signal(signal.SIGTERM)
                return await closed(ws)

        close = anyio.run(subscribe_then_stop)
        assert server.process.wait(timeout=DEADLINE) == -signal.SIGTERM
    assert close.code == 1012
    output = server.output()
    assert "Traceback" not in output
    assert "CancelledError" not in output
    said = "WebSocket /api/events/out: ended, the server stopped before it finished"
    assert output.count(said) == 1
    assert f"\nWARNING:  localevents.server: {said}\n" in output
