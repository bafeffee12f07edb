"""The app's retention schedule: with ``LOCALEVENTS_EVENTS_RETENTION_PERIOD`` set, events
older than the period are deleted when the app starts and then every
``LOCALEVENTS_EVENTS_RETENTION_INTERVAL`` (default one hour), in a thread of its own, so
ingest and queries never wait for it (see ``localevents.storage._retention``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from localevents.storage._retention import start_retention, stop_retention

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Litestar

    from localevents._settings import Settings

__all__ = ("retention_lifespan",)


def retention_lifespan(settings: Settings) -> Any:
    """A lifespan that runs the retention worker of the app's store (entered after the
    lifespan that opens the store, so it stops before the store is released)."""

    @contextlib.asynccontextmanager
    async def run_retention(app: Litestar) -> AsyncIterator[None]:
        period = settings.events_retention_period
        if period is None:
            yield
            return
        worker = start_retention(app.state.store, period, settings.events_retention_interval)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stop_retention, worker)

    return run_retention
