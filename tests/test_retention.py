"""Retention: old events deleted on a schedule, new ones kept, ingest unaffected, and the
events file bounded over repeated ingest/delete cycles."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest

from localevents import (
    ConfigurationError,
    EventFilter,
    EventOccurredFilter,
    ReceivedEvent,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents._settings import settings_from_environ, spoken_duration
from localevents.events._time import now_utc
from localevents.storage import _retention, open_store, release
from localevents.storage._retention import (
    delete_expired,
    start_retention,
    stop_retention,
)
from tests._servers import serve

if TYPE_CHECKING:
    from pathlib import Path

    from localevents.storage import EventStore

DAY = timedelta(days=1)
START = datetime(2026, 1, 1, tzinfo=UTC)
EVERYTHING = {"occurred": {"since": "1990-01-01T00:00:00Z", "until": "2200-01-01T00:00:00Z"}}
WAIT = 30.0
"""Seconds to wait for a scheduled pass before giving up (generous: a loaded machine)."""

_next_id = iter(range(1, 1 << 60))


def events(count: int, start: datetime, span: timedelta = DAY) -> list[ReceivedEvent]:
    """``count`` events spread over ``[start, start + span)``, each with a new id."""
    step = span / count
    return [
        ReceivedEvent(
            occurred=start + i * step,
            event=f"acme.widget.{('made', 'shipped', 'lost')[i % 3]}",
            resource={"prefect.resource.id": f"acme.widget.{i % 50}", "colour": "red"},  # type: ignore[arg-type]
            related=[
                {"prefect.resource.id": f"acme.factory.{i % 3}", "prefect.resource.role": "factory"}
            ],  # type: ignore[list-item]
            payload={"n": i, "note": f"widget {i}"},
            id=uuid.UUID(int=next(_next_id) << 64 | i * 7919),
            received=start,
        )
        for i in range(count)
    ]


def write(store: EventStore, batch: list[ReceivedEvent], size: int = 1000) -> None:
    for start in range(0, len(batch), size):
        store.write_events(batch[start : start + size])


def ids(store: EventStore) -> set[str]:
    return {row[0] for row in store.fetchall("SELECT id::VARCHAR FROM events")}


def footprint(path: Path) -> int:
    """Bytes on disk: the events file and its write-ahead log."""
    wal = path.with_name(path.name + ".wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def test_a_pass_deletes_events_older_than_the_cutoff_and_keeps_the_rest(
    store: EventStore,
) -> None:
    """Events that occurred before the cutoff are gone, the others untouched."""
    old, new = events(300, START), events(200, START + 2 * DAY)
    write(store, old + new)

    deleted = delete_expired(store, START + 2 * DAY)

    assert deleted == 300
    assert ids(store) == {str(e.id) for e in new}
    assert delete_expired(store, START + 2 * DAY) == 0


def test_a_deleted_events_id_can_be_stored_again(store: EventStore) -> None:
    """Once retention has deleted an event, its id is new again: sent once more, it is
    stored (the ids kept in memory to check duplicates do not outlive the deletion)."""
    old, new = events(3, START), events(2, START + 2 * DAY)
    write(store, old + new)
    assert delete_expired(store, START + 2 * DAY) == 3

    again = msgspec.structs.replace(old[1], occurred=START + 3 * DAY)
    assert [e.id for e in store.write_events([again])] == [again.id]
    assert store.write_events([new[0], again]) == []
    assert ids(store) == {str(e.id) for e in [*new, again]}


def test_no_position_is_given_out_twice_after_the_newest_events_are_deleted(
    tmp_path: Path,
) -> None:
    """Retention that deletes every event, the newest included, does not let a reopened
    store number new events as it numbered the deleted ones: a subscriber resuming after
    a deleted event's position would skip them."""
    path = str(tmp_path / "events.duckdb")
    store = open_store(path)
    try:
        write(store, events(10, START))
        before = store.next_seq
        assert delete_expired(store, START + 2 * DAY) == 10
    finally:
        release(store)
    store = open_store(path)
    try:
        assert store.next_seq == before
    finally:
        release(store)


