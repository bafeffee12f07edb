"""Giving DuckDB's cache of the events file back once the store is idle.

DuckDB keeps every block of the file it reads in its buffer pool, up to its memory limit
(``LOCALEVENTS_DATABASE_MEMORY_LIMIT``): a server that answered a count-by resource over
10M events held ~170 MB of cached blocks, ~400 MB resident in all, long after the answer.
The operating system's page cache holds the same file anyway, so reading a block again is
cheap (10M events, measured after a release against warm: count-by hour 56 -> 59 ms, by
event 46 -> 56 ms, first page 22 -> 24 ms, by resource 511 -> 588 ms).

So a store counts the DuckDB work in flight (queries, commits, exports, deletions) through
:meth:`CacheRelease.working`. Once a read has run and no work has for :attr:`CacheRelease.after_s`,
its thread shrinks the cached blocks of the file to ``LOCALEVENTS_DATABASE_IDLE_CACHE``
(at least one block): DuckDB has no call for that, but lowering its memory limit for an
instant evicts, and file blocks go first (they need no writing). The lowered limit leaves
room for everything else DuckDB holds, committed rows not yet checkpointed above all, and a
block of slack, so nothing is spilled to disk. Commits count as work too: a store taking
writes more often than once a second keeps its cache until they pause. No
work runs while the limit is low (it could fail a query for want of memory): work arriving
then waits for the release, a few milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

import duckdb

from localevents.storage._sql import sql_string

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("IDLE_AFTER_S", "CacheRelease")

logger = logging.getLogger("localevents.storage")

IDLE_AFTER_S = 1.0
"""How long the store must be idle after a read before its cache is released."""

_BUSY_POLL_S = 0.05  # the least time between two looks while work runs
_BLOCK = 256 * 1024  # DuckDB's block size

_USAGE_SQL = (
    "SELECT sum(memory_usage_bytes), sum(memory_usage_bytes) FILTER (WHERE tag = 'BASE_TABLE') "
    "FROM duckdb_memory()"
)


class CacheRelease:
    """Counts the DuckDB work in flight on one database and releases its cache when idle
    (see the module docstring). ``con`` is a cursor for the release alone; ``limit`` the
    memory limit to restore; ``idle_cache`` the bytes of cached file blocks to keep."""

    def __init__(self, con: duckdb.DuckDBPyConnection, limit: str, idle_cache: int) -> None:
        self.after_s = IDLE_AFTER_S
        self.releases = 0
        """How many times cached blocks were evicted."""
        self._con = con
        self._limit = limit
        self._idle_cache = idle_cache
        self._state = threading.Condition()
        self._working = 0
        self._releasing = False
        self._read = False  # a read ran since the last release
        self._last_end = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def working(self, *, reads: bool = True) -> Iterator[None]:
        """Hold off releases for the block (DuckDB work runs in it); waits while one runs.
        ``reads``: the work may read the file (and so fill the cache)."""
        with self._state:
            while self._releasing:
                self._state.wait()
            self._working += 1
        try:
            yield
        finally:
            with self._state:
                self._working -= 1
                self._last_end = time.monotonic()
                if reads and not self._read and not self._closed:
                    self._read = True  # the release thread waits for this, and only this
                    self._start_thread()
                    self._state.notify_all()

    def _start_thread(self) -> None:
        """Start the release thread if it is not running (holding ``_state``). Without
        one (e.g. at interpreter shutdown) nothing is released, and the work is unaffected."""
        if self._thread is not None:
            return
        thread = threading.Thread(target=self._run, name="localevents-cache-release", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            logger.debug("no thread to release the events file's cache", exc_info=True)
            return
        self._thread = thread

    def close(self) -> None:
        """Stop the release thread (waits for a release in progress) and close its cursor."""
        with self._state:
            self._closed = True
            thread, self._thread = self._thread, None
            self._state.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._con.close()

    def _run(self) -> None:
        while self._wait_until_idle():
            try:
                self._release()
            except duckdb.Error:
                logger.debug("could not release the events file's cache", exc_info=True)
            finally:
                with self._state:
                    self._releasing = False
                    self._state.notify_all()

    def _wait_until_idle(self) -> bool:
        """Wait until a read has run and nothing has for ``after_s``, then mark a release
        as running; ``False`` once closed. Work ending does not wake this thread (a busy
        writer ends work hundreds of times a second): it looks again when the quiet period
        it waits for would be over."""
        with self._state:
            while not self._closed:
                if not self._read:
                    self._state.wait()
                    continue
                if self._working:
                    self._state.wait(max(self.after_s, _BUSY_POLL_S))
                    continue
                remaining = self._last_end + self.after_s - time.monotonic()
                if remaining > 0:
                    self._state.wait(remaining)
                    continue
                self._read = False
                self._releasing = True
                return True
            return False

    def _release(self) -> None:
        row = self._con.execute(_USAGE_SQL).fetchone()
        total, cached = (int(value or 0) for value in row) if row else (0, 0)
        keep = max(self._idle_cache, _BLOCK)  # a file or :memory: store pins one block
        if cached - keep < _BLOCK:  # nothing worth a release
            return
        try:  # a block of slack: without it, DuckDB may spill a block of unsaved rows
            self._con.execute(f"SET memory_limit = '{total - cached + keep + _BLOCK}B'")
            self.releases += 1
        finally:
            try:
                self._con.execute(f"SET memory_limit = {sql_string(self._limit)}")
            except duckdb.Error:
                logger.exception("could not restore DuckDB's memory limit to %s", self._limit)
                raise
