"""emit_event and should_emit_events: one line to emit, from sync or async code
(SPEC B §5.8, A.1)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest
from _servers import clean_environ, free_port

from localevents import (
    Event,
    EventFilter,
    EventNameFilter,
    EventTooLarge,
    InvalidEventError,
    Resource,
    ServiceUnavailable,
    WebSocketEventsClient,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents.client import (
    AssertingEventsClient,
    EventsWorker,
    NullEventsClient,
    emit_event,
    should_emit_events,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ID = "prefect.resource.id"
WIDGET = {ID: "acme.widget.1"}
PATIENCE = 60.0


@pytest.fixture
def recording() -> Iterator[None]:
    """The background worker records instead of delivering (see :func:`flushed`)."""
    AssertingEventsClient.reset()
    with EventsWorker.overriding_client(AssertingEventsClient):
        yield
    EventsWorker.drain_all(PATIENCE)
    AssertingEventsClient.reset()


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "localevents-events-worker"]


def flushed() -> list[Event]:
    """Everything the worker's recording clients have received so far."""
    EventsWorker.flush_all(PATIENCE)
    return [event for client in AssertingEventsClient.all for event in client.events]


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    yield
    assert EventsWorker.drain_all(PATIENCE)


def test_defaults_fill_occurred_id_related_payload_and_follows(recording: None) -> None:
    """With only a name and a resource, the event occurred now, has a new UUIDv7 id, no
    related resources, an empty payload and follows nothing; it is what gets emitted."""
    before = datetime.now(UTC)
    emitted = emit_event("acme.widget.made", resource=WIDGET)
    after = datetime.now(UTC)
    assert emitted is not None
    assert before <= emitted.occurred <= after
    assert emitted.id.version == 7
    assert emitted.related == []
    assert emitted.payload == {}
    assert emitted.follows is None
    assert emitted.resource == Resource(WIDGET)
    assert flushed() == [emitted]


def test_given_fields_are_kept(recording: None) -> None:
    """occurred, related, payload and id are used as given (resources as plain dicts)."""
    occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event_id = uuid.uuid4()
    related = [{ID: "acme.factory.a", "prefect.resource.role": "factory"}]
    emitted = emit_event(
        "acme.widget.made",
        resource=WIDGET,
        occurred=occurred,
        related=related,
        payload={"n": 1},
        id=event_id,
    )
    assert emitted is not None
    assert (emitted.occurred, emitted.id, emitted.payload) == (occurred, event_id, {"n": 1})
    assert [r.role for r in emitted.related] == ["factory"]
    assert flushed() == [emitted]


@pytest.mark.parametrize(
    ("offset", "kept"),
    [
        (timedelta(minutes=-4, seconds=-59), True),
        (timedelta(minutes=4, seconds=59), True),
        (timedelta(0), True),
        (timedelta(minutes=-5), False),
        (timedelta(minutes=5), False),
        (timedelta(minutes=-6), False),
        (timedelta(hours=2), False),
    ],
)
def test_follows_is_set_only_within_five_minutes(
    recording: None, offset: timedelta, kept: bool
) -> None:
    """`follows` takes the earlier event's id only if the two occurred strictly less than
    five minutes apart, either way round; otherwise it stays empty."""
    earlier = Event(
        event="acme.widget.started",
        resource=WIDGET,
        occurred=datetime(2026, 1, 2, 3, 0, tzinfo=UTC),
    )
    emitted = emit_event(
        "acme.widget.made", resource=WIDGET, occurred=earlier.occurred + offset, follows=earlier
    )
    assert emitted is not None
    assert emitted.follows == (earlier.id if kept else None)


def test_an_event_over_the_size_limit_raises_and_is_not_emitted(recording: None) -> None:
    """Over LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES, emit_event raises EventTooLarge naming both
    sizes and the setting, and nothing reaches the worker; an event just under the limit goes
    through."""
    too_large = (
        r"^Event is too large to emit \(\d+ > 2000 bytes, the limit set by "
        r"LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES\)$"
    )
    with temporary_settings(events_maximum_size_bytes=2000):
        with pytest.raises(EventTooLarge, match=too_large):
            emit_event("acme.big", resource=WIDGET, payload={"blob": "x" * 2000})
        small = emit_event("acme.small", resource=WIDGET, payload={"blob": "x" * 1000})
    assert small is not None
    assert flushed() == [small]


def test_an_invalid_event_raises_in_the_caller(recording: None) -> None:
    """A resource without an id, or a related resource without a role, is an
    InvalidEventError at the call, with the rule in the message."""
    with pytest.raises(InvalidEventError, match=r"must include the prefect\.resource\.id"):
        emit_event("acme.bad", resource={"name": "no id"})
    with pytest.raises(InvalidEventError, match=r"prefect\.resource\.role"):
        emit_event("acme.bad", resource=WIDGET, related=[{ID: "acme.x"}])
    assert flushed() == []


def test_a_payload_json_cannot_hold_is_an_invalid_event(recording: None) -> None:
    """A payload holding an object that JSON cannot encode raises InvalidEventError at the
    call, naming the event and the type, and nothing reaches the worker."""

    class Widget:
        pass

    with pytest.raises(InvalidEventError, match=r"cannot emit 'acme\.odd'.*Widget"):
        emit_event("acme.odd", resource=WIDGET, payload={"widget": Widget()})
    assert flushed() == []


