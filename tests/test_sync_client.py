"""The sync API client: the async client's behaviour and errors from plain functions, paging
helpers for notebooks, in ephemeral mode and against a server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from _servers import free_port

from localevents import (
    Countable,
    Event,
    EventFilter,
    EventOccurredFilter,
    InvalidPageToken,
    InvalidRequestError,
    ReceivedEvent,
    ServerType,
    TimeUnit,
    ephemeral,
    temporary_settings,
)
from localevents.client import SyncEventsAPIClient, get_sync_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ID = "prefect.resource.id"
START = datetime(2026, 1, 5, tzinfo=UTC)
WINDOW = EventFilter(
    occurred=EventOccurredFilter(since=START, until=START + timedelta(days=1)), order="ASC"
)


def events(n: int) -> list[Event]:
    return [
        Event(
            event=f"acme.step.{i % 3}",
            resource={ID: f"acme.widget.{i % 4}"},
            occurred=START + timedelta(minutes=i),
        )
        for i in range(n)
    ]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[SyncEventsAPIClient]:
    with temporary_settings(database=str(tmp_path / "events.duckdb")), get_sync_client() as client:
        yield client


def test_iter_events_walks_every_page_once_in_order(client: SyncEventsAPIClient) -> None:
    """iter_events yields every matching event exactly once, in the filter's order, however
    small the pages."""
    written = events(23)
    client.create_events(written)
    pages = list(client.iter_pages(WINDOW, page_size=5))
    assert [len(page.events) for page in pages] == [5, 5, 5, 5, 3]
    seen = list(client.iter_events(WINDOW, page_size=5))
    assert [e.id for e in seen] == [e.id for e in written]
    assert all(isinstance(e, ReceivedEvent) for e in seen)


def test_events_stored_during_a_walk_do_not_shift_it(client: SyncEventsAPIClient) -> None:
    """Pages are fetched as the iteration reaches them, and an event stored meanwhile does
    not shift the walk: nothing is repeated or skipped (keyset pages)."""
    client.create_events(events(10))
    walk = client.iter_events(WINDOW, page_size=4)
    first = [next(walk) for _ in range(4)]
    client.create_events([Event(event="acme.late", resource={ID: "x"}, occurred=START)])
    rest = list(walk)
    assert len(first) + len(rest) == 10
    assert "acme.late" not in {e.event for e in first + rest}


def test_counts_and_pages_match_the_async_client(client: SyncEventsAPIClient) -> None:
    """count_events, read_events and read_events_page answer like the async methods."""
    client.create_events(events(12))
    by_name = client.count_events(Countable.event, WINDOW)
    assert {(row.value, row.count) for row in by_name} == {
        ("acme.step.0", 4),
        ("acme.step.1", 4),
        ("acme.step.2", 4),
    }
    hourly = client.count_events("time", WINDOW, TimeUnit.hour, 1)
    assert sum(row.count for row in hourly) == 12
    page = client.read_events(WINDOW, limit=10)
    assert (page.total, len(page.events)) == (12, 10)
    assert page.next_page is not None
    assert len(client.read_events_page(page.next_page).events) == 2


def test_errors_are_the_async_clients_domain_errors(client: SyncEventsAPIClient) -> None:
    """A tampered page token raises InvalidPageToken and a too-large limit
    InvalidRequestError, each with the server's reason."""
    client.create_events(events(3))
    page = client.read_events(WINDOW, limit=1)
    assert page.next_page is not None
    with pytest.raises(InvalidPageToken, match="403"):
        client.read_events_page(page.next_page[:-3] + "AAA")
    with pytest.raises(InvalidRequestError, match="limit"):
        client.read_events(WINDOW, limit=1001)


def test_threads_share_one_client(client: SyncEventsAPIClient) -> None:
    """Several threads may call one client at the same time."""
    batches = [events(5) for _ in range(4)]
    threads = [threading.Thread(target=client.create_events, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.read_events(WINDOW, limit=0).total == 20


def test_ephemeral_block_routes_the_sync_client(tmp_path: Path) -> None:
    """Inside `with ephemeral()`, a sync client reads and writes the block's store."""
    database = str(tmp_path / "block.duckdb")
    with ephemeral(database=database):
        with get_sync_client() as client:
            assert client.server_type is ServerType.EPHEMERAL
            client.create_events(events(2))
        with get_sync_client() as client:
            assert client.read_events(WINDOW).total == 2


def test_use_outside_the_block_is_a_clear_error() -> None:
    """Calling a client that is not open raises RuntimeError saying to use `with`."""
    with pytest.raises(RuntimeError, match="with"):
        get_sync_client().read_events()


def test_unreachable_server_fails_fast_with_the_connect_error() -> None:
    """A URL nothing listens on raises httpx.ConnectError at the first request, no retries."""
    url = f"http://127.0.0.1:{free_port()}/api"
    with get_sync_client(api_url=url) as client:
        assert client.server_type is ServerType.SERVER
        with pytest.raises(httpx.ConnectError):
            client.read_events()
