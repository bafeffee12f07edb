"""The ref-counted ASGI lifespan driver (SPEC 5.12), on asyncio and trio."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import httpx
import pytest
import sniffio
from litestar import Litestar, get

from localevents._exceptions import ServiceUnavailable
from localevents.client._lifespan import app_lifespan

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from litestar.datastructures import State

    Message = MutableMapping[str, Any]


class RecordingApp:
    """A tiny ASGI app that answers lifespan messages and records what happened, in order."""

    def __init__(
        self,
        *,
        startup: Literal["complete", "failed", "raise", "hang"] = "complete",
        shutdown: Literal["complete", "failed"] = "complete",
        lifespan: bool = True,
    ) -> None:
        self.startup = startup
        self.shutdown = shutdown
        self.lifespan = lifespan
        self.events: list[str] = []
        self.finished_runs = 0  # lifespan coroutines that have returned or raised

    def count(self, event: str) -> int:
        return self.events.count(event)

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan" or not self.lifespan:
            raise RuntimeError(f"unsupported scope type {scope['type']!r}")
        try:
            await self._lifespan(receive, send)
        finally:
            self.finished_runs += 1

    async def _lifespan(
        self, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        if self.startup == "hang":
            await anyio.sleep_forever()
        if self.startup == "raise":
            raise RuntimeError("cannot open the database")
        if self.startup == "failed":
            await send({"type": "lifespan.startup.failed", "message": "database is locked"})
            return
        self.events.append("startup")
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        self.events.append("shutdown")
        if self.shutdown == "failed":
            await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})
        else:
            await send({"type": "lifespan.shutdown.complete"})


def task_count() -> int:
    """How many tasks the running event loop has, system tasks included."""
    if sniffio.current_async_library() == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


async def test_nested_blocks_start_and_shut_down_once() -> None:
    """Nested blocks share one lifespan, shut down only after the outer block exits."""
    app = RecordingApp()
    async with app_lifespan(app):
        async with app_lifespan(app):
            app.events.append("inner body")
        app.events.append("outer body")
    assert app.events == ["startup", "inner body", "outer body", "shutdown"]
    assert app.finished_runs == 1


async def test_concurrent_entrants_the_last_one_out_shuts_down() -> None:
    """The first entrant leaves without waiting; the lifespan stays up until the last one leaves."""
    app = RecordingApp()
    first_inside, second_inside, first_left = anyio.Event(), anyio.Event(), anyio.Event()
    tasks_before = task_count()

    async def first() -> None:
        async with app_lifespan(app):
            first_inside.set()
            await second_inside.wait()
        app.events.append("first left")
        first_left.set()

    async def second() -> None:
        await first_inside.wait()
        async with app_lifespan(app):
            second_inside.set()
            await first_left.wait()
            assert app.finished_runs == 0  # the app is still running for us
        app.events.append("second left")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(second)
    assert app.events == ["startup", "first left", "shutdown", "second left"]
    assert app.finished_runs == 1
    assert task_count() == tasks_before


async def test_sequential_blocks_start_and_shut_down_each_time() -> None:
    """A block after a closed one starts the app again: two startups, two shutdowns."""
    app = RecordingApp()
    async with app_lifespan(app):
        pass
    async with app_lifespan(app):
        pass
    assert app.events == ["startup", "shutdown", "startup", "shutdown"]


async def test_an_exception_in_the_block_shuts_down_once_and_propagates_unchanged() -> None:
    """The block's exception comes out as itself (no ExceptionGroup) after one shutdown."""
    app = RecordingApp()
    error = KeyError("boom")
    with pytest.raises(KeyError) as caught:
        async with app_lifespan(app):
            raise error
    assert caught.value is error
    assert app.events == ["startup", "shutdown"]


async def test_cancelling_the_block_still_shuts_down_once() -> None:
    """Cancellation of the block (move_on_after, CancelScope.cancel) leads to one shutdown."""
    app = RecordingApp()
    with anyio.move_on_after(0.05) as timeout:
        async with app_lifespan(app):
            await anyio.sleep_forever()
    with anyio.CancelScope() as scope:
        async with app_lifespan(app):
            scope.cancel()
            await anyio.sleep_forever()
    assert timeout.cancelled_caught
    assert scope.cancelled_caught
    assert app.events == ["startup", "shutdown", "startup", "shutdown"]
    assert app.finished_runs == 2


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("failed", "database is locked"), ("raise", "cannot open the database")],
)
async def test_a_failed_startup_raises_and_a_later_entrant_retries(
    mode: Literal["failed", "raise"], reason: str
) -> None:
    """A failed startup raises ServiceUnavailable with the app's reason and leaves no entry."""
    app = RecordingApp(startup=mode)
    with pytest.raises(ServiceUnavailable, match=f"startup failed: .*{reason}"):
        async with app_lifespan(app):
            pytest.fail("the block must not run")
    assert app.finished_runs == 1
    app.startup = "complete"
    async with app_lifespan(app):
        assert app.events == ["startup"]
    assert app.events == ["startup", "shutdown"]