def test_unconfigured_emission_is_off() -> None:
    """With no server and ephemeral mode off, should_emit_events() is False and emit_event
    returns None without starting a worker."""
    workers_before = worker_threads()
    with temporary_settings(ephemeral=False):
        assert not should_emit_events()
        assert emit_event("acme.nowhere", resource=WIDGET) is None
    assert worker_threads() == workers_before


def test_configured_destinations_turn_emission_on(tmp_path: Path) -> None:
    """A server URL, ephemeral mode, an open ephemeral() block or a test override each make
    should_emit_events() True."""
    assert should_emit_events()  # ephemeral mode, the default
    with temporary_settings(ephemeral=False):
        with temporary_settings(api_url="http://127.0.0.1:9/api"):
            assert should_emit_events()
        with ephemeral(database=str(tmp_path / "events.duckdb")):
            assert should_emit_events()
        with EventsWorker.overriding_client(AssertingEventsClient):
            assert should_emit_events()


def test_a_null_client_means_nothing_is_emitted() -> None:
    """When the worker's client is a NullEventsClient, emit_event returns None."""
    with EventsWorker.overriding_client(NullEventsClient):
        assert emit_event("acme.null", resource=WIDGET) is None


def test_a_full_queue_returns_none_instead_of_blocking() -> None:
    """When the worker's queue is full, emit_event returns None at once (the event is dropped
    and counted) rather than waiting."""
    gate = threading.Event()
    with (
        temporary_settings(events_worker_max_queue_size=1),
        EventsWorker.overriding_client(_StuckClient, gate=gate),
    ):
        first = emit_event("acme.q.1", resource=WIDGET)
        assert first is not None
        results = [emit_event(f"acme.q.{n}", resource=WIDGET) for n in range(2, 6)]
        worker = EventsWorker.instance()
    assert None in results
    assert worker.statistics().dropped == results.count(None)
    gate.set()


class _StuckClient(AssertingEventsClient):
    def __init__(self, *, gate: threading.Event) -> None:
        super().__init__(gate=gate)
        self.gate = gate

    async def _emit(self, event: Event) -> None:
        await anyio.to_thread.run_sync(self.gate.wait)


def test_transport_trouble_never_reaches_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    """With the server unreachable, emit_event still returns the event; the trouble is
    logged, and flush() is where it shows."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    url = f"http://127.0.0.1:{free_port()}/api"
    with (
        temporary_settings(api_url=url),
        EventsWorker.overriding_client(WebSocketEventsClient, reconnection_attempts=0),
    ):
        emitted = emit_event("acme.offline", resource=WIDGET)
        assert emitted is not None
        with pytest.raises(ServiceUnavailable):
            EventsWorker.instance().flush(PATIENCE)
    assert any("could not open" in record.getMessage() for record in caplog.records)


async def test_emit_from_async_code_lands_in_the_ephemeral_store(tmp_path: Path) -> None:
    """Called inside a running event loop (either backend), emit_event returns at once and
    the event is stored; many threads emitting at once lose nothing."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        emitted = [emit_event(f"acme.async.{n}", resource=WIDGET) for n in range(20)]

        def emit_from_thread(thread: int) -> None:
            for n in range(20):
                emit_event(f"acme.threaded.{thread}.{n}", resource=WIDGET)

        async with anyio.create_task_group() as group:
            for thread in range(3):
                group.start_soon(anyio.to_thread.run_sync, emit_from_thread, thread)
        await anyio.to_thread.run_sync(EventsWorker.flush_all, PATIENCE)
        async with get_client() as client:
            mine = EventFilter(event=EventNameFilter(prefix=["acme.async."]), order="ASC")
            page = await client.read_events(mine, limit=100)
            threaded = EventFilter(event=EventNameFilter(prefix=["acme.threaded."]))
            assert (await client.read_events(threaded, limit=100)).total == 60
    assert [e.id for e in page.events] == [e.id for e in emitted if e is not None]


def test_leaving_an_ephemeral_block_delivers_what_was_emitted_and_frees_the_file(
    tmp_path: Path,
) -> None:
    """Events emitted inside ``with ephemeral(file)`` are in the file once the block closes,
    and the file is free: DuckDB itself can open it read-only straight after."""
    import duckdb

    database = str(tmp_path / "events.duckdb")
    with ephemeral(database):
        emitted = [emit_event("acme.widget.made", WIDGET) for _ in range(25)]
    assert all(event is not None for event in emitted)
    assert not [w for w in worker_threads() if w.is_alive()]
    with duckdb.connect(database, read_only=True) as con:
        stored = {str(row[0]) for row in con.execute("SELECT id FROM events").fetchall()}
    assert stored == {str(event.id) for event in emitted if event is not None}


@pytest.mark.parametrize("misspelt", ["LOCALEVENTS_API_ULR", "LOCALEVENTS_EPHEMRAL"])
def test_a_misspelt_setting_makes_emit_event_raise_not_drop_the_event(
    misspelt: str, tmp_path: Path
) -> None:
    """A typo in a setting is an error here too, not emission quietly switched off."""
    script = (
        "from localevents import emit_event\n"
        "print(emit_event('acme.widget.made', {'prefect.resource.id': 'acme.widget.1'}))\n"
    )
    environ = clean_environ({misspelt: "false", "LOCALEVENTS_HOME": str(tmp_path)})
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    assert f"unknown setting {misspelt}" in result.stderr
