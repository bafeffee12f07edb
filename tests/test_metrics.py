"""Prometheus metrics: ``GET /api/metrics`` on a real server under real traffic, the SDK's
counters in this process, the API key, and the no-op stand-ins without prometheus-client.

The default registry is process-wide, so every assertion reads a difference between two
scrapes taken around the traffic it is about.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from _servers import clean_environ, serve
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from localevents import (
    Event,
    EventFilter,
    EventNameFilter,
    EventSubscriber,
    ReceivedEvent,
    Resource,
    Settings,
    WebSocketEventsClient,
    ephemeral,
    temporary_settings,
)
from localevents.client import AssertingEventsClient, EventsWorker
from localevents.server import create_app
from localevents.storage._engine import open_store, release

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from _servers import ServerProcess

SMALL_QUEUE = {"LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE": "1000"}  # fills fast
ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds any one step may take before the test fails instead of hanging."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def local() -> Samples:
    """Every sample of this process's default registry."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """How much one sample moved between two scrapes (absent counts as 0)."""
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def post(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    """Post a batch; it must be stored."""
    response = await http.post("events", json=events)
    assert response.status_code == 204, response.text


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def event(name: str, payload_bytes: int = 0) -> Event:
    return Event(
        event=name, resource=Resource({ID: "acme.widget"}), payload={"blob": "x" * payload_bytes}
    )


def wire(name: str, payload_bytes: int = 0) -> dict[str, Any]:
    """An event as the JSON a producer posts."""
    wired: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event(name, payload_bytes)))
    return wired


def named(prefix: str) -> EventFilter:
    return EventFilter(event=EventNameFilter(prefix=[prefix]))


def name_filter(prefix: str) -> dict[str, Any]:
    """A JSON filter for the events named ``prefix...``, whenever they occurred."""
    return {
        "event": {"prefix": [prefix]},
        "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
    }


async def take(subscriber: EventSubscriber, count: int) -> list[ReceivedEvent]:
    """The next ``count`` events of ``subscriber``."""
    received = []
    with anyio.fail_after(PATIENCE):
        async for received_event in subscriber:
            received.append(received_event)
            if len(received) == count:
                break
    return received


