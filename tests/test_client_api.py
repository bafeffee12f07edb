"""The SDK's API client: typed results, paging, and errors mapped back to domain classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from localevents import (
    AuthenticationError,
    ConfigurationError,
    Countable,
    Event,
    EventFilter,
    EventOccurredFilter,
    EventsAPIClient,
    EventTooLarge,
    HTTPStatusError,
    InvalidEventError,
    InvalidPageToken,
    InvalidRequestError,
    ReceivedEvent,
    ServerUnreachable,
    Settings,
    TimeUnit,
    TooManyBuckets,
    ephemeral,
    get_client,
    get_sync_client,
    temporary_settings,
)
from localevents.client import get_events_client, get_events_subscriber
from localevents.client._connection import EPHEMERAL_API_URL, Connection
from localevents.server import create_app
from tests._servers import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

ID = "prefect.resource.id"
START = datetime(2026, 1, 5, tzinfo=UTC)


def events(n: int) -> list[Event]:
    return [
        Event(
            event=f"acme.step.{i % 3}",
            resource={ID: f"acme.widget.{i % 4}"},
            occurred=START + timedelta(minutes=i),
        )
        for i in range(n)
    ]


WINDOW = EventFilter(
    occurred=EventOccurredFilter(since=START, until=START + timedelta(days=1)), order="ASC"
)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[EventsAPIClient]:
    async with ephemeral(database=str(tmp_path / "events.duckdb")), get_client() as client:
        yield client


async def test_pages_walk_every_event_once_in_order(client: EventsAPIClient) -> None:
    """Following next_page from read_events visits each event exactly once, in order."""
    written = events(23)
    await client.create_events(written)
    page = await client.read_events(WINDOW, limit=5)
    seen: list[ReceivedEvent] = list(page.events)
    assert page.total == 23
    while page.next_page is not None:
        assert page.next_page.startswith(f"{EPHEMERAL_API_URL}/events/filter/next?page-token=")
        page = await client.read_events_page(page.next_page)
        seen.extend(page.events)
    assert [e.id for e in seen] == [e.id for e in written]
    assert all(isinstance(e, ReceivedEvent) and e.received >= e.occurred for e in seen)


async def test_iter_events_walks_every_page_once_in_order(client: EventsAPIClient) -> None:
    """iter_pages fetches page after page; iter_events yields every matching event exactly
    once, in the filter's order, however small the pages."""
    written = events(23)
    await client.create_events(written)
    pages = [page async for page in client.iter_pages(WINDOW, page_size=5)]
    assert [len(page.events) for page in pages] == [5, 5, 5, 5, 3]
    seen = [event async for event in client.iter_events(WINDOW, page_size=5)]
    assert [e.id for e in seen] == [e.id for e in written]
    assert all(isinstance(e, ReceivedEvent) for e in seen)


async def test_events_stored_during_an_async_walk_do_not_shift_it(
    client: EventsAPIClient,
) -> None:
    """Pages are fetched as the iteration reaches them; an event stored meanwhile neither
    repeats nor skips anything (keyset pages)."""
    await client.create_events(events(10))
    walk = client.iter_events(WINDOW, page_size=4)
    first = [await anext(walk) for _ in range(4)]
    await client.create_events([Event(event="acme.late", resource={ID: "x"}, occurred=START)])
    rest = [event async for event in walk]
    assert len(first) + len(rest) == 10
    assert "acme.late" not in {e.event for e in first + rest}


async def test_counts_come_back_typed(client: EventsAPIClient) -> None:
    """count_events returns EventCount rows for names, resources and time buckets."""
    await client.create_events(events(12))
    by_name = await client.count_events(Countable.event, WINDOW)
    assert [(c.value, c.count) for c in by_name] == [
        ("acme.step.0", 4),
        ("acme.step.1", 4),
        ("acme.step.2", 4),
    ]
    by_hour = await client.count_events("time", WINDOW, TimeUnit.hour, 1.0)
    assert len(by_hour) == 25
    assert by_hour[0].count == 12
    assert by_hour[0].start_time == START
    assert sum(c.count for c in by_hour) == 12


async def test_errors_are_domain_errors_with_the_servers_reason(client: EventsAPIClient) -> None:
    """Refusals raise HTTPStatusError subclasses that are also the matching domain error."""
    with pytest.raises(InvalidPageToken, match="403") as token_error:
        await client.read_events_page(f"{EPHEMERAL_API_URL}/events/filter/next?page-token=x.y")
    assert isinstance(token_error.value, HTTPStatusError)
    assert token_error.value.status == 403
    with pytest.raises(TooManyBuckets, match="would create 1440 buckets"):
        await client.count_events("time", WINDOW, TimeUnit.minute, 1.0)
    with pytest.raises(InvalidRequestError, match=r"less than or equal to 1000|<= 1000"):
        await client.read_events(limit=1001)
    body = (
        b'[{"occurred":"2026-01-05T00:00:00Z","event":"a","resource":{},'
        b'"id":"0192f3c4-5b6a-7c8d-9e0f-112233445566"}]'
    )
    with pytest.raises(InvalidEventError, match="index 0: Resources must include"):
        await client.http.post("events", content=body)
    huge = Event(event="a", resource={"prefect.resource.id": "r"}, payload={"x": "y" * 1_600_000})
    with pytest.raises(EventTooLarge, match=r"index 0: it is 16\d+ bytes of JSON, over the limit"):
        await client.create_events([huge])
    assert (await client.read_events(WINDOW)).total == 0


