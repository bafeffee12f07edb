"""A producer block that ends by an error or a cancellation, in-process: what was emitted is
stored (as over a network, where the server stores every frame sent before the goodbye), the
cancellation is only a cancellation, and what cannot be stored is counted in a warning."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import httpx_ws
import pytest
from _sockets import AUTH_SUCCESS, STORAGE_DOWN, took_the_handshake
from httpx_ws import WebSocketDisconnect, aconnect_ws

from localevents import (
    Event,
    EventFilter,
    EventNameFilter,
    WebSocketEventsClient,
    ephemeral,
    get_client,
)
from localevents.client._connection import Connection
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.storage import EventStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from pathlib import Path

    from httpx_ws.transport import ASGIApp

    from localevents.storage._rows import Row

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds a test may take before it fails instead of hanging (never a measured bound)."""
COUNT = 200


def event(name: str) -> Event:
    return Event(event=name, resource={ID: "acme.widget"})


async def stored(prefix: str) -> list[str]:
    """The names of the stored events whose name starts with ``prefix``, through a fresh
    client of the in-process store."""
    async with get_client() as client:
        query = EventFilter(event=EventNameFilter(prefix=[prefix]), order="ASC")
        return [found.event async for found in client.iter_events(query, page_size=1000)]


class SlowCommit:
    """Holds the store's first write of single events (a slow commit) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writing = threading.Event()
        self.released = threading.Event()
        self.timer = threading.Timer(0.3, self.released.set)
        write_rows = EventStore.write_rows

        def held_write_rows(store: EventStore, rows: Sequence[Row]) -> list[Row]:
            if not self.writing.is_set():
                self.writing.set()
                self.released.wait(PATIENCE)
            return write_rows(store, rows)

        monkeypatch.setattr(EventStore, "write_rows", held_write_rows)

    def release_soon(self) -> None:
        """Release the write from another thread a little later (after a block has ended)."""
        self.timer.start()


@pytest.fixture
def slow_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowCommit]:
    commit = SlowCommit(monkeypatch)
    yield commit
    commit.released.set()
    if commit.timer.is_alive():
        commit.timer.join()


async def emit_then_fail(names: list[str], scope: anyio.CancelScope | None = None) -> None:
    """Emit ``names`` in-process, cancel ``scope`` if given, then raise LookupError."""
    async with WebSocketEventsClient() as client:
        for name in names:
            await client.emit(event(name))
        if scope is not None:
            scope.cancel()
        raise LookupError("the caller's own error")


async def emit_during_a_slow_commit_then_fail(names: list[str], commit: SlowCommit) -> None:
    """Emit ``names[0]``, wait until the app is committing it, emit the rest (the app reads
    none of them meanwhile), then raise LookupError while the commit still runs."""
    async with WebSocketEventsClient() as client:
        await client.emit(event(names[0]))
        await anyio.to_thread.run_sync(commit.writing.wait, PATIENCE)
        for name in names[1:]:
            await client.emit(event(name))
        commit.release_soon()
        raise LookupError("the caller's own error")


async def emit_then_fail_cancelled(names: list[str]) -> None:
    """:func:`emit_then_fail` in a scope it cancels before raising."""
    with anyio.CancelScope() as scope:
        await emit_then_fail(names, scope)


# Through ephemeral(): the store in tmp_path, as a user's code would use it


async def test_events_emitted_before_an_error_are_all_stored(tmp_path: Path) -> None:
    """A block that raises after emitting stores every event whose emit returned."""
    names = [f"error.{i:03d}" for i in range(COUNT)]
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        with anyio.fail_after(PATIENCE), pytest.raises(LookupError, match="the caller's"):
            await emit_then_fail(names)
        assert await stored("error.") == names


async def test_events_emitted_during_a_slow_commit_are_stored_when_the_block_raises(
    tmp_path: Path, slow_commit: SlowCommit
) -> None:
    """Events the app had not read yet when the block raised (it was committing earlier
    ones) are stored too: the app reads them before the goodbye, as a server would
    (httpx-ws dropped them with the session)."""
    names = [f"slow.{i:03d}" for i in range(COUNT)]
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        with anyio.fail_after(PATIENCE), pytest.raises(LookupError, match="the caller's"):
            await emit_during_a_slow_commit_then_fail(names, slow_commit)
        assert await stored("slow.") == names


async def test_events_emitted_before_a_cancellation_are_all_stored(tmp_path: Path) -> None:
    """A block cancelled by its caller's scope after emitting stores every event whose emit
    returned, and the scope takes the cancellation."""
    names = [f"cancel.{i:03d}" for i in range(COUNT)]
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        with anyio.fail_after(PATIENCE), anyio.CancelScope() as scope:
            async with WebSocketEventsClient() as client:
                for name in names:
                    await client.emit(event(name))
                scope.cancel()
                await anyio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert await stored("cancel.") == names


async def test_an_error_raised_in_a_cancelled_block_comes_out(tmp_path: Path) -> None:
    """An error the block raises while its caller's scope is cancelled comes out of the
    scope (on trio, closing the client raised the cancellation in its place, which the
    scope then absorbed: the error vanished), and the events are stored."""
    names = [f"both.{i:03d}" for i in range(COUNT)]
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        with anyio.fail_after(PATIENCE), pytest.raises(LookupError, match="the caller's"):
            await emit_then_fail_cancelled(names)
        assert await stored("both.") == names


async def test_cancelling_a_producer_mid_emit_raises_nothing_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancellation that lands inside an emit's write (the scope's deadline passes as the
    emit starts) is taken by the scope: nothing else comes out (on trio, an ExceptionGroup
    holding ClosedResourceError did, from the goodbye written to the session the cut had
    closed), and every event whose emit returned is stored. No warning says the connection
    failed: the client cut it, after handing over every frame before."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    returned: list[str] = []
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        for attempt in range(10):
            with anyio.fail_after(PATIENCE), anyio.CancelScope() as scope:
                async with WebSocketEventsClient() as client:
                    for i in range(attempt % 4):
                        returned.append(f"mid.{attempt:02d}.{i}")
                        await client.emit(event(returned[-1]))
                    scope.deadline = anyio.current_time()  # passed at the next yield
                    for i in range(attempt % 4, 10_000):
                        await client.emit(event(f"mid.{attempt:02d}.{i}"))
                        returned.append(f"mid.{attempt:02d}.{i}")
            assert scope.cancelled_caught
        assert set(returned) <= set(await stored("mid."))
    assert "connection failed" not in caplog.text


# Scripted apps, in-process: what the transport and the client do around the goodbye


class Producers:
    """An /events/in app: the handshake, then it reads ``reads`` frames (all, if None) and
    closes with ``close`` (or waits for the client to go); any later connection is
    refused with 1011."""

    def __init__(self, *, reads: int | None = None, close: int | None = None) -> None:
        self.reads = reads
        self.close = close
        self.frames: list[str] = []
        self.connections = 0

    def connection(self) -> Connection:
        return Connection(api_url="http://scripted/api", app=self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await took_the_handshake(scope, receive, send):
            return
        self.connections += 1
        if self.connections > 1:
            await send(STORAGE_DOWN)
            return
        await send(AUTH_SUCCESS)
        while self.reads is None or len(self.frames) < self.reads:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            if "text" in message:
                self.frames.append(message["text"])
        if self.close is not None:
            await send({"type": "websocket.close", "code": self.close, "reason": "storage is down"})
            return
        await anyio.sleep_forever()


async def test_leaving_by_an_error_after_the_connection_was_lost_warns_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events left unconfirmed by a lost connection when the block ends by an error are
    counted in a warning: they may never have reached the server, and nothing is resent."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    app = Producers(reads=3, close=1011)
    client = WebSocketEventsClient(connection=app.connection(), reconnection_attempts=0)

    async def emit_then_flush() -> None:
        async with client:
            for i in range(3):
                await client.emit(event(f"lost.{i}"))
            await client.flush()  # the app closes (1011) instead of answering: it raises

    with anyio.fail_after(PATIENCE), pytest.raises(WebSocketDisconnect):
        await emit_then_flush()
    assert client.unconfirmed_count == 3
    url = "'http://scripted/api/events/in'"
    assert f"3 events emitted to {url} were not confirmed, and the connection failed" in (
        caplog.text
    )


async def test_a_goodbye_failing_beside_the_owners_cancellation_is_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A goodbye that fails while the block's own scope is being cancelled does not come
    out of the block: only the cancellation does, and the scope takes it (on trio the
    failure came out, in an ExceptionGroup, beside the cancellation)."""
    really_close = httpx_ws.AsyncWebSocketSession.close

    async def failing_goodbye(self: httpx_ws.AsyncWebSocketSession, *args: Any) -> None:
        await really_close(self, *args)
        raise RuntimeError("the goodbye failed")

    monkeypatch.setattr(httpx_ws.AsyncWebSocketSession, "close", failing_goodbye)
    app = Producers()
    with anyio.fail_after(PATIENCE), anyio.CancelScope() as scope:
        async with WebSocketEventsClient(connection=app.connection()) as client:
            await client.emit(event("goodbye.0"))
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert len(app.frames) == 1