@contextlib.asynccontextmanager
async def open_api(
    tmp_path: Path, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh in-process app over ``tmp_path/events.duckdb``."""
    app = create_app(settings, database=str(tmp_path / "events.duckdb"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://test/api/") as client,
    ):
        yield client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``localevents serve`` shared by this module's tests."""
    with serve(tmp_path_factory.mktemp("metrics") / "events.duckdb", env=SMALL_QUEUE) as process:
        yield process


@contextlib.asynccontextmanager
async def server_api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{server.url}/", timeout=PATIENCE) as http:
        yield http


async def wait_for_subscribers(http: httpx.AsyncClient, count: float) -> None:
    """Scrape until the server counts ``count`` open subscriptions (a closed socket leaves
    the hub as soon as the server notices, not at once)."""
    with anyio.fail_after(PATIENCE):
        while True:
            if (await scrape(http)).get(("localevents_server_subscribers", frozenset())) == count:
                return
            await anyio.sleep(0.02)


# A real server


async def test_the_route_counts_ingest_rejections_and_queries_of_real_traffic(
    server: ServerProcess,
) -> None:
    """Events stored over HTTP and over a WebSocket, a refused batch, and each kind of query
    move the server's counters by exactly what happened."""
    prefix = f"traffic.{uuid.uuid4().hex}."
    async with server_api(server) as http:
        before = await scrape(http)
        stored = await http.post("events", json=[wire(f"{prefix}{i}") for i in range(3)])
        refused = await http.post("events", json=[wire(f"{prefix}bad"), {"event": "no.id"}])
        async with WebSocketEventsClient(server.url) as producer:
            for i in range(3, 5):
                await producer.emit(event(f"{prefix}{i}"))
        first = await http.post("events/filter", json={"filter": name_filter(prefix), "limit": 3})
        second = await http.get(first.json()["next_page"])
        counts = await http.post("events/count-by/event", json={"filter": name_filter(prefix)})
        export = await http.post("events/export", json={"filter": name_filter(prefix)})
        snapshot = {"filter": name_filter(prefix), "format": "parquet"}
        parquet = await http.post("events/export", json=snapshot)
        after = await scrape(http)
    assert (stored.status_code, refused.status_code) == (204, 422)
    assert len(first.json()["events"]) + len(second.json()["events"]) == 5
    assert sorted((c["value"], c["count"]) for c in counts.json()) == [
        (f"{prefix}{i}", 1) for i in range(5)
    ]
    assert len(export.text.splitlines()) == 5
    assert parquet.headers["localevents-event-count"] == "5"

    def moved(name: str, **labels: str) -> float:
        return delta(after, before, name, **labels)

    assert moved("localevents_server_events_ingested_total", transport="http") == 3
    assert moved("localevents_server_events_ingested_total", transport="websocket") == 2
    assert (
        moved("localevents_server_rejections_total", transport="http", reason="invalid_event") == 1
    )
    queries = "localevents_server_query_duration_seconds_count"
    for kind in ("filter", "next_page", "count", "export_ndjson", "export_parquet"):
        assert moved(queries, kind=kind) == 1, kind
    assert moved(queries, kind="backfill") == 0
    assert after[("localevents_server_writer_pending_batches", frozenset())] == 0


async def test_the_subscribers_gauge_follows_open_subscriptions(server: ServerProcess) -> None:
    """The subscriber gauge counts an open subscription and drops back when it closes, its
    backfill counts as a query; the SDK counts the subscriber's connection and the events it
    delivered."""
    prefix = f"gauge.{uuid.uuid4().hex}."
    async with server_api(server) as http:
        await wait_for_subscribers(http, 0)
        before, sdk_before = await scrape(http), local()
        async with EventSubscriber(server.url, filter=named(prefix)) as subscriber:
            await post(http, [wire(f"{prefix}{i}") for i in range(2)])
            await take(subscriber, 2)
            during = await scrape(http)
        sdk_after = local()
        await wait_for_subscribers(http, 0)
    assert during[("localevents_server_subscribers", frozenset())] == 1
    backfills = delta(
        during, before, "localevents_server_query_duration_seconds_count", kind="backfill"
    )
    assert backfills == 1  # the subscription's one page of stored events

    def moved(name: str, **labels: str) -> float:
        return delta(sdk_after, sdk_before, name, client="EventSubscriber", **labels)

    connections = "localevents_websocket_connections_total"
    assert moved("localevents_events_observed_total") == 2
    assert moved(connections, direction="out", kind="initial") == 1
    assert moved(connections, direction="out", kind="reconnect") == 0


@pytest.mark.slow
async def test_a_slow_subscriber_is_counted_as_fallen_behind_and_reconnects(
    server: ServerProcess,
) -> None:
    """A subscriber that stops reading while far more events arrive than its server-side
    queue holds is closed (counted by the server) and reconnects (counted by the SDK)."""
    prefix = f"slow.{uuid.uuid4().hex}."
    count, batch = 3000, 250
    async with server_api(server) as http:
        before, sdk_before = await scrape(http), local()
        subscriber = EventSubscriber(server.url, filter=named(prefix))
        with anyio.fail_after(PATIENCE * 2):
            async with subscriber:
                for start in range(0, count, batch):
                    events = [wire(f"{prefix}{i:04d}", 20_000) for i in range(start, start + batch)]
                    assert (await http.post("events", json=events)).status_code == 204
                received = await take(subscriber, count)
        after, sdk_after = await scrape(http), local()
    assert [e.event for e in received] == [f"{prefix}{i:04d}" for i in range(count)]
    assert subscriber.reconnects >= 1
    fell_behind = delta(after, before, "localevents_server_subscribers_fell_behind_total")
    assert fell_behind == subscriber.reconnects
    reconnects = delta(
        sdk_after,
        sdk_before,
        "localevents_websocket_connections_total",
        client="EventSubscriber",
        direction="out",
        kind="reconnect",
    )
    assert reconnects == subscriber.reconnects
    observed = delta(
        sdk_after, sdk_before, "localevents_events_observed_total", client="EventSubscriber"
    )
    assert observed == count


# In-process: the SDK, rejection reasons, the writer's queue, the API key


async def test_sdk_counters_follow_emits_checkpoints_observations_and_reconnects(
    tmp_path: Path,
) -> None:
    """Emitting counts every call (a refused one too), the refusal's reconnect and the
    closing checkpoint are counted, the subscriber counts what it delivered, and the
    in-process server counts what it stored and the frame it refused."""
    poison = event("sdk.poison", payload_bytes=8000)
    # The in-process app is built (by the subscriber's connection) under a lower size limit
    # than the producer then has, so the producer sends what the server refuses.
    with temporary_settings(events_maximum_size_bytes=4000):
        async with ephemeral(database=str(tmp_path / "events.duckdb")):
            before = local()
            with anyio.fail_after(PATIENCE):
                async with EventSubscriber(filter=named("sdk.")) as subscriber:
                    with temporary_settings(events_maximum_size_bytes=9000):
                        async with WebSocketEventsClient(checkpoint_every=1000) as producer:
                            for emitted in (event("sdk.0"), poison, event("sdk.1"), event("sdk.2")):
                                await producer.emit(emitted)
                    received = await take(subscriber, 3)
            after = local()
    assert [e.event for e in received] == ["sdk.0", "sdk.1", "sdk.2"]
    assert producer.reconnects == 1

    def moved(name: str, **labels: str) -> float:
        return delta(after, before, name, **labels)

    producer_name, subscriber_name = "WebSocketEventsClient", "EventSubscriber"
    connections = "localevents_websocket_connections_total"
    assert moved("localevents_events_emitted_total", client=producer_name) == 4
    assert moved(connections, client=producer_name, direction="in", kind="initial") == 1
    assert moved(connections, client=producer_name, direction="in", kind="reconnect") == 1
    assert moved("localevents_websocket_checkpoints_total", client=producer_name) == 1
    assert moved("localevents_events_observed_total", client=subscriber_name) == 3
    assert moved(connections, client=subscriber_name, direction="out", kind="initial") == 1
    ingested = "localevents_server_events_ingested_total"
    assert moved(ingested, transport="websocket") == 3  # a resend after the reconnect is not
    rejections = "localevents_server_rejections_total"
    assert moved(rejections, transport="websocket", reason="event_too_large") == 1


async def test_refused_batches_are_counted_by_reason(tmp_path: Path) -> None:
    """Each refused HTTP batch counts once under its reason, and stores nothing."""
    settings = Settings(events_maximum_size_bytes=2_000, server_maximum_body_bytes=50_000)
    async with open_api(tmp_path, settings) as http:
        before = await scrape(http)
        statuses = [
            (await http.post("events", json=[wire("ok"), {"event": "no.resource"}])).status_code,
            (await http.post("events", content=b"[{not json")).status_code,
            (await http.post("events", json=[wire("big", payload_bytes=3_000)])).status_code,
            (await http.post("events", json=[wire("huge", payload_bytes=60_000)])).status_code,
        ]
        after = await scrape(http)
    assert statuses == [422, 422, 422, 413]

    def refused(reason: str) -> float:
        return delta(
            after, before, "localevents_server_rejections_total", transport="http", reason=reason
        )

    assert (refused("invalid_event"), refused("event_too_large"), refused("body_too_large")) == (
        2,
        1,
        1,
    )
    assert delta(after, before, "localevents_server_events_ingested_total", transport="http") == 0


async def test_the_writer_queue_gauge_counts_batches_waiting_for_a_commit(tmp_path: Path) -> None:
    """While a commit is in progress, a batch that arrives waits for the next one and the
    writer queue gauge says so; once the commit ends, the gauge is back to zero."""
    entered, gate = threading.Event(), threading.Event()

    def hold_the_first_commit(_: object) -> None:  # runs before the writer lets go
        if not entered.is_set():
            entered.set()
            gate.wait(PATIENCE)

    async with open_api(tmp_path) as http:
        store = open_store(str(tmp_path / "events.duckdb"))  # the app's own store
        store.add_commit_listener(hold_the_first_commit)
        try:
            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as posting:
                    posting.start_soon(post, http, [wire("writer.first")])
                    await anyio.to_thread.run_sync(entered.wait)
                    posting.start_soon(post, http, [wire("writer.second")])
                    while True:
                        if store.pending_batches == 1:
                            break
                        await anyio.sleep(0.01)
                    waiting = await scrape(http)
                    gate.set()
            done = await scrape(http)
        finally:
            gate.set()
            store.remove_commit_listener(hold_the_first_commit)
            release(store)
    gauge = ("localevents_server_writer_pending_batches", frozenset())
    assert (waiting[gauge], done[gauge]) == (1, 0)


async def test_the_route_requires_the_api_key_when_one_is_set(tmp_path: Path) -> None:
    """With a key configured, metrics answer 401 without it and 200 with it (as a bearer
    token, as Prometheus sends it); the health probe stays open."""
    async with open_api(tmp_path, Settings(api_key="s3cret")) as http:
        without = await http.get("metrics")
        wrong = await http.get("metrics", headers={"Authorization": "Bearer nope"})
        keyed = await http.get("metrics", headers={"Authorization": "Bearer s3cret"})
        health = await http.get("health")
    assert (without.status_code, wrong.status_code, keyed.status_code) == (401, 401, 200)
    assert keyed.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "localevents_server_events_ingested_total" in keyed.text
    assert health.status_code == 200


async def test_the_route_speaks_openmetrics_when_asked(tmp_path: Path) -> None:
    """A scraper that asks for OpenMetrics (Prometheus does) gets it."""
    accept = "application/openmetrics-text; version=1.0.0"
    async with open_api(tmp_path) as http:
        response = await http.get("metrics", headers={"Accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


class GatedClient(AssertingEventsClient):
    """Records like its parent, but each emit waits until the test opens ``gate``."""

    def __init__(self, *, entered: threading.Event, gate: threading.Event) -> None:
        super().__init__(entered=entered, gate=gate)
        self.entered = entered
        self.gate = gate

    async def _emit(self, emitted: Event) -> None:
        self.entered.set()
        await anyio.to_thread.run_sync(self.gate.wait, abandon_on_cancel=True)
        await super()._emit(emitted)


def test_events_the_worker_drops_are_counted() -> None:
    """Events refused by a full worker queue are counted under the worker's client class."""
    entered, gate = threading.Event(), threading.Event()
    before = local()
    try:
        with EventsWorker(GatedClient, {"entered": entered, "gate": gate}, max_queue_size=1) as w:
            assert w.send(event("drop.0"))
            assert entered.wait(PATIENCE)  # the client holds event 0; the queue is empty
            sent = [w.send(event(f"drop.{i}")) for i in range(1, 4)]
            dropped = delta(
                local(), before, "localevents_worker_events_dropped_total", client="GatedClient"
            )
            gate.set()
            w.flush(PATIENCE)
    finally:
        gate.set()
        AssertingEventsClient.reset()
    assert sent == [True, False, False]
    assert dropped == 2


# Without prometheus-client

_WITHOUT_PROMETHEUS = """
import json, sys
sys.modules["prometheus_client"] = None  # as if the "metrics" extra were not installed

import anyio, httpx
from localevents import Event, EventSubscriber, Resource, WebSocketEventsClient, ephemeral
from localevents import _metrics
from localevents.server import create_app

async def main():
    results = {"available": _metrics.AVAILABLE, "exposition": _metrics.exposition(None)}
    app = create_app(database=sys.argv[1])
    async with app.lifespan(), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test/api/"
    ) as http:
        results["metrics"] = (await http.get("metrics")).status_code
        results["bad"] = (await http.post("events", json=[{"event": "x"}])).status_code
        results["filter"] = (await http.post("events/filter", json={})).status_code
    async with ephemeral(database=sys.argv[1]):
        async with EventSubscriber() as subscriber:
            async with WebSocketEventsClient() as producer:
                resource = Resource({"prefect.resource.id": "r"})
                await producer.emit(Event(event="a", resource=resource))
            async for received in subscriber:
                results["received"] = received.event
                break
    results["prometheus_loaded"] = sys.modules.get("prometheus_client") is not None
    print(json.dumps(results))

anyio.run(main)
"""


def test_without_prometheus_client_there_is_no_route_and_metrics_cost_nothing(
    tmp_path: Path,
) -> None:
    """Without prometheus-client, ``/api/metrics`` answers 404 and every instrumented path
    (ingest, refusal, query, emit, subscribe) works with the no-op stand-ins."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WITHOUT_PROMETHEUS), str(tmp_path / "e.duckdb")],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=clean_environ({"LOCALEVENTS_HOME": str(tmp_path / "home")}),
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert results == {
        "available": False,
        "exposition": None,
        "metrics": 404,
        "bad": 422,
        "filter": 200,
        "received": "a",
        "prometheus_loaded": False,
    }
