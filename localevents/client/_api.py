"""The events API client: store, query, page and count, against a server or in-process."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.to_thread
import httpx
import msgspec

from localevents._destinations import check_destination, partial_path, remove, write_failure
from localevents._exceptions import HTTPStatusError
from localevents.client import _transfer
from localevents.client._connection import Connection, auth_headers, resolve_connection
from localevents.client._http import RetryingAsyncClient
from localevents.client._lifespan import app_lifespan
from localevents.events._counting import Countable, EventCount, TimeUnit
from localevents.events._filters import EventFilter
from localevents.events._pages import EventPage
from localevents.events._schemas import reading_stored_events

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Iterable
    from types import TracebackType

    from localevents._settings import ServerType
    from localevents.events._schemas import Event, ReceivedEvent

__all__ = ("DEFAULT_PAGE_SIZE", "EventsAPIClient", "checked_page_size", "get_client")

DEFAULT_PAGE_SIZE = 500
"""Events per page when walking every page of a query (the server allows up to 1000)."""

_encode = msgspec.json.Encoder().encode
_page_decoder = msgspec.json.Decoder(EventPage)
_counts_decoder = msgspec.json.Decoder(list[EventCount])


def checked_page_size(page_size: int) -> int:
    """``page_size`` for a walk over every page: at least one event per page (a page of
    none has no next page, so a walk would end at once, having seen nothing)."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1 to walk the pages, got {page_size}")
    return page_size


def _decode_page(content: bytes) -> EventPage:
    with reading_stored_events():  # the server's limits apply to what it stored, not ours
        return _page_decoder.decode(content)


def _cut_off(exc: httpx.TransportError, kind: str, count: int, target: Path) -> Exception:
    """The error of an export whose answer stopped part-way: the same httpx class, saying
    how far it got and that nothing was written (a later page failed on the server, which
    then can only cut the answer short, or the server stopped)."""
    got = f"{count} events" if kind == "ndjson" else "part of the snapshot"
    message = (
        f"the {kind} export was cut off after {got}: {str(exc) or type(exc).__name__} (a page "
        f"failed on the server, or it stopped: its log says why); nothing was written to {target}"
    )
    try:
        return type(exc)(message, request=exc.request)
    except RuntimeError:  # no request: raised outside one
        return type(exc)(message)