def _client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _reader(frames: list[str], pause: Callable[[int], Awaitable[None]]) -> ASGIApp:
    """An ASGI app that accepts, then records each text frame, calling ``pause`` (with the
    count so far) before each receive, until the client goes."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            await pause(len(frames))
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            frames.append(message["text"])

    return app


async def test_the_app_gets_every_frame_sent_before_the_goodbye() -> None:
    """The app takes every frame the client sent before closing, though it reads them
    slowly and all of them take longer than ``close_timeout``: the grace counts from the
    last message it took (httpx-ws dropped the frames still queued)."""
    frames: list[str] = []

    async def slowly(_: int) -> None:
        await anyio.sleep(0.02)

    transport = InProcessWebSocketTransport(_reader(frames, slowly), close_timeout=0.2)
    with anyio.fail_after(PATIENCE):
        async with _client(transport) as client, aconnect_ws("/in", client) as ws:
            for i in range(20):
                await ws.send_text(f"frame.{i}")
    assert frames == [f"frame.{i}" for i in range(20)]


async def test_an_app_that_stops_reading_is_cut_off_with_a_warning_counting_the_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app that takes nothing for ``close_timeout`` after the goodbye is cancelled, and a
    warning counts the frames the client sent that it never read."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    frames: list[str] = []

    async def stuck_after_one(taken: int) -> None:
        if taken == 1:
            await anyio.sleep_forever()

    transport = InProcessWebSocketTransport(_reader(frames, stuck_after_one), close_timeout=0.1)
    with anyio.fail_after(PATIENCE):
        async with _client(transport) as client, aconnect_ws("/in", client) as ws:
            for i in range(5):
                await ws.send_text(f"frame.{i}")
    assert frames == ["frame.0"]
    assert "4 frames the client had sent were left unread" in caplog.text


async def test_leaving_a_session_the_client_cut_raises_nothing_as_on_a_socket() -> None:
    """Once the client has cut the session (what a write interrupted mid-frame leads to),
    its reader and its goodbye meet a closed socket's errors, which httpx-ws handles, so
    leaving the session raises nothing (anyio.ClosedResourceError came out, in a group)."""
    frames: list[str] = []

    async def not_at_all(_: int) -> None:
        pass

    transport = InProcessWebSocketTransport(_reader(frames, not_at_all))
    with anyio.fail_after(PATIENCE):
        async with _client(transport) as client:
            async with aconnect_ws("/in", client) as ws:
                await ws.send_text("before the cut")
                await ws.stream.aclose()
            assert transport.live_sessions == frozenset()
    assert frames == ["before the cut"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_asyncio_cancel_while_closing_after_an_error_is_not_swallowed(
    tmp_path: Path, slow_commit: SlowCommit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio's own ``task.cancel()`` (a timeout, a TaskGroup, Ctrl-C) that lands while
    the block closes after its own error ends the task: only a cancellation of an anyio
    scope, which delivers it again, may give way to the block's error."""
    closing = asyncio.Event()
    close = WebSocketEventsClient._close

    async def noted_close(client: WebSocketEventsClient, stream: Any) -> None:
        closing.set()
        await close(client, stream)

    monkeypatch.setattr(WebSocketEventsClient, "_close", noted_close)

    async def produce() -> None:
        async with WebSocketEventsClient() as client:
            await client.emit(event("native.0"))
            await anyio.to_thread.run_sync(slow_commit.writing.wait, PATIENCE)
            raise LookupError("the caller's own error")

    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        task = asyncio.create_task(produce())
        await asyncio.wait_for(closing.wait(), PATIENCE)
        task.cancel()
        slow_commit.release_soon()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, PATIENCE)