async def test_a_startup_that_never_answers_times_out_and_leaves_no_task() -> None:
    """A hung startup raises a clear timeout error and its lifespan coroutine is cancelled."""
    app = RecordingApp(startup="hang")
    tasks_before = task_count()
    with pytest.raises(ServiceUnavailable, match=r"startup timed out after 0\.2 s"):
        async with app_lifespan(app, startup_timeout=0.2):
            pytest.fail("the block must not run")
    assert app.finished_runs == 1
    assert task_count() == tasks_before
    app.startup = "complete"
    async with app_lifespan(app):  # and no stale entry blocks the next start
        pass
    assert app.events == ["startup", "shutdown"]


async def test_a_failed_shutdown_raises_and_clears_the_entry() -> None:
    """A shutdown.failed answer raises ServiceUnavailable on exit; the next block starts afresh."""
    app = RecordingApp(shutdown="failed")
    with pytest.raises(ServiceUnavailable, match="shutdown failed: flush failed"):
        async with app_lifespan(app):
            pass
    app.shutdown = "complete"
    async with app_lifespan(app):
        pass
    assert app.events == ["startup", "shutdown", "startup", "shutdown"]


async def test_a_failed_shutdown_does_not_mask_the_blocks_exception() -> None:
    """When the block raises and shutdown fails, the block's error wins, with a note."""
    app = RecordingApp(shutdown="failed")
    with pytest.raises(KeyError) as caught:
        async with app_lifespan(app):
            raise KeyError("boom")
    assert any("shutdown failed: flush failed" in note for note in caught.value.__notes__)


async def test_an_app_without_lifespan_support_can_be_entered() -> None:
    """An app that raises on a lifespan scope before reading anything is entered as is."""
    app = RecordingApp(lifespan=False)
    tasks_before = task_count()
    async with app_lifespan(app), app_lifespan(app):
        app.events.append("body")
    assert app.events == ["body"]
    assert task_count() == tasks_before


async def test_two_apps_get_separate_lifespans() -> None:
    """The key includes the app: each app object is started and shut down on its own."""
    first, second = RecordingApp(), RecordingApp()
    async with app_lifespan(first):
        async with app_lifespan(second):
            pass
        assert second.events == ["startup", "shutdown"]
        assert first.events == ["startup"]
    assert first.events == ["startup", "shutdown"]


async def test_two_threads_get_separate_lifespans_for_the_same_app(anyio_backend: str) -> None:
    """The key includes the thread: each thread's event loop starts its own lifespan."""
    app = RecordingApp()
    both_inside = threading.Barrier(2, timeout=10)

    async def use_in_this_thread() -> None:
        async with app_lifespan(app):
            await anyio.to_thread.run_sync(both_inside.wait)

    def run_loop() -> None:
        anyio.run(use_in_this_thread, backend=anyio_backend)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, run_loop)
        tg.start_soon(anyio.to_thread.run_sync, run_loop)
    assert app.count("startup") == 2
    assert app.count("shutdown") == 2


async def test_successive_event_loops_in_one_thread_each_start_the_app(anyio_backend: str) -> None:
    """A thread that runs one loop after another never reuses the finished loop's lock or table."""
    app = RecordingApp()

    async def use_twice_nested() -> None:
        async with app_lifespan(app), app_lifespan(app):
            pass

    def run_two_loops() -> None:
        anyio.run(use_twice_nested, backend=anyio_backend)
        anyio.run(use_twice_nested, backend=anyio_backend)

    await anyio.to_thread.run_sync(run_two_loops)
    assert app.events == ["startup", "shutdown", "startup", "shutdown"]


async def test_a_litestar_app_sees_its_startup_state_in_requests() -> None:
    """A real Litestar app runs on_startup before requests and on_shutdown after the block."""
    shutdowns: list[str] = []

    def open_store(app: Litestar) -> None:
        app.state.greeting = "hello from startup"

    def close_store(app: Litestar) -> None:
        shutdowns.append(app.state.greeting)

    @get("/greeting", sync_to_thread=False)
    def greeting(state: State) -> dict[str, str]:
        return {"greeting": state.greeting}

    app = Litestar(
        route_handlers=[greeting],
        on_startup=[open_store],
        on_shutdown=[close_store],
        logging_config=None,
    )
    async with (
        app_lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        response = await client.get("/greeting")
        assert shutdowns == []
    assert response.json() == {"greeting": "hello from startup"}
    assert shutdowns == ["hello from startup"]
