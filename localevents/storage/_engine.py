"""The event store: one DuckDB file per process, one writer at a time, readers in parallel.

DuckDB caches one database instance per path and refuses a second process, so a store is
process-wide: :func:`open_store` hands out the same :class:`EventStore` for a path to every
caller (each app lifespan, any thread) and closes it when the last one releases it.

Writes are group-committed. A caller queues its batch; if no commit is running it leads one,
taking every batch queued so far into one transaction, else it waits. When a commit ends,
the callers it served return and the next waiting caller leads the batches that queued up
meanwhile. One fsync then covers many concurrent requests, and each caller returns only
after its events are durable (D1). Reads use one DuckDB cursor per thread.

A commit hands DuckDB its batches as one file of JSON lines (see ``_rows``, ``_batch_file``),
and checks ids exactly (D2) at almost no cost in the usual case: see :meth:`_new_events`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

import duckdb

from localevents._exceptions import (
    ConfigurationError,
    DatabaseInUseError,
    LocalEventsError,
    ServiceUnavailable,
    StorageError,
)
from localevents._settings import get_settings
from localevents.storage._batch_file import BatchFile
from localevents.storage._fatal import cause, checkpoint_failed, durable, no_merging
from localevents.storage._label_sets import LabelSets
from localevents.storage._memory import CacheRelease
from localevents.storage._reads import Reads
from localevents.storage._recent_ids import RecentIds
from localevents.storage._rows import EncodedEvents, insert_lines_sql
from localevents.storage._schema import NEXT_SEQ_KEY, ensure_schema, write_meta
from localevents.storage._sql import sql_string
from localevents.storage._utf8_paths import utf8_path
from localevents.storage._write_memory import WriteMemory, ran_out_of_memory, too_little_to_open

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from localevents.events._schemas import ReceivedEvent
    from localevents.storage._rows import Row

    CommitListener = Callable[[list[EncodedEvents]], None]

__all__ = ("COMMIT_BYTES", "EventStore", "open_store", "open_stores", "release")

logger = logging.getLogger("localevents.storage")

_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")
_CHECKPOINT_THRESHOLD = "64MB"
_CLOSE_WAIT_S = 10.0
"""How long closing the store waits for the reads it interrupted to end (milliseconds, as
a rule: DuckDB stops at its next task)."""
COMMIT_BYTES = 16 * 1024 * 1024
"""How many bytes of JSON a commit takes from the batches queued (a larger batch goes
alone). A batch costs about seven times its JSON in memory while it is decoded and loaded:
four 60 MB requests queued at once, committed together, took a server to 1.4 GB."""
_INSERT_LINES = "localevents_insert_lines"  # the prepared INSERT (see EventStore._prepare_insert)


class _Batch:
    """One caller's events waiting for a commit (or what makes them: ``prepare``)."""

    __slots__ = ("done", "error", "events", "inserted", "new", "prepare", "size", "unprepared")

    def __init__(
        self,
        events: EncodedEvents,
        prepare: Callable[[], EncodedEvents] | None = None,
        size: int | None = None,
    ) -> None:
        self.events = events
        self.prepare = prepare
        self.size = len(events.lines) if size is None else size
        """Bytes of JSON (of its lines, or of what ``prepare`` decodes), for
        :data:`COMMIT_BYTES`."""
        self.done = False
        self.new: Sequence[int] = ()  # the indexes of the events that the commit stored
        self.inserted = _NOTHING  # those events
        self.error: BaseException | None = None
        self.unprepared: Exception | None = None  # what ``prepare`` raised

    def prepared(self) -> bool:
        """Run ``prepare`` if there is one; ``False`` when it raised (kept in ``unprepared``)."""
        if self.prepare is not None:
            try:
                self.events = self.prepare()
            except Exception as exc:  # the caller's to raise; the other batches go on
                self.unprepared = exc
                return False
            finally:
                self.prepare = None
        return True

    def store(self, new: Sequence[int]) -> None:
        """Note that the events at ``new`` are to be stored."""
        self.new = new
        self.inserted = self.events.select(new)


