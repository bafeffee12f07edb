"""An idle store gives DuckDB's cache of the events file back (``storage._memory``).

Each test opens its own copy of a real file of 30,000 events (written and closed once, so
they are checkpointed into table blocks), reads all of it, and watches DuckDB's own account
of its memory (``duckdb_memory()``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from localevents import ConfigurationError
from localevents._settings import parse_size, settings_from_environ, temporary_settings
from localevents.events._schemas import ReceivedEvent
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from localevents.storage import EventStore

T0 = datetime(2025, 3, 1, tzinfo=UTC)
IDLE_CACHE = 1_000_000
BLOCK = 256 * 1024  # DuckDB's block: what the cache may exceed the budget by
QUIET_S = 0.3  # the tests' idle time before a release (the statements after a scan come sooner)
SCAN = "SELECT count(*), sum(length(payload::VARCHAR)), max(resource::VARCHAR) FROM events"


def _events(count: int, start: int = 0) -> list[ReceivedEvent]:
    return [
        ReceivedEvent(
            occurred=T0 + timedelta(seconds=start + n),
            event="acme.thing.seen",
            resource={"prefect.resource.id": f"acme.thing.{n % 97}"},  # type: ignore[arg-type]
            payload={"note": uuid.uuid4().hex * 6},  # text that does not compress
            id=uuid.uuid4(),
            received=T0,
        )
        for n in range(count)
    ]


def _usage(store: EventStore) -> dict[str, int]:
    """DuckDB's memory by tag, and the bytes it spilled to temporary files (``spilled``)."""
    rows = store.fetchall(
        "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()"
    )
    usage = {tag: int(used) for tag, used, _ in rows}
    usage["spilled"] = sum(int(spilled) for _, _, spilled in rows)
    return usage


