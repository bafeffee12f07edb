"""A fatal error from DuckDB reopens the events file instead of breaking the store for good.

The one seen in use: a checkpoint that merges small row groups of large events (payloads of
a few hundred KB) needs them all in memory at once, and past the memory limit DuckDB
invalidates the database right after a durable commit. Before, every later statement
failed ("database has been invalidated") and a server answered 500 to everything until it
was restarted. Here the limits are scaled down (a 48 MB checkpoint threshold, a 96 MB memory
limit) so that about 800 events of 200 KB reach the failure.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from _stored import ids_in_file

from localevents import ReceivedEvent, ServiceUnavailable, StorageError
from localevents._settings import temporary_settings
from localevents.storage import _engine, open_store, release

if TYPE_CHECKING:
    from pathlib import Path

LIMIT = "96MB"
PAYLOAD_BYTES = 200_000  # incompressible, so the row groups hold it all
PER_BATCH = 10
MOST_BATCHES = 400  # about 80 reach the failure


@pytest.fixture(autouse=True)
def _small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "_CHECKPOINT_THRESHOLD", "48MB")


def large_events(batch: int) -> list[ReceivedEvent]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    return [
        ReceivedEvent(
            id=uuid.uuid4(),
            occurred=at,
            event="acme.report.uploaded",
            resource={"prefect.resource.id": f"acme.report.{batch}.{index}"},
            payload={"body": os.urandom(PAYLOAD_BYTES // 2).hex()},
            received=at,
        )
        for index in range(PER_BATCH)
    ]


def test_events_written_past_a_checkpoint_out_of_memory_are_all_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "large.duckdb"
    sent: set[uuid.UUID] = set()
    with temporary_settings(database_memory_limit=LIMIT):
        store = open_store(str(path))
        try:
            with caplog.at_level(logging.WARNING, logger="localevents.storage"):
                batch = 0
                while not store.reopened and batch < MOST_BATCHES:
                    events = large_events(batch)
                    assert len(store.write_events(events)) == PER_BATCH  # none refused
                    sent.update(event.id for event in events)
                    batch += 1
            assert store.reopened == 1  # the checkpoint failed, and the store went on
            # The reopened file takes writes, still deduplicates, and answers queries.
            small = ReceivedEvent(
                id=uuid.uuid4(),
                occurred=datetime.now(UTC),
                event="acme.done",
                resource={"prefect.resource.id": "acme.small"},
                received=datetime.now(UTC),
            )
            assert len(store.write_events([small])) == 1
            assert len(store.write_events([small])) == 0
            sent.add(small.id)
            rows = store.fetchall("SELECT event FROM events WHERE id = ?", [small.id])
            assert rows == [("acme.done",)]
        finally:
            release(store)
        assert ids_in_file(path) == {str(id_) for id_ in sent}  # every accepted event is there
    reopened = [r.getMessage() for r in caplog.records if "reopened" in r.getMessage()]
    assert len(reopened) == 1
    assert "Every event accepted so far is stored" in reopened[0]
    assert "LOCALEVENTS_DATABASE_MEMORY_LIMIT" in reopened[0]


def _invalidated() -> duckdb.FatalException:
    return duckdb.FatalException("FATAL Error: Failed: database has been invalidated")


def test_a_reopen_that_fails_is_tried_again_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be opened again at once (too many open files, say) answers 503
    "retry later", and the next write reopens it: the store does not stay broken."""
    connect = _engine._connect
    attempts: list[str] = []

    def failing_once(path: str, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        attempts.append(path)
        if len(attempts) == 1:
            raise StorageError("cannot open the events file: too many open files")
        return connect(path, *args, **kwargs)

    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        monkeypatch.setattr(_engine, "_connect", failing_once)
        with store._writer_turn(), pytest.raises(ServiceUnavailable, match="retry later"):
            store._reopen(_invalidated(), store._generation)
        assert len(store.write_events(large_events(0))) == PER_BATCH
        assert len(attempts) == 2
        assert store.fetchall("SELECT count(*) FROM events") == [(PER_BATCH,)]
    finally:
        release(store)


def test_an_in_memory_store_is_not_reopened_empty() -> None:
    """Reopening ':memory:' would give an empty database: the failure says the events are
    lost instead of pretending to recover."""
    store = open_store(":memory:")
    try:
        with store._writer_turn(), pytest.raises(StorageError, match="events are lost"):
            store._reopen(_invalidated(), store._generation)
    finally:
        release(store)