def test_an_id_re_sent_right_after_its_deletion_commits_is_new(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that comes the moment the deletion's transaction has committed, before
    anything else runs, already counts a deleted id as new: no commit can slip in between
    the deletion and the reset of the ids kept in memory."""
    old, new = events(3, START), events(2, START + 2 * DAY)
    write(store, old + new)
    again = msgspec.structs.replace(old[1], occurred=START + 3 * DAY)
    stored_at_once: list[list[uuid.UUID]] = []
    delete = store.label_sets.delete_events

    def delete_then_resend(*args: Any) -> int:
        deleted = delete(*args)  # committed
        stored_at_once.append([e.id for e in store.write_events([again])])
        return deleted

    monkeypatch.setattr(store.label_sets, "delete_events", delete_then_resend)
    assert delete_expired(store, START + 2 * DAY) == 3
    assert stored_at_once == [[again.id]]
    assert ids(store) == {str(e.id) for e in [*new, again]}


@pytest.mark.slow
def test_the_file_stays_bounded_over_repeated_ingest_and_retention_cycles(
    tmp_path: Path,
) -> None:
    """Sixteen days of ingest, two retained: the file and its log stay near their size
    after the first pass that deleted anything (without retention they grow ~3x here)."""
    path = tmp_path / "events.duckdb"
    store = open_store(str(path))
    sizes = []
    try:
        for day in range(16):
            write(store, events(10_000, START + day * DAY))
            delete_expired(store, START + (day - 1) * DAY)
            sizes.append(footprint(path))
        retained = store.fetchall(
            "SELECT count(*), min(occurred) >= ? FROM events", [START + 14 * DAY]
        )
    finally:
        release(store)

    assert retained == [(20_000, True)]
    assert max(sizes[3:]) <= 2 * sizes[2], [size // 1024 for size in sizes]


def test_ingest_goes_on_while_retention_passes_run(store: EventStore) -> None:
    """A writer thread stores every one of its batches, none failing, while passes delete
    old events (and checkpoint) again and again in another thread."""
    fresh = events(4000, START + 10 * DAY)
    failures: list[BaseException] = []
    done = threading.Event()

    def ingest() -> None:
        try:
            write(store, fresh, size=50)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    passes = 0
    while not done.is_set() or passes < 3:
        write(store, events(2000, START - 30 * DAY))
        assert delete_expired(store, START) == 2000
        passes += 1
    writer.join()

    assert failures == []
    assert ids(store) == {str(e.id) for e in fresh}


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_first_pass_after_reopening_a_queried_file_checkpoints(tmp_path: Path) -> None:
    """Reopening a file whose label sets are current (it was queried) and deleting at once,
    as a server's first pass does, checkpoints: the log is folded in. The store's opening
    read used to stay open, and DuckDB refused that checkpoint."""
    path = tmp_path / "events.duckdb"
    store = open_store(str(path))
    try:
        write(store, events(3000, START) + events(1000, START + 2 * DAY))
        with store.reading() as cursor:
            assert store.label_sets.catch_up(cursor, after=0)
    finally:
        release(store)
    store = open_store(str(path))
    try:
        assert delete_expired(store, START + 2 * DAY) == 3000
        assert wal_bytes(path) == 0
        assert len(ids(store)) == 1000
    finally:
        release(store)


def test_a_checkpoint_refused_for_an_open_read_is_retried_until_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pass that deletes while a read is open keeps its deletion and owes the checkpoint
    (DuckDB refuses it meanwhile); the worker retries it soon, not at the next pass, and
    it runs once the read has ended."""
    monkeypatch.setattr(_retention, "CHECKPOINT_RETRY", 0.05)
    path = tmp_path / "events.duckdb"
    store = open_store(str(path))
    worker = None
    try:
        write(store, events(3000, START))
        reader = store.cursor()  # this thread's: the worker reads on its own
        assert store.label_sets.catch_up(reader, after=0)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM events").fetchall() == [(3000,)]
        worker = start_retention(store, DAY, timedelta(hours=1))
        deadline = time.monotonic() + WAIT
        while not worker.checkpoint_owed and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # several retries, all refused while the read is open
        assert (worker.deleted, worker.checkpoint_owed) == (3000, True)
        assert wal_bytes(path) > 0
        reader.execute("COMMIT")
        while worker.checkpoint_owed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not worker.checkpoint_owed, "the checkpoint waited for the next pass"
        assert wal_bytes(path) == 0
        assert worker.passes == 1
        assert "waits for open transactions" in caplog.text
        assert caplog.text.count("waits for open transactions") == 1
    finally:
        if worker is not None:
            stop_retention(worker)
        release(store)


def test_apps_sharing_a_store_share_one_retention_worker(store: EventStore) -> None:
    """A second app on the same store gets the running worker; the last to leave stops it."""
    first = start_retention(store, DAY, timedelta(hours=1))
    second = start_retention(store, 2 * DAY, timedelta(hours=1))
    try:
        assert second is first
        assert second.period == DAY
    finally:
        stop_retention(second)
        stop_retention(first)
    third = start_retention(store, 2 * DAY, timedelta(hours=1))
    stop_retention(third)

    assert third is not first
    assert third.period == 2 * DAY


def test_the_retention_settings_are_read_and_checked() -> None:
    """The interval is read like any duration; a zero period or interval is refused."""
    settings = settings_from_environ(
        {
            "LOCALEVENTS_EVENTS_RETENTION_PERIOD": "30 days",
            "LOCALEVENTS_EVENTS_RETENTION_INTERVAL": "10 minutes",
        }
    )
    assert (settings.events_retention_period, settings.events_retention_interval) == (
        timedelta(days=30),
        timedelta(minutes=10),
    )
    assert settings_from_environ({}).events_retention_interval == timedelta(hours=1)
    with pytest.raises(ConfigurationError, match="RETENTION_PERIOD must be > 0"):
        settings_from_environ({"LOCALEVENTS_EVENTS_RETENTION_PERIOD": "0"})
    with pytest.raises(ConfigurationError, match="RETENTION_INTERVAL must be > 0"):
        settings_from_environ({"LOCALEVENTS_EVENTS_RETENTION_INTERVAL": "0 s"})


def preload(path: Path, batch: list[ReceivedEvent]) -> None:
    store = open_store(str(path))
    try:
        write(store, batch)
    finally:
        release(store)


async def test_an_app_without_a_retention_period_keeps_old_events(tmp_path: Path) -> None:
    """With no period set, events from long ago are still there after the app starts."""
    path = tmp_path / "events.duckdb"
    await anyio.to_thread.run_sync(preload, path, events(10, START - 400 * DAY))

    async with ephemeral(database=str(path)), get_client() as client:
        window = EventFilter(occurred=EventOccurredFilter(since=START - 500 * DAY, until=START))
        page = await client.read_events(window, limit=0)

    assert page.total == 10


async def test_an_in_process_app_with_a_period_deletes_expired_events(tmp_path: Path) -> None:
    """Ephemeral mode applies the period too: expired events go, recent ones stay."""
    path = tmp_path / "events.duckdb"
    recent = events(5, now_utc() - timedelta(hours=1), timedelta(minutes=30))
    await anyio.to_thread.run_sync(preload, path, events(10, START - 400 * DAY) + recent)
    window = EventFilter(
        occurred=EventOccurredFilter(since=START - 500 * DAY, until=now_utc() + DAY)
    )

    with temporary_settings(events_retention_period=30 * DAY):
        async with ephemeral(database=str(path)), get_client() as client:
            with anyio.fail_after(WAIT):
                while (page := await client.read_events(window, limit=50)).total != 5:  # noqa: ASYNC110 (a query)
                    await anyio.sleep(0.05)

    assert {e.id for e in page.events} == {e.id for e in recent}


@pytest.mark.slow
def test_a_server_deletes_expired_events_on_its_schedule_while_ingesting(
    tmp_path: Path,
) -> None:
    """A real server with a one-day period deletes old events at startup and on every
    interval after, while new events keep arriving and stay."""
    path = tmp_path / "events.duckdb"
    preload(path, events(100, now_utc() - 10 * DAY))
    env = {
        "LOCALEVENTS_EVENTS_RETENTION_PERIOD": "1 day",
        "LOCALEVENTS_EVENTS_RETENTION_INTERVAL": "0.2",
    }
    posted: list[ReceivedEvent] = []
    with serve(path, env=env) as server, httpx.Client(base_url=f"{server.url}/") as http:

        def count() -> int:
            body = {"filter": EVERYTHING, "limit": 0}
            return int(http.post("events/filter", json=body).json()["total"])

        def post(batch: list[ReceivedEvent]) -> None:
            content = msgspec.json.encode(batch)
            response = http.post("events", content=content)
            assert response.status_code == 204
            if batch[0].occurred > now_utc() - DAY:
                posted.extend(batch)

        give_up = time.monotonic() + WAIT
        while count() != 0:  # the pass at startup
            assert time.monotonic() < give_up, server.output()
            time.sleep(0.05)
        post(events(50, now_utc() - 5 * DAY))  # old again: a later pass must remove them
        while count() != len(posted) or not posted:
            assert time.monotonic() < give_up, server.output()
            post(events(20, now_utc() - timedelta(minutes=10), timedelta(minutes=1)))
            time.sleep(0.05)

    assert len(posted) >= 20


def test_a_started_worker_says_so_in_the_settings_spelling(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Starting retention logs one line with its period and interval as the settings spell
    them (nothing said it was on, and a pass's line read "older than 0:00:30")."""
    with caplog.at_level(logging.INFO, logger="localevents.storage"):
        worker = start_retention(store, timedelta(seconds=30), timedelta(hours=1))
        stop_retention(worker)
    assert "retention: deleting events that occurred over 30s ago, now and every 1h" in caplog.text
    assert [spoken_duration(timedelta(days=7)), spoken_duration(timedelta(minutes=90))] == [
        "7d",
        "90m",
    ]


def test_a_period_longer_than_the_calendar_keeps_everything(store: EventStore) -> None:
    """A period reaching back before year 1 (5,000 years) deletes nothing, rather than
    failing every pass with an OverflowError."""
    write(store, events(3, datetime(1, 1, 2, tzinfo=UTC)))
    worker = _retention.RetentionWorker(store, timedelta(days=5000 * 366), timedelta(hours=1))

    assert worker.run_once() == 0
    assert store.fetchall("SELECT count(*) FROM events") == [(3,)]


_EXIT_DURING_A_PASS = """
import sys, threading
from datetime import timedelta
from localevents.storage import _retention, open_store

passing = threading.Event()

def slow_delete(store, before):  # a pass still inside DuckDB when the program ends
    passing.set()
    with store.reading() as cursor:
        cursor.execute("SELECT count(*) FROM range(300000000) WHERE range % 7 = 3").fetchall()
    return 0

_retention._delete_before = slow_delete
store = open_store(sys.argv[1])
_retention.start_retention(store, timedelta(days=1), timedelta(hours=1))
passing.wait(30)
print("ending", flush=True)
"""


def test_a_program_ending_during_a_retention_pass_exits_cleanly(tmp_path: Path) -> None:
    """A program that ends, its store still open, while a retention pass runs in DuckDB
    exits with its own status once the pass is over (it aborted with exit 134: see
    ``storage._exit``)."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_DURING_A_PASS, str(tmp_path / "events.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.stdout == "ending\n"
    assert "FATAL" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