_NOTHING = EncodedEvents([], b"")


def _first_unseen(ids: list[int], seen: set[int]) -> list[int]:
    """The indexes of the ids not in ``seen``, each counted once; adds them to ``seen``."""
    unseen = []
    for index, id_ in enumerate(ids):
        if id_ not in seen:
            seen.add(id_)
            unseen.append(index)
    return unseen


def _connect(
    path: str, limit: str, threads: int | None = None, *, merge: bool = True
) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            match = _LOCK_HOLDER.search(str(exc))
            raise DatabaseInUseError(path, int(match[1]) if match else None) from exc
        raise StorageError(f"cannot open the events file {path}: {exc}") from exc
    if path != ":memory:" and _in_memory(con):
        con.close()
        raise StorageError(
            f"{path} is not a DuckDB events file: DuckDB reads it as data (JSON, CSV or "
            "Parquet), and whatever was stored would be lost on close. Choose a file that "
            "does not exist yet (e.g. ending in .duckdb) or an events file"
        )
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        # DuckDB's default is a thread per core. Those threads share the cores with this
        # process's Python, and a statement takes the GIL back between its tasks: on 2
        # cores, one thread made a 1000-event commit about 10% faster (see the README).
        con.execute(f"SET threads = {int(threads)}")
    # DuckDB draws a progress bar on stdout during statements over ~2 s (an upgrade, a
    # catch-up of a big file): it would land in the server's log and the caller's output.
    # Inside Jupyter without ipywidgets DuckDB refuses to change the setting at all (and
    # draws no bar there).
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    # DuckDB folds the WAL into the file every 16 MB by default; each fold rewrites the
    # newest row groups and stalls commits. At 64 MB, measured over 300k events here,
    # ingest ran about 1.5x faster and the worst commit stall fell from ~0.9 s to ~0.15 s,
    # at the cost of a longer WAL replay after a crash (about a second).
    con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")
    if not merge:  # see EventStore._reopen
        con.execute("SET max_vacuum_tasks = 0")
    # DuckDB's default memory limit is 80% of RAM, and its buffer pool keeps what it read up
    # to it: a server that had queried 10M events sat near 1 GB. Past the limit, DuckDB
    # evicts cached blocks and spills large sorts and aggregates to disk.
    try:
        con.execute(f"SET memory_limit = {sql_string(limit)}")
    except duckdb.Error as exc:
        con.close()
        raise ConfigurationError(
            f"LOCALEVENTS_DATABASE_MEMORY_LIMIT={limit!r} is not a memory size DuckDB "
            f"accepts (use e.g. '256MB' or '1GB'): {exc}"
        ) from exc
    return con


