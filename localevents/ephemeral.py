"""Ephemeral mode: the events API served inside this process, over an events file.

With no ``LOCALEVENTS_API_URL``, clients talk to an in-process application through httpx's
ASGI transport; its lifespan is ref-counted per (thread, app), and the store underneath is
process-wide, so every thread and event loop shares one file. ``ephemeral()`` pins every
client to that store for a block and keeps the file open across the clients it creates::

    async with localevents.ephemeral(database="events.duckdb"):
        async with localevents.get_client() as client:
            await client.create_events([...])

    with localevents.ephemeral(database=":memory:"):   # plain ``with`` works too
        ...
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING, Any, Self

import anyio.to_thread

from localevents._settings import get_settings
from localevents.client._connection import (
    EPHEMERAL_API_URL,
    pin_in_process,
    register_in_process_provider,
    unpin_in_process,
)

if TYPE_CHECKING:
    from types import TracebackType

    from litestar import Litestar

    from localevents.storage._engine import EventStore

__all__ = ("EphemeralStore", "ephemeral", "ephemeral_app")

_apps_lock = threading.Lock()
_apps: dict[tuple[str, int], Litestar] = {}


_DRAIN_TIMEOUT = 30.0  # seconds to deliver queued events when a block closes


def ephemeral_app(database: str) -> Litestar:
    """The in-process application for ``database`` in this thread (built on first use).

    One app per thread: an app's lifespan is per (thread, app), and Litestar keeps app-wide
    state that two concurrent lifespans of one app would share. Every thread's app works
    on the same process-wide store and live hub. The app never asks for an API key: it is
    reachable only from this process.
    """
    key = (database, threading.get_ident())
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            # the server (Litestar, DuckDB) loads with the first in-process app, not on import
            from localevents.server import create_app

            settings = get_settings().replace(api_key=None)
            app = _apps[key] = create_app(settings, database=database, docs=False)
        return app


register_in_process_provider(ephemeral_app)


def _load_server() -> None:
    """Import what an in-process client needs (Litestar, httpx, the server and client
    modules) ahead of it; errors surface there.

    This runs while another thread opens the store. Two threads importing modules of one
    package at once can each wait for the other, and Python then hands one of them a
    half-initialised module: this once failed with an ImportError when both threads
    loaded ``localevents.events``. So the opening thread imports the store module (and
    with it everything the server shares with it) before this starts, and opening a store
    imports nothing (tested).
    """
    with contextlib.suppress(Exception):
        import localevents.client._api
        import localevents.server  # noqa: F401


class EphemeralStore:
    """An open ephemeral block: ``database``, its ``app`` and the ``api_url`` clients use.

    Entering opens the events file (a file held by another process fails here, with the
    PID of the holder) and pins every client to it; leaving unpins and closes the file
    once nothing else uses it.
    """

    def __init__(self, database: str | None = None) -> None:
        self.database = database or get_settings().database_path
        self.api_url = EPHEMERAL_API_URL
        self._store: EventStore | None = None

    @property
    def app(self) -> Any:
        """The in-process ASGI application."""
        return ephemeral_app(self.database)

    def _open(self) -> Self:
        from localevents.storage._engine import open_store

        # DuckDB opens and sets up the file mostly without the GIL: meanwhile another
        # thread loads what the first client will need (see _load_server)
        loading = threading.Thread(target=_load_server, name="localevents-load", daemon=True)
        loading.start()
        try:
            self._store = open_store(self.database)
        finally:
            loading.join()
        pin_in_process(self.database)
        return self

    def _close(self) -> None:
        # deliver what emit_event queued for this store, so the file closes with it inside;
        # with the worker module never loaded, nothing was queued (and nothing to load now)
        worker = sys.modules.get("localevents.client._worker")
        if worker is not None:
            worker.EventsWorker.drain_database(self.database, timeout=_DRAIN_TIMEOUT)
        unpin_in_process(self.database)
        if self._store is not None:
            from localevents.storage._engine import release

            store, self._store = self._store, None
            release(store)

    def __enter__(self) -> Self:
        return self._open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    async def __aenter__(self) -> Self:
        return await anyio.to_thread.run_sync(self._open)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):  # closing may wait for a commit in progress
            await anyio.to_thread.run_sync(self._close)


def ephemeral(database: str | None = None) -> EphemeralStore:
    """Serve the events API inside this process for a ``with`` / ``async with`` block."""
    return EphemeralStore(database)
