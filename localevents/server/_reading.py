"""Store reads made by the server: in a worker thread, timed, and within the query time
limit (``LOCALEVENTS_SERVER_QUERY_TIMEOUT``).

A read that runs past the limit is interrupted and answers 504 :class:`QueryTimeout`, which
the SDK does not retry. Without it, a filter that takes minutes held a worker thread and a
core for as long, and its client, giving up first, asked again, piling up copies of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from localevents._metrics import QUERY_SECONDS
from localevents.server._state import store_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.datastructures import State

    from localevents._settings import Settings
    from localevents.storage._engine import EventStore

__all__ = ("Reader", "query_limit", "reader_of")

_T = TypeVar("_T")


def query_limit(settings: Settings) -> float | None:
    """The query time limit in seconds (None: no limit)."""
    return settings.server_query_timeout.total_seconds() or None


@dataclass(frozen=True)
class Reader:
    """Runs reads on ``store`` within ``limit`` seconds each (None: no limit)."""

    store: EventStore
    limit: float | None

    async def read(self, kind: str, function: Callable[..., _T], *args: Any) -> _T:
        """``function(store, *args)`` in a worker thread, its time in the ``kind`` query
        metric, stopped with :class:`QueryTimeout` past the limit."""
        with QUERY_SECONDS.labels(kind).time():
            return await anyio.to_thread.run_sync(self._limited, function, args)

    def _limited(self, function: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        with self.store.time_limit(self.limit):
            return function(self.store, *args)


def reader_of(state: State) -> Reader:
    """The app's store, read within the app's query time limit."""
    return Reader(store_of(state), query_limit(state.settings))
