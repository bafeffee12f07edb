"""A ref-counted ASGI lifespan driver for an in-process app (SPEC 5.12).

Neither httpx ASGI transport runs the lifespan, and Litestar's ``app.lifespan()`` must be
exited by the task that entered it, so this module speaks the ASGI lifespan messages itself.

Ownership: the app's lifespan coroutine runs in a background task owned by the table entry,
not by any entrant (an asyncio task we hold a strong reference to, or a trio system task that
never raises and hands its error back). The entrant that brings the count to zero runs shutdown
and then waits until that task has finished, so nothing outlives the last exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import sniffio
from anyio.lowlevel import RunVar

from localevents._exceptions import ServiceUnavailable, domain_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ("app_lifespan",)

_Message = MutableMapping[str, Any]
# Loose on purpose: Litestar types its scope as a union of TypedDicts, which a precise
# ``Callable[[Scope, Receive, Send], ...]`` would reject.
_ASGIApp = Callable[..., Awaitable[None]]


class _AppLifespan:
    """One run of an app's lifespan coroutine, driven over two memory streams."""

    def __init__(self, app: _ASGIApp) -> None:
        self._app = app
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[_Message](1)
        self._app_outbox, self._from_app = anyio.create_memory_object_stream[_Message](1)
        self._scope = anyio.CancelScope()
        self._finished = anyio.Event()
        self._error: Exception | None = None
        self._received_startup = False
        self._supported = True
        self._task: asyncio.Task[None] | None = None  # asyncio keeps only weak references

    async def startup(self) -> None:
        """Start the app's lifespan task and wait for ``lifespan.startup.complete``."""
        self._spawn()
        try:
            reply = await self._exchange("lifespan.startup")
        except BaseException:  # timed out or cancelled: leave no task behind
            await self._stop()
            raise
        if reply is not None and reply["type"] == "lifespan.startup.complete":
            return
        await self._stop()
        # ASGI: an app that returns, or raises before reading a message, has no lifespan.
        if reply is None and not (self._received_startup and self._error is not None):
            self._supported = False
            return
        domain = domain_error(self._error)
        if domain is not None:  # e.g. the events file is held: say that, not a traceback
            raise domain
        raise ServiceUnavailable(f"ASGI app startup failed: {self._reason(reply)}") from self._error

    async def shutdown(self) -> None:
        """Ask the app to shut down, then wait until its lifespan task has finished."""
        if not self._supported:
            return
        try:
            reply = await self._exchange("lifespan.shutdown")
        finally:
            await self._stop()
        if reply is None or reply["type"] != "lifespan.shutdown.complete":
            raise ServiceUnavailable(f"ASGI app shutdown failed: {self._reason(reply)}") from (
                self._error
            )

    def _spawn(self) -> None:
        if sniffio.current_async_library() == "trio":
            import trio

            context = contextvars.copy_context()  # as asyncio's create_task does
            trio.lowlevel.spawn_system_task(self._run_then_finish, context=context)
        else:
            self._task = asyncio.get_running_loop().create_task(self._run_app())
            # Set from the done callback so that waiters resume only once the task is done.
            self._task.add_done_callback(lambda _: self._finished.set())

    async def _run_then_finish(self) -> None:
        try:
            await self._run_app()
        finally:
            self._finished.set()

    async def _run_app(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        with self._app_inbox, self._app_outbox, self._scope:
            # Keep every app error: a trio system task must never raise. Cancellation stays
            # with the scope above or the event loop's own shutdown.
            try:
                await self._app(scope, self._receive, self._app_outbox.send)
            except Exception as exc:
                self._error = exc

    async def _receive(self) -> _Message:
        message = await self._app_inbox.receive()
        self._received_startup = True
        return message

    async def _exchange(self, message_type: str) -> _Message | None:
        """Send one message to the app; its answer, or None if it finished without one."""
        try:
            await self._to_app.send({"type": message_type})
            return await self._from_app.receive()
        except (anyio.BrokenResourceError, anyio.EndOfStream):
            return None

    async def _stop(self) -> None:
        """Cancel the app task (a no-op once it has returned) and wait until it has finished."""
        with anyio.CancelScope(shield=True):
            self._scope.cancel()
            await self._finished.wait()
            self._to_app.close()
            self._from_app.close()
            self._task = None

    def _reason(self, reply: _Message | None) -> str:
        if reply is not None and reply["type"].endswith(".failed"):
            return str(reply.get("message", "")) or "no message"
        if reply is not None:
            return f"unexpected message {reply['type']!r}"
        if self._error is not None:
            return repr(self._error)
        return "the app returned without answering"


@dataclass(eq=False)
class _Entry:
    lifespan: _AppLifespan
    refs: int = 1


@dataclass(eq=False)
class _Table:
    """The running lifespans of one event loop; a loop runs in one thread."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    entries: dict[tuple[int, int], _Entry] = field(default_factory=dict)


# A RunVar is scoped to the running event loop, so successive loops in one thread never share
# a lock or an entry created by a finished one.
_tables: RunVar[_Table] = RunVar("localevents_app_lifespans")


def _current_table() -> _Table:
    table = _tables.get(None)
    if table is None:
        table = _Table()
        _tables.set(table)
    return table


@contextlib.asynccontextmanager
async def app_lifespan(
    app: _ASGIApp, *, startup_timeout: float = 30.0, shutdown_timeout: float = 30.0
) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan while at least one block for it is open in this thread.

    The first entrant runs startup; the last one out runs shutdown, also after an exception or
    cancellation. Raises :class:`ServiceUnavailable` when startup or shutdown fails or times
    out; a shutdown error raised while the block itself is raising becomes a note on that error.
    """
    table = _current_table()
    key = (threading.get_ident(), id(app))
    await _enter(table, key, app, startup_timeout)
    try:
        yield
    except BaseException as exc:
        await _leave(table, key, shutdown_timeout, body_error=exc)
        raise
    await _leave(table, key, shutdown_timeout)


@contextlib.contextmanager
def _time_limit(phase: str, seconds: float) -> Iterator[None]:
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError as exc:
        raise ServiceUnavailable(f"ASGI app {phase} timed out after {seconds} s") from exc


async def _enter(
    table: _Table, key: tuple[int, int], app: _ASGIApp, startup_timeout: float
) -> None:
    async with table.lock:
        if entry := table.entries.get(key):
            entry.refs += 1
            return
        lifespan = _AppLifespan(app)
        with _time_limit("startup", startup_timeout):
            await lifespan.startup()  # on failure no entry is left: the next entrant retries
        table.entries[key] = _Entry(lifespan)


async def _leave(
    table: _Table,
    key: tuple[int, int],
    shutdown_timeout: float,
    body_error: BaseException | None = None,
) -> None:
    with anyio.CancelScope(shield=True):
        async with table.lock:
            entry = table.entries[key]
            entry.refs -= 1
            if entry.refs > 0:
                return
            del table.entries[key]
            try:
                with _time_limit("shutdown", shutdown_timeout):
                    await entry.lifespan.shutdown()
            except ServiceUnavailable as exc:
                if body_error is None:
                    raise
                body_error.add_note(f"while leaving the block: {exc}")