async def test_api_key_is_sent_and_required(tmp_path: Path) -> None:
    """A client given the key gets in; a client without it gets AuthenticationError."""
    settings = Settings(database=str(tmp_path / "events.duckdb"), api_key="s3cret")
    app = create_app(settings)
    keyed = EventsAPIClient(Connection(api_url="http://test/api", api_key="s3cret", app=app))
    async with keyed:
        await keyed.create_events(events(2))
        assert (await keyed.read_events(WINDOW)).total == 2
    anonymous = EventsAPIClient(Connection(api_url="http://test/api", app=app))
    async with anonymous:
        with pytest.raises(AuthenticationError, match=r"401.*no API key was given"):
            await anonymous.read_events(WINDOW)


async def test_reading_events_applies_the_servers_limits_not_the_clients(tmp_path: Path) -> None:
    """Events a server accepted are readable by a client configured with tighter limits."""
    settings = Settings(database=str(tmp_path / "events.duckdb"))
    app = create_app(settings)
    labels = {ID: "acme.widget.1", **{f"label.{i}": str(i) for i in range(10)}}
    async with EventsAPIClient(Connection(api_url="http://test/api", app=app)) as client:
        await client.create_events([Event(event="acme.big", resource=labels, occurred=START)])
        with temporary_settings(events_maximum_labels_per_resource=3):
            page = await client.read_events(WINDOW)
    assert [dict(e.resource) for e in page.events] == [labels]


async def test_a_server_that_is_not_there_is_named_in_one_readable_error() -> None:
    """Nothing listening at the URL: the error names the address and the setting that
    chooses it, and is both ``ServerUnreachable`` and ``httpx.ConnectError``."""
    url = f"http://127.0.0.1:{free_port()}/api"
    async with get_client(api_url=url) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.read_events(WINDOW)
    message = str(caught.value)
    assert url.removesuffix("/api") in message
    assert "LOCALEVENTS_API_URL" in message
    assert isinstance(caught.value, httpx.ConnectError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_the_sync_client_names_a_server_that_is_not_there_too() -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    with get_sync_client(api_url=url) as client, pytest.raises(ServerUnreachable) as caught:
        client.count_events(Countable.event, WINDOW)
    assert url.removesuffix("/api") in str(caught.value)
    assert isinstance(caught.value, httpx.ConnectError)


@pytest.mark.parametrize("where", ["ephemeral", "server"])
async def test_a_client_used_outside_its_block_says_so_at_once(tmp_path: Path, where: str) -> None:
    """A client never entered, or whose block has ended, raises RuntimeError naming the
    mistake before any request, in both modes (in ephemeral mode it waited out its retries
    on 503s, ~5 s, and blamed the server)."""
    url = None if where == "ephemeral" else f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(database=str(tmp_path / "events.duckdb")):
        client = get_client(api_url=url)
        calls = [
            client.create_events([Event(event="acme.e", resource={ID: "acme.r"})]),
            client.read_events(),
            client.count_events(Countable.event),
            client.import_events(tmp_path / "missing.ndjson"),
        ]
        for call in calls:
            with pytest.raises(RuntimeError, match=r"'async with get_client\(\) as client:'"):
                await call
        assert not (tmp_path / "events.duckdb").exists()  # nothing was opened
        async with client:
            pass
        with pytest.raises(RuntimeError, match="inside its block"):
            await client.read_events()


@pytest.mark.parametrize("page_size", [0, -1])
async def test_walking_pages_of_no_events_is_refused(
    client: EventsAPIClient, page_size: int
) -> None:
    """A walk with pages of 0 events would end at once having seen nothing (its one page
    has no next page), though events match: a ValueError says why, sync client too."""
    with pytest.raises(ValueError, match=f"page_size must be at least 1.*got {page_size}"):
        async for _ in client.iter_events(page_size=page_size):
            pass
    unused = f"http://127.0.0.1:{free_port()}/api"  # refused before any request
    with get_sync_client(api_url=unused) as sync, pytest.raises(ValueError, match="page_size"):
        list(sync.iter_events(page_size=page_size))


@pytest.mark.parametrize("key", ["s3cret\n", "cl\u00e9", "s3\x00cret", "s3cret ", " s3cret"])
@pytest.mark.parametrize("make", [get_client, get_events_client, get_events_subscriber])
def test_a_key_no_header_can_carry_is_refused_without_showing_it(
    key: str, make: Callable[..., object]
) -> None:
    """A key with a newline (read from a file), a non-ASCII letter, a control character or
    a space at either end is a ConfigurationError naming the problem, before any request,
    never showing the key: sent, it was a protocol error retried for a minute, the key in
    the message (or, with the space in front, accepted over HTTP and refused over
    WebSockets)."""
    with pytest.raises(ConfigurationError) as caught:
        make(api_url=f"http://127.0.0.1:{free_port()}/api", api_key=key)
    message = str(caught.value)
    assert "LOCALEVENTS_API_KEY" in message
    assert key.strip()[:2] not in message  # not a piece of the key
