"""The event store: one DuckDB file per process, one writer at a time, readers in parallel.

DuckDB caches one database instance per path and refuses a second process, so a store is
process-wide: :func:`open_store` hands out the same :class:`EventStore` for a path to every
caller (each app lifespan, any thread) and closes it when the last one releases it.

Writes are group-committed. A caller enqueues its batch and takes the write lock; whoever
holds the lock commits every batch queued so far in one transaction, then wakes the callers
it served. One fsync then covers many concurrent requests, and each caller returns only
after its events are durable (D1). Reads use one DuckDB cursor per thread.
"""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING, Any

import duckdb

from localevents._exceptions import DatabaseInUseError, StorageError
from localevents.storage._rows import event_row
from localevents.storage._schema import ensure_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from localevents.events._schemas import ReceivedEvent

__all__ = ("EventStore", "open_store", "release")

_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")


class _Batch:
    """One caller's events waiting for a commit."""

    __slots__ = ("done", "error", "events", "inserted")

    def __init__(self, events: Sequence[ReceivedEvent]) -> None:
        self.events = events
        self.done = threading.Event()
        self.inserted: list[ReceivedEvent] = []
        self.error: BaseException | None = None


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            match = _LOCK_HOLDER.search(str(exc))
            raise DatabaseInUseError(path, int(match[1]) if match else None) from exc
        raise StorageError(f"cannot open the events file {path}: {exc}") from exc
    con.execute("SET TimeZone = 'UTC'")
    return con


class EventStore:
    """An open events file. Obtain one with :func:`open_store`; every method is blocking
    and thread-safe (async callers run them in worker threads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._con = _connect(path)
        try:
            self.secret = ensure_schema(self._con)
        except BaseException:
            self._con.close()
            raise
        self._cursor_source = self._con.cursor()
        self._cursor_lock = threading.Lock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Batch] = []
        self._listeners: list[Callable[[list[ReceivedEvent]], None]] = []
        self._users = 0
        self.closed = False

    # -- reading -------------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's read cursor (created on first use, closed with the store)."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._cursor_lock:
                if self.closed:
                    raise StorageError(f"the events file {self.path} is closed")
                cursor = self._cursor_source.cursor()
                self._cursors.append(cursor)
            cursor.execute("SET TimeZone = 'UTC'")
            self._local.cursor = cursor
        return cursor

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on this thread's cursor."""
        return self.cursor().execute(sql, params).fetchall()

    # -- writing -------------------------------------------------------------------------

    def add_commit_listener(self, listener: Callable[[list[ReceivedEvent]], None]) -> None:
        """Call ``listener`` with the newly stored events after each commit (in the
        committing thread; it must not block)."""
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: Callable[[list[ReceivedEvent]], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def write_events(self, events: Sequence[ReceivedEvent]) -> list[ReceivedEvent]:
        """Store events durably; return those that were new (a known id is ignored, D2).

        Returns after the commit that holds them; duplicates inside ``events`` collapse to
        the first occurrence.
        """
        batch = _Batch(events)
        with self._queue_lock:
            self._queue.append(batch)
        with self._write_lock:
            with self._queue_lock:
                batches, self._queue = self._queue, []
            if batches:
                self._commit(batches)
        batch.done.wait()
        if batch.error is not None:
            raise StorageError(f"could not store events: {batch.error}") from batch.error
        return batch.inserted

    def _commit(self, batches: list[_Batch]) -> None:
        try:
            stored = self._insert_new(batches)
        except BaseException as exc:
            for batch in batches:
                batch.error = exc
                batch.done.set()
            if not isinstance(exc, Exception):
                raise
            return
        for batch in batches:
            batch.done.set()
        for listener in list(self._listeners):
            listener(stored)

    def _insert_new(self, batches: list[_Batch]) -> list[ReceivedEvent]:
        con = self._con
        if self.closed:
            raise StorageError(f"the events file {self.path} is closed")
        candidates: dict[Any, ReceivedEvent] = {}
        for batch in batches:
            for event in batch.events:
                candidates.setdefault(event.id, event)
        con.execute("BEGIN")
        try:
            existing = self._existing_ids(list(candidates))
            new_rows = [event_row(e) for i, e in candidates.items() if str(i) not in existing]
            if new_rows:
                with con.appender("events") as appender:
                    appender.append_rows(new_rows)
                    appender.flush()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        stored: list[ReceivedEvent] = []
        claimed: set[Any] = set()
        for batch in batches:
            for event in batch.events:
                if str(event.id) not in existing and event.id not in claimed:
                    claimed.add(event.id)
                    batch.inserted.append(event)
                    stored.append(event)
        return stored

    def _existing_ids(self, ids: list[Any]) -> set[str]:
        # Exact for any age (D2). Ids are time-ordered (UUIDv7) in the common case, so the
        # min/max of the probe lets DuckDB skip every row group outside that id range.
        rows = self._con.execute(
            "SELECT id::VARCHAR FROM events WHERE id IN (SELECT unnest(?::UUID[]))", [ids]
        ).fetchall()
        return {row[0] for row in rows}

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every cursor and the file (waits for a commit in progress)."""
        with self._write_lock, self._cursor_lock:
            if self.closed:
                return
            self.closed = True
            for cursor in self._cursors:
                cursor.close()
            self._cursor_source.close()
            self._con.close()


_registry_lock = threading.Lock()
_registry: dict[str, EventStore] = {}


def _key(path: str) -> str:
    if path == ":memory:":
        return path
    return os.path.realpath(os.path.expanduser(path))


def open_store(path: str) -> EventStore:
    """The process-wide store for ``path``, opened on first use; pair with :func:`release`."""
    key = _key(path)
    with _registry_lock:
        store = _registry.get(key)
        if store is None:
            if key != ":memory:":
                os.makedirs(os.path.dirname(key), exist_ok=True)
            store = EventStore(key)
            _registry[key] = store
        store._users += 1
        return store


def release(store: EventStore) -> None:
    """Give back a store from :func:`open_store`; the last release closes it."""
    with _registry_lock:
        store._users -= 1
        if store._users > 0:
            return
        _registry.pop(_key(store.path), None)
    store.close()