def _eventually(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def written_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed events file of 30,000 events, written once: each test opens its own copy."""
    path = tmp_path_factory.mktemp("written") / "events.duckdb"
    with temporary_settings(database_idle_cache=IDLE_CACHE, database_memory_limit="256MB"):
        written = open_store(str(path))
        for start in range(0, 30_000, 5_000):
            written.write_events(_events(5_000, start))
        release(written)  # closing checkpoints: the events are now blocks of the file
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no WAL left to copy
    return path


def _copy(written_file: Path, tmp_path: Path) -> str:
    """This test's own copy of :func:`written_file`."""
    path = tmp_path / "events.duckdb"
    shutil.copyfile(written_file, path)
    return str(path)


@pytest.fixture
def store(written_file: Path, tmp_path: Path) -> Iterator[EventStore]:
    path = _copy(written_file, tmp_path)
    with temporary_settings(database_idle_cache=IDLE_CACHE, database_memory_limit="256MB"):
        opened = open_store(path)
        opened.cache.after_s = QUIET_S
        try:
            yield opened
        finally:
            release(opened)


def test_an_idle_store_keeps_no_more_of_the_file_cached_than_the_idle_budget(
    store: EventStore,
) -> None:
    answer = store.fetchall(SCAN)
    cached = _usage(store)["BASE_TABLE"]
    assert cached > 4 * IDLE_CACHE  # the scan filled DuckDB's cache with the file's blocks

    assert _eventually(lambda: store.cache.releases == 1)
    assert _usage(store)["BASE_TABLE"] <= IDLE_CACHE + 2 * BLOCK
    limit = store.fetchall("SELECT current_setting('memory_limit')")[0][0]
    assert limit.startswith("244.1")  # 256 MB restored (as DuckDB spells it, in MiB)
    assert store.fetchall(SCAN) == answer


def test_rows_not_yet_checkpointed_stay_in_memory_and_nothing_spills(store: EventStore) -> None:
    store.write_events(_events(5_000, 30_000))  # committed, in the WAL, held in memory
    store.fetchall(SCAN)
    before = _usage(store)
    assert before["IN_MEMORY_TABLE"] > 0
    assert before["BASE_TABLE"] > 4 * IDLE_CACHE

    released = store.cache.releases  # the write may have had a look of its own
    assert _eventually(lambda: store.cache.releases > released)
    after = _usage(store)
    assert after["BASE_TABLE"] <= IDLE_CACHE + 2 * BLOCK
    assert after["IN_MEMORY_TABLE"] == before["IN_MEMORY_TABLE"]
    assert after["spilled"] == 0
    assert store.fetchall("SELECT count(*) FROM events") == [(35_000,)]


def test_no_release_while_work_runs(store: EventStore) -> None:
    store.fetchall(SCAN)
    with store.reading():  # e.g. an export between two of its queries
        time.sleep(3 * store.cache.after_s)
        assert store.cache.releases == 0
        assert _usage(store)["BASE_TABLE"] > 4 * IDLE_CACHE
    assert _eventually(lambda: store.cache.releases == 1)


def test_queries_and_writes_racing_releases_all_succeed(store: EventStore) -> None:
    """Rounds of three queries and a write at once, each round starting as the release
    that the quiet before it let start may still run: every query and write succeeds."""
    store.cache.after_s = 0.0  # release as soon as the store is quiet
    answer = store.fetchall(SCAN)
    errors: list[BaseException] = []
    counts: list[int] = []
    rounds = 8
    start = threading.Barrier(4)

    def query() -> None:
        for _ in range(rounds):
            start.wait(timeout=30)
            try:
                counts.append(store.fetchall(SCAN)[0][0])
            except BaseException as exc:  # reported below
                errors.append(exc)

    def write() -> None:
        for n in range(rounds):
            start.wait(timeout=30)
            try:
                store.write_events(_events(200, 40_000 + 200 * n))
            except BaseException as exc:  # reported below
                errors.append(exc)
            time.sleep(0.2)  # a quiet spell: the release thread looks at least once

    threads = [threading.Thread(target=query) for _ in range(3)] + [threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.cache.releases >= rounds // 2
    # every scan counted the 30,000 checkpointed events, plus some of the 1,600 written
    assert len(counts) == 3 * rounds
    assert all(answer[0][0] <= n <= answer[0][0] + 200 * rounds for n in counts)
    assert store.fetchall("SELECT count(*) FROM events") == [(30_000 + 200 * rounds,)]


def test_with_no_idle_cache_the_unsaved_rows_still_stay_in_memory(
    written_file: Path, tmp_path: Path
) -> None:
    """A budget of 0 keeps a block of slack: releasing every cached block of the file
    must not push committed rows that are not checkpointed yet out to a temporary file."""
    path = _copy(written_file, tmp_path)
    with temporary_settings(database_idle_cache=0):
        store = open_store(path)
        try:
            store.cache.after_s = QUIET_S
            store.write_events(_events(5_000, 30_000))
            answer = store.fetchall(SCAN)
            before = _usage(store)
            released = store.cache.releases  # the write may have had a look of its own
            assert _eventually(lambda: store.cache.releases > released)
            after = _usage(store)
            assert after["BASE_TABLE"] < before["BASE_TABLE"]
            assert after["IN_MEMORY_TABLE"] == before["IN_MEMORY_TABLE"]
            assert after["spilled"] == 0
            assert store.fetchall(SCAN) == answer
        finally:
            release(store)


def test_a_memory_store_has_nothing_to_give_back() -> None:
    """A ``:memory:`` store's events are all in memory: no release ever evicts them."""
    with temporary_settings(database_idle_cache=0):
        store = open_store(":memory:")
        try:
            store.cache.after_s = 0.0
            store.write_events(_events(5_000))
            answer = store.fetchall(SCAN)
            time.sleep(0.3)  # several chances to release
            assert store.cache.releases == 0
            assert _usage(store)["spilled"] == 0
            assert store.fetchall(SCAN) == answer
        finally:
            release(store)


def test_the_idle_cache_setting_reads_sizes_as_duckdb_does() -> None:
    assert parse_size("32MB") == 32_000_000
    assert parse_size("1.5 GiB") == 1.5 * 2**30
    assert parse_size("4096") == 4096
    environ = {"LOCALEVENTS_DATABASE_IDLE_CACHE": "64MiB"}
    assert settings_from_environ(environ).database_idle_cache == 64 * 2**20
    with pytest.raises(ConfigurationError, match="'lots' as a size"):
        settings_from_environ({"LOCALEVENTS_DATABASE_IDLE_CACHE": "lots"})


def test_a_store_written_without_a_pause_gives_back_what_its_checkpoints_cached(
    tmp_path: Path,
) -> None:
    """The blocks a checkpoint writes stay in DuckDB's cache, and no read asks for them: a
    store that takes writes back to back, never idle, still releases them between two."""
    with temporary_settings(database_idle_cache=IDLE_CACHE):
        store = open_store(str(tmp_path / "events.duckdb"))
        try:
            store.cache.after_s = QUIET_S
            probe = store.cursor()  # outside the store's accounting: no read is counted
            probe.execute("SET checkpoint_threshold = '1MB'")  # a checkpoint every few batches

            def cached() -> int:
                found = probe.execute(
                    "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
                ).fetchone()
                return int(found[0]) if found else 0

            seen: list[int] = []
            written = 0
            deadline = time.monotonic() + 10 * QUIET_S
            while time.monotonic() < deadline:
                store.write_events(_events(1_000, written))
                written += 1_000
                seen.append(cached())
            assert store.cache.releases >= 3
            # right after a release, before the next checkpoint fills it again
            assert min(seen[len(seen) // 2 :]) <= IDLE_CACHE + 4 * BLOCK
        finally:
            release(store)


def test_a_look_that_fails_fails_no_write_and_looks_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look may run in the thread of a commit that succeeded: its failure is logged,
    not raised into the commit (whose events are stored), and later looks still run."""
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        store.cache.after_s = QUIET_S / 3
        looks: list[str] = []

        def failing() -> None:
            looks.append(threading.current_thread().name)
            raise RuntimeError("the look failed")

        monkeypatch.setattr(store.cache, "_release", failing)
        written = 0
        deadline = time.monotonic() + 10 * store.cache.after_s
        while time.monotonic() < deadline:  # back to back: some looks run in this thread
            assert len(store.write_events(_events(200, written))) == 200
            written += 200
        assert len(looks) >= 3, looks
        assert store.fetchall("SELECT count(*) FROM events") == [(written,)]
    finally:
        release(store)


def test_commits_that_look_ids_up_in_the_file_keep_the_cache(store: EventStore) -> None:
    """Random (v4) ids lie below the newest stored one, so each commit reads the id column
    for them: back-to-back commits like that count as reads, and keep the cache."""
    store.fetchall(SCAN)
    assert _usage(store)["BASE_TABLE"] > 4 * IDLE_CACHE
    released = store.cache.releases
    written = 0
    deadline = time.monotonic() + 6 * QUIET_S
    while time.monotonic() < deadline:
        assert len(store.write_events(_events(200, 50_000 + written))) == 200
        written += 200
    assert store.cache.releases == released
    assert _eventually(lambda: store.cache.releases > released)  # once the commits stop


_EXIT_DURING_A_RELEASE = """
import sys, threading
from localevents.storage import _memory, open_store
from tests.test_store_cache import _events

releasing = threading.Event()
release = _memory.CacheRelease._release

def slow_release(self):  # a release that is still inside DuckDB when the program ends
    releasing.set()
    self._con.execute("SELECT count(*) FROM range(300000000) WHERE range % 7 = 3").fetchall()
    release(self)

_memory.CacheRelease._release = slow_release
store = open_store(sys.argv[1])
store.write_events(_events(100))  # the first work: the release thread looks at once
releasing.wait(30)
print("ending", flush=True)
"""


def test_a_program_ending_during_a_release_exits_cleanly(tmp_path: Path) -> None:
    """A program that ends, its store still open, while the release thread is inside DuckDB
    exits with its own status: Python used to end that daemon thread in the middle of
    DuckDB's C++, and the process aborted (exit 134, "FATAL: exception not rethrown")."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_DURING_A_RELEASE, str(tmp_path / "events.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
        check=False,
    )

    assert done.stdout == "ending\n"
    assert "FATAL" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
