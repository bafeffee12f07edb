"""The query time limit (``LOCALEVENTS_SERVER_QUERY_TIMEOUT``): a read past it is stopped
and answers 504 ``QueryTimeout`` (not retried by the SDK) on every query route, a
subscription's backfill is closed naming it, the thread's cursor stays usable, and closing
the store stops the reads still running instead of failing on their busy cursors."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest
from _servers import serve
from _sockets import closed
from httpx_ws import aconnect_ws

from localevents import (
    ConfigurationError,
    EventFilter,
    QueryTimeout,
    ServiceUnavailable,
    get_client,
)
from localevents._settings import Settings, settings_from_environ, temporary_settings
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.samples import write_sample_database
from localevents.server import create_app
from localevents.server._reading import query_limit
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from localevents.storage._engine import EventStore

BASE_URL = "http://test/api/"
LIMIT = "0.1s"
DEADLINE = 60.0
"""Seconds a step may take before the test fails (a guard against hangs, not a timing)."""
SLOW_SQL = "SELECT count(*) FROM range(1000000000000) t(a) WHERE a % 7 = 3"
"""A read that runs for hours."""
SLOW_FILTER: dict[str, Any] = {
    "any_resource": [{"labels": {"a": [f"?{i}*{j}" for i in range(100)]}} for j in range(20)]
}
"""A filter at its size limits that matches nothing: about 0.4 s over the 2000 events of
:func:`slow_file` here, against a limit of 0.1 s. Its patterns have inner wildcards, so each
one is a ``LIKE`` of its own (exact values and prefixes are one regular expression, faster)."""
SLOW_MATCHING_FILTER: dict[str, Any] = {
    "any_resource": [
        {"labels": {"prefect.resource.id": [f"?{i}*{j}" for i in range(99)] + ["prefect.*"]}}
        for j in range(20)
    ]
}
"""Likewise, matching most events (the resources whose id starts ``prefect.``): about
0.55 s here."""
EVENTS = 2000


@pytest.fixture(scope="module")
def slow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An events file on which :data:`SLOW_FILTER` takes far longer than :data:`LIMIT`."""
    path = tmp_path_factory.mktemp("slow") / "events.duckdb"
    start = datetime.now(UTC) - timedelta(days=2)
    with temporary_settings(Settings(home=str(path.parent / "home"))):
        write_sample_database(path, EVENTS, seed=3, start=start, span=timedelta(days=1))
    return path


@pytest.fixture
def limited(slow_file: Path) -> Iterator[Path]:
    """The slow file, with the server's query time limit at :data:`LIMIT`."""
    with temporary_settings(server_query_timeout=LIMIT):
        yield slow_file


