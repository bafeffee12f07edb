"""The store's write path: exact dedupe for any id, shared commits under concurrency."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import msgspec
import pytest

from localevents import InvalidEventError, ReceivedEvent, ServiceUnavailable, uuid7
from localevents.events._time import from_epoch_us
from localevents.storage import open_store, release
from localevents.storage._engine import COMMIT_BYTES
from localevents.storage._rows import EncodedEvents

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localevents.storage import EventStore

START = datetime(2026, 3, 1, tzinfo=UTC)


def event(id_: uuid.UUID, name: str = "acme.made", minute: int = 0) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=START + timedelta(minutes=minute),
        event=name,
        resource={"prefect.resource.id": "acme.widget.1"},  # type: ignore[arg-type]
        id=id_,
    )


def stored(store: EventStore) -> list[tuple[str, str]]:
    rows = store.fetchall("SELECT id::VARCHAR, event FROM events ORDER BY id")
    return [(str(i), str(e)) for i, e in rows]


def test_an_old_id_is_recognised_below_the_newest_stored_id(store: EventStore) -> None:
    """A repeated id older than everything stored is still found and ignored (D2)."""
    old, newer = uuid.UUID(int=1 << 100), uuid7()
    assert store.write_events([event(old, "first"), event(newer)])
    assert store.write_events([event(old, "second")]) == []
    fresh_old = uuid.UUID(int=2 << 100)
    assert [e.id for e in store.write_events([event(fresh_old)])] == [fresh_old]
    assert sorted(stored(store)) == sorted(
        [(str(old), "first"), (str(newer), "acme.made"), (str(fresh_old), "acme.made")]
    )


def test_ids_interleaving_with_stored_ones_are_checked_without_reading_the_file(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two producers whose clocks differ interleave their ids. Ids below the newest one
    stored, but stored since the store opened, are checked in memory: new ones are stored
    and repeats ignored, and the file is never searched for them."""
    lookups: list[int] = []
    search = store._stored_ids
    monkeypatch.setattr(store, "_stored_ids", lambda ids: lookups.append(len(ids)) or search(ids))
    ahead = [uuid.UUID(int=(5 << 100) + i) for i in range(3)]
    behind = [uuid.UUID(int=(4 << 100) + i) for i in range(3)]
    store.write_events([event(i, "ahead") for i in ahead])

    written = store.write_events([event(i, "behind") for i in behind])
    repeated = store.write_events([event(ahead[1], "again"), event(behind[0], "again")])

    assert [e.id for e in written] == behind
    assert repeated == []
    assert lookups == []
    assert {name for _, name in stored(store)} == {"ahead", "behind"}


def test_dedupe_holds_across_reopening(tmp_path: Path) -> None:
    """Ids written before the file was closed are still ignored after it is reopened."""
    path = str(tmp_path / "events.duckdb")
    ids = [uuid7() for _ in range(5)]
    first = open_store(path)
    first.write_events([event(i, "first") for i in ids])
    release(first)
    second = open_store(path)
    try:
        assert second.write_events([event(i, "again") for i in reversed(ids)]) == []
        assert {name for _, name in stored(second)} == {"first"}
    finally:
        release(second)


def test_reopening_finds_the_newest_id_wherever_it_was_written(tmp_path: Path) -> None:
    """The largest id, stored long before the newest rows, is still known after reopening:
    writing it again stores nothing."""
    path = str(tmp_path / "events.duckdb")
    largest = uuid.UUID(int=(1 << 128) - 1)
    first = open_store(path)
    first.write_events([event(largest, "first")])
    first.write_events([event(uuid7(), "later", minute=1) for _ in range(5000)])
    release(first)
    second = open_store(path)
    try:
        assert second.write_events([event(largest, "again")]) == []
        assert stored(second)[-1] == (str(largest), "first")
    finally:
        release(second)


def test_concurrent_writers_each_get_their_own_events_back(store: EventStore) -> None:
    """Eight threads writing at once: every event stored once, each caller told its own."""
    batches = [[event(uuid7(), f"t{t}", m) for m in range(50)] for t in range(8)]
    shared = event(uuid7(), "shared")
    results: dict[int, list[ReceivedEvent]] = {}

    def write(t: int) -> None:
        results[t] = store.write_events([*batches[t], shared])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in range(8):
        assert [e.id for e in results[t] if e.id != shared.id] == [e.id for e in batches[t]]
    assert sum(shared in results[t] for t in range(8)) == 1
    assert len(stored(store)) == 8 * 50 + 1


