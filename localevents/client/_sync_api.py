"""The events API client for synchronous code (scripts, notebooks, the command line).

It drives an :class:`~localevents.EventsAPIClient` on an event loop of its own, in a private
thread (an anyio blocking portal), so it behaves exactly like the async client: the same
retries, the same errors, and it works both against a server and in ephemeral mode, where
the in-process application lives on that thread. The thread starts when the ``with`` block
opens and ends with it; the client may be shared by threads meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from anyio.from_thread import start_blocking_portal

from localevents.client._api import (
    DEFAULT_PAGE_SIZE,
    EventsAPIClient,
    checked_page_size,
    get_client,
)
from localevents.events._counting import TimeUnit

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Iterable, Iterator
    from types import TracebackType

    from anyio.from_thread import BlockingPortal

    from localevents._settings import ServerType
    from localevents.events._counting import Countable, EventCount
    from localevents.events._filters import EventFilter
    from localevents.events._pages import EventPage
    from localevents.events._schemas import Event, ReceivedEvent

__all__ = ("SyncEventsAPIClient", "get_sync_client")

_T = TypeVar("_T")


class SyncEventsAPIClient:
    """Talks to the events API from synchronous code; use as ``with get_sync_client() as c:``.

    Every method is the blocking twin of the :class:`~localevents.EventsAPIClient` method of
    the same name, with the same errors; :meth:`iter_events` and :meth:`iter_pages` walk every
    page of a query. ``api_url`` and ``api_key`` default to the settings; with no URL the
    requests go to the in-process store (ephemeral mode), decided when the block opens.
    """

    def __init__(
        self, api_url: str | None = None, *, api_key: str | None = None, **httpx_options: Any
    ) -> None:
        # Resolved on the client's own thread when the block opens: in ephemeral mode the
        # in-process application must belong to the thread that runs its lifespan.
        self._create = functools.partial(
            get_client, api_url=api_url, api_key=api_key, **httpx_options
        )
        self._portal: BlockingPortal | None = None
        self._client: EventsAPIClient | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        if self._portal is not None:
            raise RuntimeError("this client is already open")
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            client = portal.call(self._create)
            stack.enter_context(portal.wrap_async_context_manager(client))
            self._stack = stack.pop_all()
        self._portal, self._client = portal, client
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._portal = self._client = None
        self._stack.__exit__(exc_type, exc, traceback)

    @property
    def server_type(self) -> ServerType:
        """Whether this client talks to the in-process store or to a server."""
        return self._open()[1].server_type

    @property
    def api_url(self) -> str:
        """The base URL requests are sent to."""
        return self._open()[1].api_url

    def _open(self) -> tuple[BlockingPortal, EventsAPIClient]:
        if self._portal is None or self._client is None:
            raise RuntimeError("use the client inside a 'with' block")
        return self._portal, self._client

    def _run(self, call: Callable[[EventsAPIClient], Awaitable[_T]]) -> _T:
        """``call(async_client)`` on the client's event loop, waiting for its result."""
        portal, client = self._open()
        return portal.call(call, client)

    def create_events(self, events: Iterable[Event]) -> None:
        """Store events; returns once the store has committed all of them."""
        batch = list(events)
        self._run(lambda client: client.create_events(batch))

    def read_events(self, filter: EventFilter | None = None, limit: int = 50) -> EventPage:
        """The first page of events matching ``filter`` (``limit`` up to 1000)."""
        return self._run(lambda client: client.read_events(filter, limit))

    def read_events_page(self, next_page: str) -> EventPage:
        """The page at a ``next_page`` URL from an earlier page."""
        return self._run(lambda client: client.read_events_page(next_page))

    def count_events(
        self,
        countable: Countable | str,
        filter: EventFilter | None = None,
        time_unit: TimeUnit | str = TimeUnit.day,
        time_interval: float = 1.0,
    ) -> list[EventCount]:
        """Counts of matching events by ``time``, ``day``, ``event`` or ``resource``."""
        return self._run(
            lambda client: client.count_events(countable, filter, time_unit, time_interval)
        )

    def export_events(
        self,
        destination: str | os.PathLike[str],
        *,
        format: Literal["ndjson", "parquet"],
        filter: EventFilter | None = None,
    ) -> int:
        """Download the matching events (default: every stored event) into ``destination``
        as NDJSON or a folder of Parquet files; return how many there were."""
        return self._run(lambda c: c.export_events(destination, format=format, filter=filter))

    def import_events(self, source: str | os.PathLike[str], *, batch_size: int = 1000) -> int:
        """Send the events of an NDJSON file in batches (each line checked first); return
        how many were sent."""
        return self._run(lambda client: client.import_events(source, batch_size=batch_size))

    def iter_pages(
        self, filter: EventFilter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[EventPage]:
        """Every page of the query, the first included, fetched as the iteration reaches it."""
        page = self.read_events(filter, limit=checked_page_size(page_size))
        yield page
        while page.next_page is not None:
            page = self.read_events_page(page.next_page)
            yield page

    def iter_events(
        self, filter: EventFilter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[ReceivedEvent]:
        """Every event matching ``filter``, in its order, across as many pages as it takes.

        Pages are keyset cursors (SPEC D10): events stored during the walk do not shift it,
        so each matching event is seen once.
        """
        for page in self.iter_pages(filter, page_size=page_size):
            yield from page.events


def get_sync_client(
    *, api_url: str | None = None, api_key: str | None = None, **httpx_options: Any
) -> SyncEventsAPIClient:
    """A synchronous API client for the configured destination (see ``ServerType``): the
    server at ``api_url`` / ``LOCALEVENTS_API_URL``, else the in-process store."""
    return SyncEventsAPIClient(api_url, api_key=api_key, **httpx_options)