@contextlib.asynccontextmanager
async def _client(path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process app over ``path`` with the settings of now, and a client of it."""
    app = create_app(None, database=str(path), docs=False)
    transport = InProcessWebSocketTransport(app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@pytest.fixture
async def http(limited: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(limited) as client:
        yield client


@pytest.fixture
async def unlimited(slow_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of another app over the same file (the same store, the same worker
    threads and cursors), with no time limit."""
    with temporary_settings(server_query_timeout="0"):
        async with _client(slow_file) as client:
            yield client


def _body(**extra: Any) -> dict[str, Any]:
    return {"filter": SLOW_FILTER, **extra}


def _assert_query_timeout(response: httpx.Response) -> None:
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["error"] == "QueryTimeout"
    assert "longer than the server's limit of 0.1 s" in body["detail"]
    assert "LOCALEVENTS_SERVER_QUERY_TIMEOUT" in body["detail"]


# -- the store -----------------------------------------------------------------------------


def test_a_read_past_its_time_limit_stops_and_names_the_limit(store: EventStore) -> None:
    with store.time_limit(0.2), pytest.raises(QueryTimeout, match=r"limit of 0\.2 s"):
        store.fetchall(SLOW_SQL)
    assert store.reads_running == 0
    assert store.fetchall("SELECT 42") == [(42,)]


def test_a_read_stopped_inside_its_transaction_leaves_the_cursor_usable(
    store: EventStore,
) -> None:
    with store.time_limit(0.2), pytest.raises(QueryTimeout), store.reading() as cursor:  # noqa: PT012
        cursor.execute("BEGIN TRANSACTION")
        cursor.execute(SLOW_SQL).fetchall()
    with store.reading() as cursor:  # a transaction left open would refuse this one
        cursor.execute("BEGIN TRANSACTION")
        cursor.execute("ROLLBACK")


def test_the_limit_counts_from_the_start_of_the_block_across_its_reads(
    store: EventStore,
) -> None:
    with store.time_limit(0.3):
        store.fetchall("SELECT 1")
        time.sleep(0.3)
        with pytest.raises(QueryTimeout):
            store.fetchall(SLOW_SQL)


def test_a_read_whose_interrupts_fell_between_its_statements_still_times_out(
    store: EventStore,
) -> None:
    """DuckDB forgets an interrupt that arrives between two statements when the next one
    starts: a read of short statements could run on past its deadline and answer. It
    raises once it ends instead (a filter of many label patterns, 40 short statements
    making its key tables, answered 200 past a 0.1 s limit)."""
    with store.time_limit(0.1), pytest.raises(QueryTimeout), store.reading() as cursor:  # noqa: PT012
        time.sleep(0.3)  # past the deadline, and the interrupts after it, between statements
        assert cursor.execute("SELECT 42").fetchall() == [(42,)]
    assert store.reads_running == 0
    assert store.fetchall("SELECT 42") == [(42,)]


def test_reads_outside_a_time_limit_and_after_it_are_not_limited(store: EventStore) -> None:
    with store.time_limit(0.05):
        pass
    time.sleep(0.1)
    assert store.fetchall("SELECT count(*) FROM range(3000000)") == [(3_000_000,)]


def test_closing_the_store_stops_a_read_that_is_running(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.duckdb"))
    failures: list[BaseException] = []
    started = threading.Event()

    def read() -> None:
        started.set()
        try:
            store.fetchall(SLOW_SQL)
        except BaseException as exc:  # recorded for the test
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    started.wait()
    while store.reads_running == 0:
        time.sleep(0.01)
    release(store)  # closed the DuckDB cursor busy in the other thread: refused
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert store.closed
    assert len(failures) == 1
    assert isinstance(failures[0], ServiceUnavailable)
    assert "is closed" in str(failures[0])


# -- the server ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("events/filter", _body()),
        ("events/count-by/event", _body()),
        ("events/count-by/resource", _body()),
        ("events/count-by/day", _body()),
        ("events/export", _body()),
    ],
    ids=["filter", "count-event", "count-resource", "count-day", "export-ndjson"],
)
async def test_a_query_past_the_limit_answers_504(
    http: httpx.AsyncClient, unlimited: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    with anyio.fail_after(DEADLINE):
        _assert_query_timeout(await http.post(path, json=body))
        # the worker threads' cursors are still good for the next query
        quick = await unlimited.post("events/filter", json={"limit": 1})
    assert quick.status_code == 200
    assert quick.json()["total"] == EVENTS


@pytest.mark.anyio
async def test_a_next_page_past_the_limit_answers_504(
    http: httpx.AsyncClient, unlimited: httpx.AsyncClient
) -> None:
    with anyio.fail_after(DEADLINE):
        first = await unlimited.post("events/filter", json={"filter": SLOW_MATCHING_FILTER})
        assert first.status_code == 200, first.text
        assert first.json()["next_page"] is not None
        _assert_query_timeout(await http.get(first.json()["next_page"]))


@pytest.mark.anyio
async def test_without_a_limit_the_slow_query_answers(unlimited: httpx.AsyncClient) -> None:
    with anyio.fail_after(DEADLINE):
        response = await unlimited.post("events/count-by/event", json=_body())
    assert response.status_code == 200, response.text
    assert response.json() == []


@pytest.mark.anyio
async def test_a_backfill_past_the_limit_closes_the_subscription_naming_it(
    http: httpx.AsyncClient,
) -> None:
    with anyio.fail_after(DEADLINE):
        async with aconnect_ws("events/out", http, subprotocols=["prefect"]) as socket:
            await socket.send_json({"type": "auth", "token": None})
            assert await socket.receive_json() == {"type": "auth_success"}
            await socket.send_text(json.dumps({"type": "filter", "filter": SLOW_FILTER}))
            close = await closed(socket)
    assert close.code == 1008
    assert "limit of 0.1 s" in close.reason


def test_the_sdk_raises_query_timeout_once_without_retrying(limited: Path, tmp_path: Path) -> None:
    """Over a real server: the SDK's own timeout (60 s) outlasts the server's limit, and a
    504 is not retried, so the server ran the query once."""
    env = {"LOCALEVENTS_SERVER_QUERY_TIMEOUT": LIMIT, "LOCALEVENTS_HOME": str(tmp_path)}
    with serve(limited, env=env) as server:

        async def query() -> None:
            async with get_client(api_url=server.url) as client:
                await client.read_events(msgspec.convert(SLOW_FILTER, EventFilter))

        with pytest.raises(QueryTimeout, match=r"504 .*limit of 0\.1 s"):
            anyio.run(query)
        metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, 'localevents_server_query_duration_seconds_count{kind="filter"}') == 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics")


def test_the_limits_are_read_as_durations_and_zero_means_none() -> None:
    settings = settings_from_environ(
        {"LOCALEVENTS_SERVER_QUERY_TIMEOUT": "2m", "LOCALEVENTS_CLIENT_TIMEOUT": "90s"}
    )
    assert settings.server_query_timeout == timedelta(minutes=2)
    assert settings.client_timeout == timedelta(seconds=90)
    assert query_limit(settings) == 120.0
    assert query_limit(settings.replace(server_query_timeout="0")) is None
    with pytest.raises(ConfigurationError, match="LOCALEVENTS_CLIENT_TIMEOUT must be > 0"):
        settings_from_environ({"LOCALEVENTS_CLIENT_TIMEOUT": "0"})
    with pytest.raises(ConfigurationError, match=r"LOCALEVENTS_SERVER_QUERY_TIMEOUT.*duration"):
        settings_from_environ({"LOCALEVENTS_SERVER_QUERY_TIMEOUT": "soon"})