def _in_memory(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s database lives in memory only: DuckDB 2.0 opens an existing JSON,
    CSV or Parquet file given as a database that way, and its tables vanish on close."""
    found = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return not found or found[0][0] is None


_RECENT_ROWS = 2048


def _newest_stored_id(con: duckdb.DuckDBPyConnection) -> int:
    """The largest stored id as an integer (-1 when none is stored).

    A plain ``max(id)`` reads the whole id column: on a 10M-event file it took ~0.36 s
    from a cold cache and left ~120 MB of it in DuckDB's buffers. Instead, the newest rows
    propose a candidate (the last ``_RECENT_ROWS`` rowids, more where rows were deleted)
    and only the row groups whose statistics allow a larger id are read; with time-ordered
    ids, that is none of them. The answer is exact whatever the ids.
    """
    recent = con.execute(
        "SELECT max(id) FROM events WHERE rowid >= (SELECT count(*) FROM events) - ?",
        [_RECENT_ROWS],
    ).fetchall()[0][0]
    if recent is None:
        newest = con.execute("SELECT max(id) FROM events").fetchall()[0][0]
    else:
        larger = con.execute("SELECT max(id) FROM events WHERE id > ?", [recent]).fetchall()
        newest = larger[0][0] or recent
    return -1 if newest is None else int(newest.int)


class EventStore:
    """An open events file. Obtain one with :func:`open_store`; every method is blocking
    and thread-safe (async callers run them in worker threads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        settings = get_settings()
        self._memory_limit = settings.database_memory_limit
        self._threads = settings.database_threads
        self._con = _connect(path, self._memory_limit, self._threads)
        try:
            self._write_memory = WriteMemory(self._con, self._memory_limit)
            self.secret = ensure_schema(self._con)
        except BaseException as exc:
            self._con.close()
            if ran_out_of_memory(exc):
                raise too_little_to_open(self._memory_limit) from exc
            raise
        self.stream_id = hashlib.sha256(b"localevents stream\0" + self.secret).hexdigest()[:16]
        """Names this file's order of events (``seq``) to subscribers without giving away
        the secret, so that a position in another file is recognised as foreign."""
        self.label_sets = LabelSets(self._con)
        """The label sets of primary and related resources, for filters (see ``_label_sets``)."""
        self._cursor_source = self._con.cursor()
        self.cache = CacheRelease(
            self._con.cursor(), settings.database_memory_limit, settings.database_idle_cache
        )
        """Releases DuckDB's cache of the file when the store is idle (see ``_memory``)."""
        self._cursor_lock = threading.Lock()
        self._cursors: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []
        self._local = threading.local()
        self._reads = Reads(self._closed_error, self._reopened_error)
        self._generation = 0  # how many times the file was reopened (see _reopen)
        self._merging = True  # checkpoints merge small row groups (see _reopen)
        self._reopening = False  # a reopen runs: reads waiting for a write turn give up
        self._needs_reopen = False  # a reopen failed: the next read or write tries again
        self._batch_file = BatchFile()  # how a commit hands DuckDB its batch
        self._prepare_insert()
        self._recent = RecentIds(_newest_stored_id(self._con))  # ids as integers
        self._next_seq = self.label_sets.next_seq(self._con)
        self._writer = threading.Condition()
        self._writing = False
        self._turns_done = 0  # commits and deletions finished (see wait_for_writes)
        self._queue: list[_Batch] = []
        self._listeners: list[CommitListener] = []
        self._users = 0
        self.reopened = 0
        """How many times the file was reopened after a fatal error (see :meth:`_reopen`)."""
        self._parent: int | None = None  # in a forked child: the PID that opened the file
        self.closed = False

    # -- reading -------------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's read cursor (created on first use, closed with the store or once
        its thread has ended).

        Worker threads come and go (anyio retires one idle for 10 s), so a server made a
        cursor for good every time a new one read: about 18 KB each, a few MB a day under
        bursty traffic. Making a cursor closes those of threads that have ended."""
        if self.closed:
            raise self._closed_error()
        local = self._local
        cursor: duckdb.DuckDBPyConnection | None = getattr(local, "cursor", None)
        if cursor is None or local.generation != self._generation:
            with self._cursor_lock:  # held while the file reopens
                if self.closed:
                    raise self._closed_error()
                self._close_cursors_of_ended_threads()
                cursor = self._cursor_source.cursor()
                self._cursors.append((threading.current_thread(), cursor))
                local.generation = self._generation
            cursor.execute("SET TimeZone = 'UTC'")
            local.cursor = cursor
        return cursor

    def _close_cursors_of_ended_threads(self) -> None:
        """Close the cursors whose thread has ended (nothing else holds them: a thread's
        cursor is in its thread-local storage alone). Called with the cursor lock held."""
        ended = [cursor for thread, cursor in self._cursors if not thread.is_alive()]
        if ended:
            self._cursors = [(t, c) for t, c in self._cursors if t.is_alive()]
            for cursor in ended:
                cursor.close()

    @property
    def open_cursors(self) -> int:
        """Read cursors open now, one per thread that has read and may read again."""
        with self._cursor_lock:
            return len(self._cursors)

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's read cursor, for DuckDB work done in the block (the store's cache
        is not released meanwhile: see ``_memory``). The block's work stops with
        :class:`QueryTimeout` past the deadline of an enclosing :meth:`time_limit`, with
        the store's closed error when it closes (see ``_reads``), and with
        :class:`ServiceUnavailable` naming the memory limit when DuckDB runs out of it."""
        if self._parent is not None:  # its locks may have been held by a parent's thread
            raise self._closed_error()
        if self._needs_reopen:
            with self._writer_turn():
                self._reopen(None, self._generation)
        local = self._local
        with self.cache.working():
            cursor = self.cursor()
            if getattr(local, "reading", False):  # the enclosing block watches this work
                yield cursor
                return
            local.reading = True
            generation = self._generation
            try:
                limit, deadline = getattr(local, "time_limit", (None, None))
                with self._reads.watching(cursor, limit, deadline):
                    yield cursor
            except duckdb.OutOfMemoryException as exc:
                raise self._out_of_memory() from exc
            except duckdb.FatalException as exc:  # a CHECKPOINT that failed, say
                local.reading = False  # (a reopen under way is not waited for otherwise)
                with self._writer_turn():
                    self._reopen(exc, generation)
                raise self._reopened_error() from exc
            except duckdb.Error as exc:
                if generation != self._generation:  # its cursor was closed by a reopen
                    raise self._reopened_error() from exc
                raise
            finally:
                local.reading = False

    def _out_of_memory(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the query needed more memory than the database's limit of {self._memory_limit} "
            "(LOCALEVENTS_DATABASE_MEMORY_LIMIT), which the queries running at once and "
            "the writes share; try again, narrow the filter, or raise the limit"
        )

    @contextlib.contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        """Reads on this thread in the block stop with :class:`QueryTimeout` once
        ``seconds`` have passed since the block began (None: no limit). Writes are not
        limited."""
        local = self._local
        previous = getattr(local, "time_limit", (None, None))
        deadline = None if seconds is None else time.monotonic() + seconds
        local.time_limit = (seconds, deadline)
        try:
            yield
        finally:
            local.time_limit = previous

    @property
    def reads_running(self) -> int:
        """Reads in progress now (each on its thread's cursor)."""
        return self._reads.running

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on this thread's cursor."""
        with self.reading() as cursor:
            return cursor.execute(sql, params).fetchall()

    # -- writing -------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next stored event will get (every stored event's is lower)."""
        return self._next_seq

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` with the newly stored events of each commit, one batch per
        caller served (in the committing thread, after the commit; it must not block)."""
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def write_events(self, events: Sequence[ReceivedEvent]) -> list[ReceivedEvent]:
        """Store events durably; return those that were new (see :meth:`write_batch`)."""
        stored = self.write_batch(EncodedEvents.of(events)).events
        return cast("list[ReceivedEvent]", list(stored))

    def write_rows(self, rows: Sequence[Row]) -> list[Row]:
        """Store single encoded events durably; return those that were new."""
        return [rows[i] for i in self._write(_Batch(EncodedEvents.join(rows))).new]

    def write_batch(self, events: EncodedEvents) -> EncodedEvents:
        """Store a batch durably; return the part of it that was new (a known id is
        ignored, D2).

        Returns after the commit that holds it; duplicates inside the batch collapse to
        the first occurrence. Concurrent callers share commits (one leads, the others wait).
        """
        return self._write(_Batch(events)).inserted

    def write_prepared(self, prepare: Callable[[], EncodedEvents], size: int) -> EncodedEvents:
        """Store the batch that ``prepare`` makes from ``size`` bytes of JSON, as
        :meth:`write_batch`; what ``prepare`` raises is raised here, and nothing of this
        batch is stored.

        ``prepare`` runs in the thread that leads the commit, just before it, one
        preparation at a time. CPU-bound Python (decoding a request body) running beside a
        commit makes DuckDB's statement wait for the GIL several times, each wait as long
        as the other thread's current C call: four requests decoding beside the commits
        of each other's batches ran at 0.65x the rate of one request at a time. Prepared
        by the committing thread, they share its commits without slowing them.
        """
        return self._write(_Batch(_NOTHING, prepare, size)).inserted

    def _write(self, batch: _Batch) -> _Batch:
        if self._parent is not None:  # its locks may have been held by a parent's thread
            raise self._closed_error()
        with self._writer:
            self._queue.append(batch)
        while True:
            # One try around taking the lead and committing: an exception that lands
            # anywhere in between (Ctrl-C in the main thread) must not leave the writer
            # marked busy, which would hold every later write, and closing, for ever.
            leading, committed = False, False
            batches: list[_Batch] = []
            try:
                with self._writer:
                    while self._writing and not batch.done:
                        self._writer.wait()
                    if batch.done:
                        break
                    leading = self._writing = True  # nobody is: lead a commit of the oldest
                    batches = self._next_commit()
                self._commit(batches)
                committed = True
            finally:
                if leading:
                    self._end_turn(batches, committed)
        if batch.unprepared is not None:
            raise batch.unprepared
        if isinstance(batch.error, LocalEventsError):
            raise batch.error
        if batch.error is not None:
            raise StorageError(f"could not store events: {batch.error}") from batch.error
        return batch

    def _end_turn(self, batches: list[_Batch], committed: bool) -> None:
        """Serve ``batches`` (an error for those of a commit cut short) and let the next
        writer lead."""
        with self._writer:
            for served in batches:
                if not committed and served.error is None:
                    served.error = StorageError("the commit of these events was interrupted")
                served.done = True
            self._writing = False
            self._turns_done += 1
            self._writer.notify_all()

    def _next_commit(self) -> list[_Batch]:
        """Take the oldest queued batches, as many as fit in :data:`COMMIT_BYTES` (at least
        one), for the next commit (holding ``_writer``)."""
        total = 0
        for taken, batch in enumerate(self._queue):
            total += batch.size
            if total > COMMIT_BYTES and taken:
                break
        else:
            taken = len(self._queue)
        batches, self._queue = self._queue[:taken], self._queue[taken:]
        return batches

    def _commit(self, batches: list[_Batch]) -> None:
        batches = [batch for batch in batches if batch.prepared()]
        try:
            with self.cache.working(reads=False):
                self._insert_new(batches)
        except Exception as exc:
            for batch in batches:
                batch.error = exc
            return
        stored = [batch.inserted for batch in batches if batch.inserted]
        for listener in list(self._listeners) if stored else ():
            listener(stored)

    def _insert_new(self, batches: list[_Batch]) -> None:
        if self.closed:
            raise self._closed_error()
        ids = [[event.id.int for event in batch.events.events] for batch in batches]
        every = [i for batch_ids in ids for i in batch_ids]
        try:
            news = self._new_events(ids, every)
            for batch, new in zip(batches, news, strict=True):
                batch.store(new)
            lines = b"".join([batch.inserted.lines for batch in batches])
            if lines:  # one statement, so one transaction: all of it is stored, or nothing
                self._batch_file.write(lines)
                self._insert_lines()
        except BaseException as exc:
            for batch in batches:
                batch.store(())
            if isinstance(exc, duckdb.OutOfMemoryException):  # the id lookup or the INSERT
                raise self._write_memory.out_of_memory() from exc
            raise
        self._recent.add(
            [batch_ids[i] for batch_ids, new in zip(ids, news, strict=True) for i in new]
        )
        for batch in batches:  # the lines got their seqs in this order
            if batch.inserted:
                batch.inserted.first_seq = self._next_seq
                self._next_seq += len(batch.inserted)

    def _insert_lines(self) -> None:
        """Insert the batch file's lines in one transaction. When DuckDB invalidates the
        database (see :meth:`_reopen`), the file is reopened; the lines count as stored if
        DuckDB says that their commit is durable, and are inserted again otherwise (once:
        the database may have been invalidated by another thread's work)."""
        if self._needs_reopen:
            self._reopen(None, self._generation)
        insert = f"EXECUTE {_INSERT_LINES}({self._next_seq:d})"
        try:
            self._con.execute(insert)
        except duckdb.FatalException as exc:
            self._reopen(exc, self._generation)
            if not durable(exc):
                self._con.execute(insert)

    def _prepare_insert(self) -> None:
        """Prepare the INSERT of the batch file's lines on the writer's connection: binding
        and planning it took about 0.3 ms of each 11 ms commit of 1000 events (DuckDB reads
        the file again at each execution)."""
        self._con.execute(f"PREPARE {_INSERT_LINES} AS {insert_lines_sql(self._batch_file.path)}")

    def _new_events(self, ids: list[list[int]], every: list[int]) -> list[Sequence[int]]:
        """For each batch (its ids as integers), the indexes of its events to store: those
        whose id is neither stored (exact, for any age: D2) nor carried by an earlier event
        of these batches.

        The recent ids (see ``_recent_ids``) answer for every id above their horizon; in
        the usual case, distinct ids none of which is stored, that is all of them, without
        reading the file. Only the ids at or below the horizon are looked up: DuckDB scans
        the id column, skipping row groups outside their range.
        """
        known, older = self._recent.known(every)
        if not known and not older and len(set(every)) == len(every):
            return [range(len(batch_ids)) for batch_ids in ids]
        seen = (known | self._stored_ids(older)) if older else known
        return [_first_unseen(batch_ids, seen) for batch_ids in ids]

    def delete_events(self, where: str, params: list[Any]) -> int:
        """Delete the events matching the SQL condition ``where`` (and take them out of
        their label sets' counts: see ``LabelSets.delete_events``); return how many.

        Every deletion goes through here: afterwards the file answers again for every id
        stored so far, so a deleted event's id counts as new (see ``_recent_ids``). No
        commit runs between the deletion's own and that reset, so an id re-sent meanwhile
        is either refused before the deletion or stored after it.
        """
        with self.reading() as cursor:
            committing = functools.partial(self._deletion_commit, cursor)
            return self.label_sets.delete_events(cursor, where, params, committing)

    @contextlib.contextmanager
    def _deletion_commit(
        self, transaction: duckdb.DuckDBPyConnection, deleted: int
    ) -> Iterator[None]:
        """Hold every write off while a deletion of ``deleted`` events commits (on
        ``transaction``), then forget the recent ids if it deleted any, before the next
        write. The deletion records the next ``seq`` (see ``LabelSets.next_seq``): the
        newest events may be among those deleted, and a ``seq`` given out again would
        make subscribers resuming after it skip events."""
        with self._writer_turn():
            if deleted:
                write_meta(transaction, NEXT_SEQ_KEY, str(self._next_seq))
            yield
            if deleted:
                self._recent.forget()

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for the commit in progress, if any, and hold every other write off in the
        block (batches queued meanwhile wait for the next commit)."""
        with self._writer:
            while self._writing:
                if self._reopening and getattr(self._local, "reading", False):
                    raise self._reopened_error()  # a deletion: its cursor is to be closed
                self._writer.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._writer:
                self._writing = False
                self._turns_done += 1
                self._writer.notify_all()

    def wait_for_writes(self) -> None:
        """Wait until the commit in progress, if any, has finished and called its commit
        listeners: every event a query has seen so far has then been handed to them.
        Later commits are not waited for (a busy writer cannot hold the caller off)."""
        with self._writer:
            if self._writing:
                target = self._turns_done + 1
                while self._turns_done < target:
                    self._writer.wait()

    def _stored_ids(self, ids: list[int]) -> set[int]:
        self.cache.note_read()  # the id column's blocks: the next commits may need them
        rows = self._con.execute(
            "SELECT id FROM events WHERE id IN (SELECT unnest(?::UUID[]))",
            [[uuid.UUID(int=i) for i in ids]],
        ).fetchall()
        return {row[0].int for row in rows}

    @property
    def pending_batches(self) -> int:
        """Batches queued for the next group commit (the writer's backlog)."""
        return len(self._queue)

    # -- lifetime ------------------------------------------------------------------------

    def _reopen(self, failure: duckdb.Error | None, generation: int) -> None:
        """Reopen the file after ``failure``, a fatal error from DuckDB (None: to retry a
        reopen that failed), unless it was reopened since ``generation``. Called in the
        writer's turn.

        After a fatal error DuckDB refuses every statement until the database is opened
        again; without this, a server answered 500 to everything until it was restarted.
        The usual one is a checkpoint that ran out of memory: folding the write-ahead log
        into the file merges small row groups into one, in memory, and for events with
        payloads of a hundred KB or more that took more than the memory limit
        (LOCALEVENTS_DATABASE_MEMORY_LIMIT). The commit before it is durable: the log
        holds it, and reopening replays it. So the reopened file's checkpoints no longer
        merge row groups; that stays so until the store is next opened. Reads in
        progress are interrupted and raise :meth:`_reopened_error`, as do reads waiting
        for a write turn (a deletion). If the file cannot be opened again, that raises
        :class:`ServiceUnavailable`, and the next read or write tries again.
        """
        if self.path == ":memory:":  # a new one would be empty: say so, never pretend
            raise StorageError(
                "the in-memory events database failed and its events are lost; start the "
                f"process again (DuckDB: {'unknown' if failure is None else cause(failure)})"
            )
        with self._writer:
            self._reopening = True
            self._writer.notify_all()
        try:
            with self._cursor_lock:
                if self.closed or generation != self._generation:
                    return
                self._reads.interrupt_all(_CLOSE_WAIT_S, reopening=True)
                try:
                    self._reconnect(failure)
                finally:
                    self._reads.resume()
        finally:
            with self._writer:
                self._reopening = False
        if failure is None:
            logger.warning("reopened the events file %s (an earlier attempt had failed)", self.path)
            return
        logger.warning(
            "reopened the events file %s after a fatal error from DuckDB: %s%s",
            self.path,
            cause(failure),
            no_merging(self._memory_limit) if checkpoint_failed(failure) else "",
        )

    def _reconnect(self, failure: duckdb.Error | None) -> None:
        """Close every cursor and the connection, and connect again (see :meth:`_reopen`;
        called holding the cursor lock)."""
        for _, cursor in self._cursors:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        self._cursors.clear()
        with contextlib.suppress(duckdb.Error):
            self._cursor_source.close()
        with contextlib.suppress(duckdb.Error):
            self._con.close()
        if failure is not None and checkpoint_failed(failure):
            self._merging = False
        try:
            self._con = _connect(self.path, self._memory_limit, self._threads, merge=self._merging)
        except Exception as exc:
            self._needs_reopen = True
            logger.error("could not reopen the events file %s: %s", self.path, exc)
            raise ServiceUnavailable(
                f"the events file {self.path} could not be reopened after a storage failure "
                f"({exc}); retry later"
            ) from exc
        self._needs_reopen = False
        self._prepare_insert()
        self._cursor_source = self._con.cursor()
        self.cache.reconnect(self._con.cursor())
        self._generation += 1
        self.reopened += 1

    def _reopened_error(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the events file {self.path} was reopened after a storage failure (see the "
            "server's log); retry"
        )

    def _closed_error(self) -> LocalEventsError:
        if self._parent is not None:
            return DatabaseInUseError(self.path, self._parent)
        return ServiceUnavailable(
            f"the events file {self.path} is closed (the store is shutting down); retry later"
        )

    def close(self) -> None:
        """Close every cursor and the file. Reads in progress are interrupted (each raises
        the store's closed error) and waited for; a commit in progress is waited for, and
        the writes waiting for the next one then fail: the store is closed."""
        if self._parent is not None:  # the parent's DuckDB objects: left alone here
            return
        still_reading = self._reads.interrupt_all(_CLOSE_WAIT_S)
        with self._writer_turn(), self._cursor_lock:
            if self.closed:
                return
            self.closed = True
            self.cache.close()
            if still_reading:
                logger.warning(
                    "closing %s while %d reads still run after %g s",
                    self.path,
                    still_reading,
                    _CLOSE_WAIT_S,
                )
            for _, cursor in self._cursors:
                with contextlib.suppress(duckdb.ResourceInUseException):  # still reading
                    cursor.close()
            # Idle worker threads (daemons) keep their thread-local cursor objects until the
            # interpreter ends, and DuckDB's bindings then report each as leaked.
            self._cursors.clear()
            self._local = threading.local()
            self._cursor_source.close()
            self._con.close()
            self._batch_file.close()
            # Free DuckDB's connection objects now, not with the store: the last reference
            # to a store is often dropped by the thread that released it (an anyio worker
            # thread, a daemon) after it handed back its result, and a connection freed
            # there while the interpreter finalizes aborts the process ("FATAL: exception
            # not rethrown": its destructor waits for the GIL, and Python ends the thread).
            del self._cursor_source, self._con


_registry_lock = threading.Lock()
_registry: dict[str, EventStore] = {}


def _key(path: str) -> str:
    if path == ":memory:":
        return path
    return os.path.realpath(os.path.expanduser(path))


def _ready_folder(path: str) -> None:
    """Check that the folder of the events file ``path`` exists; only the localevents home
    (where the default file lives) is made when missing, readable by its owner alone. Any
    other missing folder is far more often a typo than a wish: making it would start an
    empty store there, silently."""
    folder = os.path.dirname(path)
    if os.path.isdir(folder):
        return
    home = os.path.realpath(os.path.expanduser(get_settings().home))
    if folder != home:
        reason = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ConfigurationError(
            f"cannot open the events file {path}: its folder {folder} {reason} (create it "
            f"first: only the localevents home, {home}, is made when missing)"
        )
    try:  # for its owner alone: the events, and the page-token secret, are in its files
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StorageError(
            f"cannot open the events file {path}: cannot create its folder {folder}: {reason}"
        ) from exc


def open_store(path: str) -> EventStore:
    """The process-wide store for ``path``, opened on first use; pair with :func:`release`."""
    key = utf8_path(_key(path), "the events file")  # resolved: its folders' names too
    with _registry_lock:
        store = _registry.get(key)
        if store is not None and store._parent is not None:
            raise store._closed_error()
        if store is None:
            if key != ":memory:":
                _ready_folder(key)
            store = EventStore(key)
            _registry[key] = store
        store._users += 1
        return store


def open_stores() -> list[EventStore]:
    """Every store open in this process (without the lock: a store being opened may hold
    it for a while, and copying a dict is atomic under the GIL)."""
    return list(_registry.values())


def release(store: EventStore) -> None:
    """Give back a store from :func:`open_store`; the last release closes it."""
    with _registry_lock:
        store._users -= 1
        if store._users > 0:
            return
        _registry.pop(_key(store.path), None)
    store.close()


_left_by_fork: list[EventStore] = []  # kept, never closed: their DuckDB objects are a parent's


def _after_fork_in_child() -> None:
    """In a child forked while stores were open, each store's DuckDB instance is a copy of
    the parent's: its writes went into the copy's memory and were lost (or hung on a lock
    a parent's thread held), and a checkpoint could write into the parent's file. So every
    store the child inherited refuses all use, as the file refuses a spawned process:
    :class:`DatabaseInUseError` naming the parent. Its DuckDB objects are never touched.
    """
    global _registry_lock  # noqa: PLW0603 -- a fresh lock, as threading does at fork
    _registry_lock = threading.Lock()  # a parent's thread may have held it
    parent = os.getppid()
    for key, store in list(_registry.items()):
        if store._parent is None:  # else inherited already: its holder is further up
            store._parent = parent
        store.closed = True
        if key == ":memory:":  # the parent's own; the child may have one of its own
            _left_by_fork.append(_registry.pop(key))


os.register_at_fork(after_in_child=_after_fork_in_child)