@pytest.mark.parametrize("where", ["taking the lead", "committing"])
def test_an_interrupt_while_leading_a_commit_leaves_the_store_writable(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C (KeyboardInterrupt) that lands while a write leads a commit, as it takes the
    batches or while it commits them, leaves the writer free: the next write is stored and
    the store closes (it stayed marked busy, and closing it waited for ever)."""
    method = "_next_commit" if where == "taking the lead" else "_insert_new"
    real = getattr(type(store), method)
    interrupted = []

    def interrupting(self: EventStore, *args: object) -> object:
        if not interrupted:
            interrupted.append(method)
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(type(store), method, interrupting)
    with pytest.raises(KeyboardInterrupt):
        store.write_events([event(uuid7(), "cut")])
    after = event(uuid7(), "after")
    done = threading.Event()

    def write_then_wait_for_writes() -> None:
        store.write_events([after])
        store.wait_for_writes()
        done.set()

    threading.Thread(target=write_then_wait_for_writes, daemon=True).start()
    assert done.wait(30), "the writer stayed busy after the interrupt"
    assert (str(after.id), "after") in stored(store)


def test_duplicates_inside_a_batch_keep_the_first(store: EventStore) -> None:
    """Within one batch, the first event with an id wins."""
    same = uuid7()
    new = store.write_events([event(same, "first"), event(same, "second")])
    assert [e.event for e in new] == ["first"]
    assert stored(store) == [(str(same), "first")]


def test_a_small_batch_after_a_large_one_stores_only_its_own_events(store: EventStore) -> None:
    """Each commit stores exactly its batch, whatever size the batch before it had."""
    large = [event(uuid7(), "large", m) for m in range(50)]
    small = [event(uuid7(), "small")]
    store.write_events(large)
    assert store.write_events(small) == small
    assert sorted(name for _, name in stored(store)) == ["large"] * 50 + ["small"]


def test_instants_are_stored_in_utc_whatever_their_offset(store: EventStore) -> None:
    """An event written with a +05:30 offset reads back as the same instant, in UTC."""
    offset = timezone(timedelta(hours=5, minutes=30))
    written = event(uuid7())
    written = msgspec.structs.replace(written, occurred=written.occurred.astimezone(offset))
    store.write_events([written])
    [(occurred,)] = store.fetchall("SELECT epoch_us(occurred) FROM events")
    assert from_epoch_us(occurred) == written.occurred == START


def test_a_closed_store_refuses_writes(tmp_path: Path) -> None:
    """Writing to a store after its last release is a clear error, not a crash."""
    opened = open_store(str(tmp_path / "events.duckdb"))
    release(opened)
    with pytest.raises(ServiceUnavailable, match="is closed"):
        opened.write_events([event(uuid7())])


@contextlib.contextmanager
def _first_commit_held(
    store: EventStore, writers: list[threading.Thread]
) -> Iterator[list[list[str]]]:
    """A write (an event named "first") whose commit is held in a commit listener for the
    block, so that ``writers`` started in it queue behind (they are joined when it ends);
    yields the event names of each commit, in order, as they happen."""
    entered, gate = threading.Event(), threading.Event()
    commits: list[list[str]] = []

    def hold_the_first_commit(stored_batches: list[EncodedEvents]) -> None:
        commits.append([e.event for batch in stored_batches for e in batch.events])
        if not entered.is_set():  # runs before the writer lets go
            entered.set()
            gate.wait(10)

    store.add_commit_listener(hold_the_first_commit)
    first = threading.Thread(target=store.write_events, args=([event(uuid7(), "first")],))
    first.start()
    try:
        assert entered.wait(10)
        yield commits
    finally:
        gate.set()
        for thread in (first, *writers):
            thread.join()
        store.remove_commit_listener(hold_the_first_commit)


def _wait_until_queued(store: EventStore, count: int) -> None:
    deadline = time.monotonic() + 10
    while store.pending_batches < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_queued_preparations_run_in_the_committing_thread_and_fail_alone(
    store: EventStore,
) -> None:
    """Batches given as preparations while a commit runs are prepared by the thread that
    leads the next commit, one after another; one whose preparation raises gets its own
    error back, and the others of that commit are stored."""
    prepared_in: dict[str, int] = {}
    good = [event(uuid7(), "good", m) for m in range(3)]

    def prepare(name: str) -> EncodedEvents:
        prepared_in[name] = threading.get_ident()
        if name == "bad":
            raise InvalidEventError("Invalid event at index 0: made up")
        return EncodedEvents.of(good)

    outcomes: dict[str, object] = {}

    def write(name: str) -> None:
        try:
            outcomes[name] = [e.id for e in store.write_prepared(lambda: prepare(name), 100).events]
        except InvalidEventError as exc:
            outcomes[name] = str(exc)

    waiting = [threading.Thread(target=write, args=(name,)) for name in ("bad", "good")]
    with _first_commit_held(store, waiting):
        for thread in waiting:
            thread.start()
        _wait_until_queued(store, 2)
        assert prepared_in == {}  # nothing is prepared while a commit runs
    assert outcomes == {"bad": "Invalid event at index 0: made up", "good": [e.id for e in good]}
    assert prepared_in["bad"] == prepared_in["good"]  # one thread prepared both
    assert sorted(name for _, name in stored(store)) == ["first", "good", "good", "good"]


def test_batches_queued_behind_a_commit_are_committed_oldest_first_up_to_a_size(
    store: EventStore,
) -> None:
    """Batches queued while a commit runs go into the next commits oldest first, as many
    as fit in COMMIT_BYTES of JSON (a larger one alone): large requests queued together
    are decoded and loaded one commit at a time, not all at once."""
    sizes = {"a": COMMIT_BYTES * 2 // 3, "b": COMMIT_BYTES * 2 // 3, "c": 1000, "d": COMMIT_BYTES}

    def write(name: str) -> None:
        batch = EncodedEvents.of([event(uuid7(), name)])
        store.write_prepared(lambda: batch, sizes[name])

    waiting: list[threading.Thread] = []
    with _first_commit_held(store, waiting) as commits:
        for name in sizes:  # queued in this order
            waiting.append(threading.Thread(target=write, args=(name,)))
            waiting[-1].start()
            _wait_until_queued(store, len(waiting))
    assert commits == [["first"], ["a"], ["b", "c"], ["d"]]
    assert sorted(name for _, name in stored(store)) == ["a", "b", "c", "d", "first"]


FREED_AT_EXIT = """
import sys, threading
from localevents.storage import open_store, release

stores = []
for _ in range(80):
    store = open_store(sys.argv[1])
    release(store)  # closed, as an app's lifespan leaves its store
    stores.append(store)
started = threading.Event()

def drop_them():  # a daemon thread, as anyio's worker threads are
    global stores
    held, stores = stores, None
    started.set()
    while held:
        held.pop()

threading.Thread(target=drop_them, daemon=True).start()
started.wait()  # and the interpreter exits while the thread frees them
"""


@pytest.mark.slow
def test_closed_stores_freed_by_a_daemon_thread_at_exit_do_not_abort_the_process(
    tmp_path: Path,
) -> None:
    """The last reference to a store is often dropped by the worker thread that released it,
    after it handed back its result: freeing DuckDB's connections there while the
    interpreter finalized aborted the process ("FATAL: exception not rethrown", exit 134),
    about one run in a hundred of a script that emits and exits. A closed store holds none."""
    done = subprocess.run(
        [sys.executable, "-c", FREED_AT_EXIT, str(tmp_path / "events.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_cursors_of_threads_that_ended_are_closed(tmp_path: Path) -> None:
    """Each reading thread gets a cursor; once its thread has ended, the next new reader
    closes it. Worker threads come and go, and a server kept a cursor (about 18 KB) for
    every one that had ever read: the count only grew."""
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        for _ in range(30):  # one short-lived reader after another, as retired workers
            reader = threading.Thread(target=store.fetchall, args=("SELECT 1",))
            reader.start()
            reader.join()
        assert store.open_cursors <= 2  # the last reader's, and perhaps the one before
        alive = threading.Event()
        done = threading.Event()
        answers: list[object] = []

        def read_and_stay() -> None:
            store.fetchall("SELECT 1")
            alive.set()
            done.wait()
            # its cursor still works: only ended threads lose theirs
            answers.append(store.fetchall("SELECT 2"))

        staying = threading.Thread(target=read_and_stay)
        staying.start()
        alive.wait()
        for _ in range(5):
            reader = threading.Thread(target=store.fetchall, args=("SELECT 1",))
            reader.start()
            reader.join()
        done.set()
        staying.join()
        assert answers == [[(2,)]]
        assert store.open_cursors <= 3
    finally:
        release(store)
