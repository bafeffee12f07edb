"""The HTTP routes of the events API (SPEC B §3 with Part A).

Bodies are decoded from the raw bytes with decoders built once (faster than the framework's
generic path, and the error messages are ours). Store calls block, so they run in worker
threads; the event loop never waits on DuckDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio.to_thread
import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter

from localevents._exceptions import InvalidRequestError
from localevents._metrics import EVENTS_INGESTED, counting_rejections
from localevents.events._counting import Countable
from localevents.events._filters import EventFilter
from localevents.events._nesting import decoded
from localevents.server._bodies import CountRequest, FilterRequest
from localevents.server._ingest import decode_events, syntax_error
from localevents.server._openapi import body_operation
from localevents.server._reading import reader_of
from localevents.server._state import store_of
from localevents.storage._counts import count_events_json
from localevents.storage._queries import query_events, query_next_page

if TYPE_CHECKING:
    from litestar.datastructures import State

    from localevents._settings import Settings
    from localevents.storage._engine import EventStore
    from localevents.storage._queries import QueryPage

__all__ = ("QUERY_BODY_LIMIT", "ROUTES")

QUERY_BODY_LIMIT = 4 * 1024 * 1024
"""Bytes a query's body (a filter, for a page, a count or an export) may have: far more
than any filter within its limits needs, and far less than a batch of events may be
(``LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES``), whose whole decode a filter would cost before
its limits could be checked."""

_filter_decoder = msgspec.json.Decoder(FilterRequest)
_count_decoder = msgspec.json.Decoder(CountRequest)
_T = TypeVar("_T")
_INGESTED_HTTP = EVENTS_INGESTED.labels("http")


def _decode_request(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    body = body if body.strip() else b"{}"
    try:
        return decoded(decoder.decode, body)
    except msgspec.DecodeError as exc:
        syntax = syntax_error(body, exc)
        if syntax is not None:
            raise InvalidRequestError(f"The body is not valid JSON: {syntax}") from None
        raise InvalidRequestError(f"Invalid request: {exc}") from None


def _page_response(request: Request[Any, Any, Any], page: QueryPage) -> Response[bytes]:
    next_page = "null"
    if page.next_token is not None:
        try:
            url = request.url
        except ValueError as exc:  # a Host header such as "a:b"
            raise InvalidRequestError(f"the Host header cannot be read: {exc}") from None
        prefix = url.path.partition("/events/filter")[0]
        base = f"{url.scheme}://{url.netloc}{prefix}"
        next_page = f'"{base}/events/filter/next?page-token={page.next_token}"'
    body = f'{{"events":[{",".join(page.events)}],"total":{page.total},"next_page":{next_page}}}'
    return Response(body.encode(), media_type=MediaType.JSON)


@post(
    "/events",
    status_code=204,
    summary="Store a batch of events",
    operation_class=body_operation("events"),
)
async def create_events(request: Request[Any, Any, Any], state: State) -> None:
    """Store a JSON array of events. Answers 204 only once every event is committed to the
    events file; an event whose id is already stored is ignored. One invalid event rejects
    the whole batch with 422 naming its index, and nothing of the batch is stored."""
    with counting_rejections("http"):
        stored = await anyio.to_thread.run_sync(
            _ingest, store_of(state), await request.body(), state.settings
        )
    _INGESTED_HTTP.inc(stored)


def _ingest(store: EventStore, body: bytes, settings: Settings) -> int:
    """Decode, check and store a batch; the number of events that were new.

    A worker thread does it: a batch of 1000 takes milliseconds to decode, which would
    stall every other request and WebSocket on the event loop, and the thread is needed
    for the commit anyway. The store decodes it in the thread that commits it (see
    ``EventStore.write_prepared``), so concurrent requests never decode beside a commit.
    """
    return len(store.write_prepared(lambda: decode_events(body, settings), len(body)))


@post(
    "/events/filter",
    summary="Query events (first page)",
    request_max_body_size=QUERY_BODY_LIMIT,
    status_code=200,
    operation_class=body_operation("filter"),
)
async def read_events(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Events matching ``filter`` (default: the last 180 days, newest first), ``limit``
    per page (0-1000, default 50), with the total and the URL of the next page."""
    query = _decode_request(_filter_decoder, await request.body())
    event_filter = query.filter or EventFilter()
    page = await reader_of(state).read("filter", query_events, event_filter, query.limit)
    return _page_response(request, page)


@get("/events/filter/next", summary="Query events (next page)")
async def read_next_page(
    request: Request[Any, Any, Any],
    state: State,
    page_token: Annotated[str, QueryParameter(name="page-token")],
) -> Response[bytes]:
    """The page after the one whose ``next_page`` URL this is. A malformed or altered token
    answers 403."""
    page = await reader_of(state).read("next_page", query_next_page, page_token)
    return _page_response(request, page)


@post(
    "/events/count-by/{countable:str}",
    summary="Count events by time, name or resource",
    request_max_body_size=QUERY_BODY_LIMIT,
    media_type=MediaType.JSON,
    status_code=200,
    operation_class=body_operation("count"),
)
async def count_by(
    request: Request[Any, Any, Any], state: State, countable: Annotated[str, PathParameter()]
) -> bytes:
    """Counts of matching events per time bucket (``time``, ``day``), per event name
    (``event``) or per primary resource (``resource``)."""
    try:
        what = Countable(countable)
    except ValueError:
        choices = ", ".join(c.value for c in Countable)
        raise InvalidRequestError(f"cannot count by {countable!r}: use one of {choices}") from None
    query = _decode_request(_count_decoder, await request.body())
    unit, interval = query.time_unit, query.time_interval
    return await reader_of(state).read(
        "count", count_events_json, query.filter, what, unit, interval
    )


@get("/health", summary="Liveness probe", media_type=MediaType.JSON)
async def health() -> bool:
    """``true`` while the server runs (never requires a key)."""
    return True


@get("/ready", summary="Readiness probe")
async def ready(state: State) -> dict[str, str]:
    """``{"message": "OK"}`` once the events file answers queries (never requires a key)."""
    await anyio.to_thread.run_sync(store_of(state).fetchall, "SELECT 1")
    return {"message": "OK"}


ROUTES = [create_events, read_events, read_next_page, count_by, health, ready]