class EventsAPIClient:
    """Talks to the events API; use as ``async with get_client() as client:``.

    Error answers raise :class:`~localevents.HTTPStatusError` subclasses that are also the
    matching domain errors (``InvalidEventError``, ``InvalidPageToken``, ...).
    """

    def __init__(self, connection: Connection, **httpx_options: Any) -> None:
        self.connection = connection
        transport = httpx.ASGITransport(app=connection.app) if connection.app else None
        self.http = RetryingAsyncClient(
            base_url=connection.api_url.rstrip("/") + "/",
            transport=transport,
            headers=auth_headers(connection.api_key),
            **httpx_options,
        )
        self._stack = contextlib.AsyncExitStack()
        self._open = False

    @property
    def server_type(self) -> ServerType:
        """Whether this client talks to the in-process store or to a server."""
        return self.connection.server_type

    @property
    def api_url(self) -> str:
        """The base URL requests are sent to."""
        return self.connection.api_url

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            if self.connection.app is not None:
                await stack.enter_async_context(app_lifespan(self.connection.app))
            await stack.enter_async_context(self.http)
            self._stack = stack.pop_all()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._open = False
        await self._stack.__aexit__(exc_type, exc, traceback)

    def _requests(self) -> RetryingAsyncClient:
        """The HTTP client, once the block is open: in ephemeral mode the store is there
        only while a block holds the app's lifespan; without one, requests would wait out
        their retries on 503s and fail with the server's reason, not the caller's mistake."""
        if not self._open:
            raise RuntimeError(
                "use the client inside its block: 'async with get_client() as client:'"
            )
        return self.http

    async def create_events(self, events: Iterable[Event]) -> None:
        """Store events; returns once the store has committed all of them."""
        body = _encode(list(events))
        await self._requests().post(
            "events", content=body, headers={"Content-Type": "application/json"}
        )

    async def read_events(self, filter: EventFilter | None = None, limit: int = 50) -> EventPage:
        """The first page of events matching ``filter`` (``limit`` up to 1000)."""
        body = _encode({"filter": filter, "limit": limit})
        response = await self._requests().post(
            "events/filter", content=body, headers={"Content-Type": "application/json"}
        )
        return _decode_page(response.content)

    async def read_events_page(self, next_page: str) -> EventPage:
        """The page at a ``next_page`` URL from an earlier page."""
        response = await self._requests().get(next_page)
        return _decode_page(response.content)

    async def iter_pages(
        self, filter: EventFilter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[EventPage]:
        """Every page of the query, the first included, fetched as the iteration reaches it."""
        page = await self.read_events(filter, limit=checked_page_size(page_size))
        yield page
        while page.next_page is not None:
            page = await self.read_events_page(page.next_page)
            yield page

    async def iter_events(
        self, filter: EventFilter | None = None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ReceivedEvent]:
        """Every event matching ``filter``, in its order, across as many pages as it takes.

        Pages are keyset cursors (SPEC D10): events stored during the walk do not shift it,
        so each matching event is seen once.
        """
        async for page in self.iter_pages(filter, page_size=page_size):
            for event in page.events:
                yield event

    async def count_events(
        self,
        countable: Countable | str,
        filter: EventFilter | None = None,
        time_unit: TimeUnit | str = TimeUnit.day,
        time_interval: float = 1.0,
    ) -> list[EventCount]:
        """Counts of matching events by ``time``, ``day``, ``event`` or ``resource``."""
        body = _encode(
            {
                "filter": filter or EventFilter(),
                "time_unit": TimeUnit(time_unit),
                "time_interval": time_interval,
            }
        )
        response = await self._requests().post(
            f"events/count-by/{Countable(countable).value}",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return _counts_decoder.decode(response.content)

    async def export_events(
        self,
        destination: str | os.PathLike[str],
        *,
        format: Literal["ndjson", "parquet"],
        filter: EventFilter | None = None,
    ) -> int:
        """Download the events matching ``filter`` (default: every stored event) into
        ``destination``; return how many there were.

        ``ndjson`` writes one file of ReceivedEvent JSON lines, oldest first, as the server
        streams them; ``parquet`` writes a folder of ``day=YYYY-MM-DD/events-0.parquet``
        files from one snapshot. ``destination`` must not exist (an empty folder is fine
        for Parquet); nothing is left there if the download fails.
        """
        http = self._requests()
        target = Path(destination)
        check_destination(target, folder=format == "parquet")
        partial = partial_path(target)
        body = _encode({"filter": filter, "format": format})
        headers = {"Content-Type": "application/json"}
        # The server answers a Parquet export once it has written the whole snapshot (about
        # 3 s per million events), so no read timeout applies to it.
        timeout = http.timeout
        if format == "parquet":
            timeout = httpx.Timeout(
                timeout.connect, read=None, write=timeout.write, pool=timeout.pool
            )
        try:
            async with http.stream(
                "POST", "events/export", content=body, headers=headers, timeout=timeout
            ) as response:
                count = 0
                async with await anyio.open_file(partial, "wb") as sink:
                    try:
                        async for data in response.aiter_bytes():
                            count += data.count(b"\n")
                            await sink.write(data)
                    except httpx.TransportError as exc:
                        raise _cut_off(exc, format, count, target) from exc
            if format == "parquet":
                await anyio.to_thread.run_sync(_transfer.extract_parquet, partial, target)
                return int(response.headers.get("localevents-event-count", "0"))
            await anyio.to_thread.run_sync(partial.rename, target)
        except OSError as exc:  # writing the destination: a full disk, a folder gone
            raise write_failure(target, exc) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(remove, partial)
        return count

    async def import_events(self, source: str | os.PathLike[str], *, batch_size: int = 1000) -> int:
        """Send the events of an NDJSON file (such as an NDJSON export) to the server in
        batches of ``batch_size`` (fewer when they would make a body over 8 MiB or
        ``LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES``); return how many were sent. Ids the
        server already has are ignored there, so importing a file twice stores nothing
        twice.

        Every line is checked first: a bad one raises
        :class:`~localevents.InvalidEventError` naming it, and nothing is sent. A batch the
        server refuses for a body limit lower than this side's is sent again in halves; an
        event it refuses for a stricter limit raises the server's error, naming the line and
        how many events went in before it (those stay stored). The server
        stamps each event's ``received`` anew, as on any ingest; an offline import into an
        events file (``localevents.storage.import_events``) keeps it, and reads Parquet.
        """
        http = self._requests()
        path = Path(source)
        count = await anyio.to_thread.run_sync(_transfer.check_ndjson, path)
        batches = _transfer.ndjson_batches(path, batch_size)
        sending = _Sending(http, path)
        try:
            while (batch := await anyio.to_thread.run_sync(next, batches, None)) is not None:
                await sending.send(batch)
        finally:
            batches.close()
        return count


class _Sending:
    """The batches of an import on their way to the server, counting those it took."""

    def __init__(self, http: RetryingAsyncClient, path: Path) -> None:
        self._http = http
        self._path = path
        self.sent = 0

    async def send(self, batch: _transfer.ImportBatch) -> None:
        """POST ``batch``; in halves when the body is too large for the server (its limit
        may be lower than the one this side knows); a refused event raises naming its line."""
        try:
            await self._http.post(
                "events", content=batch.body, headers={"Content-Type": "application/json"}
            )
        except HTTPStatusError as exc:
            if exc.status == 413 and len(batch.events) > 1:
                for half in batch.halves():
                    await self.send(half)
                return
            if exc.status not in (413, 422):
                raise
            message = _transfer.refused_line(self._path, batch, exc, self.sent)
            raise type(exc)(message, request=exc.request, response=exc.response) from None
        self.sent += len(batch.events)


def get_client(
    *, api_url: str | None = None, api_key: str | None = None, **httpx_options: Any
) -> EventsAPIClient:
    """An API client for the configured destination (see ``ServerType``): the server at
    ``api_url`` / ``LOCALEVENTS_API_URL``, else the in-process store (ephemeral mode)."""
    return EventsAPIClient(resolve_connection(api_url=api_url, api_key=api_key), **httpx_options)
