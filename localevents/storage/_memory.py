"""Giving DuckDB's cache of the events file back when nothing reads it.

DuckDB keeps every block of the file it reads in its buffer pool, up to its memory limit
(``LOCALEVENTS_DATABASE_MEMORY_LIMIT``): a server that answered a count-by resource over
10M events held ~170 MB of cached blocks, ~400 MB resident in all, long after the answer.
The blocks a checkpoint writes stay cached as well, so a store that only took writes grew
by the size of its file (about 44 bytes per standard event) until it reached the limit.
The operating system's page cache holds the same file anyway, so reading a block again is
cheap (10M events, measured after a release against warm: count-by hour 56 -> 59 ms, by
event 46 -> 56 ms, first page 22 -> 24 ms, by resource 511 -> 588 ms).

So a store counts the DuckDB work in flight (queries, commits, exports, deletions) through
:meth:`CacheRelease.working`, and which of it reads. Once work has run and no read has for
:attr:`CacheRelease.after_s`, its thread looks (at most once per ``after_s``) and shrinks
the cached blocks of the file to ``LOCALEVENTS_DATABASE_IDLE_CACHE`` (at least one block):
DuckDB has no call for that, but lowering its memory limit for an instant evicts, and file
blocks go first (they need no writing). Commits do not hold the cache (the blocks a
checkpoint left in it are not read back, unless a commit looks up old ids in the file:
:meth:`CacheRelease.note_read`), so a store written to without a pause gives it back too,
at an instant between two commits. The lowered limit leaves room for everything else DuckDB
holds, committed rows not yet checkpointed above all, and a block of slack, so nothing is
spilled to disk. No work runs while the limit is low (it could fail a query for want of
memory): work arriving then waits for the release, a few milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING

import duckdb

from localevents.storage._exit import stop_at_exit
from localevents.storage._sql import sql_string

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("IDLE_AFTER_S", "CacheRelease")

logger = logging.getLogger("localevents.storage")

IDLE_AFTER_S = 1.0
"""How long no read must have run before the cache is released (and the least time
between two looks at it)."""

_BUSY_POLL_S = 0.05  # the shortest wait of the release thread while work runs
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
        self._working = 0  # DuckDB work in flight
        self._reading = 0  # the part of it that reads the file
        self._releasing = False
        self._filled = False  # work ran since the last look: the cache may have grown
        self._wanted = False  # a look is due: the next work to end with none left does it
        self._last_read = -math.inf  # when the last read ended
        self._last_look = -math.inf  # when the last look ended
        self._thread: threading.Thread | None = None
        self._stopped = False
        stop_at_exit(self)

    @contextlib.contextmanager
    def working(self, *, reads: bool = True) -> Iterator[None]:
        """Hold off releases for the block (DuckDB work runs in it); waits while one runs.
        ``reads``: the work reads the file, so its cache is worth keeping for a while.

        When a look at the cache is due and work keeps coming without a gap long enough
        for the release thread to find (a busy writer), the work that ends with none left
        in flight looks itself, in its own thread: a millisecond or so, once per ``after_s``.
        """
        with self._state:
            while self._releasing:
                self._state.wait()
            self._working += 1
            if reads:
                self._reading += 1
                self._wanted = False  # the cache is in use again
        try:
            yield
        finally:
            looking = False
            try:
                looking = self._ended(reads=reads)
                if looking:
                    self._release_logged()
            finally:
                if looking:
                    self._end_look()

    def note_read(self) -> None:
        """The work in flight read the file after all (a commit looking ids up in it):
        its cache is worth keeping for a while, as after a read."""
        with self._state:
            self._last_read = time.monotonic()
            self._wanted = False

    def _ended(self, *, reads: bool) -> bool:
        """Account for work that ended; ``True`` if it is to look at the cache now."""
        with self._state:
            self._working -= 1
            if reads:
                self._reading -= 1
                self._last_read = time.monotonic()
            if self._stopped:
                return False
            if not self._filled:
                self._filled = True  # the release thread waits for this
                self._start_thread()
                self._state.notify_all()
            elif self._wanted and not self._working:
                self._begin_look()
                return True
            return False

    def _start_thread(self) -> None:
        """Start the release thread if it is not running (holding ``_state``). Without
        one (e.g. at interpreter shutdown) nothing is released, and the work is unaffected."""
        if self._thread is not None and self._thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name="localevents-cache-release", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            logger.debug("no thread to release the events file's cache", exc_info=True)
            return
        self._thread = thread

    def stop(self) -> None:
        """Release no more and stop the release thread, waiting for a release in progress
        (milliseconds); the work goes on unaffected."""
        with self._state:
            self._stopped = True
            thread, self._thread = self._thread, None
            self._state.notify_all()
            while self._releasing:  # a look in a worker's thread
                self._state.wait()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        """Stop the release thread (waits for a release in progress) and close its cursor."""
        self.stop()
        self._con.close()
        del self._con  # freed now, not with this object (see EventStore.close)

    def reconnect(self, con: duckdb.DuckDBPyConnection) -> None:
        """Release through ``con`` from now on (the store reopened its file); closes the
        old cursor. Called by work in flight, so no release is running."""
        with self._state:
            old, self._con = self._con, con
        with contextlib.suppress(duckdb.Error):
            old.close()

    def _run(self) -> None:
        while self._wait_for_a_look():
            try:
                self._release_logged()
            finally:
                self._end_look()

    def _wait_for_a_look(self) -> bool:
        """Wait until work has run since the last look and no read has for ``after_s``
        (nor has the last look been that recent); then, with no work in flight, mark a
        look as running and return ``True``, or leave it to the work in flight
        (``_wanted``). ``False`` once stopped. Work ending wakes this thread only when it
        is the first since the last look (a busy writer ends work hundreds of times a
        second): otherwise it looks again when the period it waits for would be over."""
        with self._state:
            while not self._stopped:
                if not self._filled or self._releasing:
                    self._wanted = False
                    self._state.wait()
                    continue
                since = max(self._last_read, self._last_look)
                remaining = since + self.after_s - time.monotonic()
                if self._reading or remaining > 0:
                    self._wanted = False
                    self._state.wait(remaining if not self._reading else self._poll_s)
                    continue
                if self._working:  # a commit, say: the work itself will look (see above)
                    self._wanted = True
                    self._state.wait(self._poll_s)
                    continue
                self._begin_look()
                return True
            return False

    @property
    def _poll_s(self) -> float:
        return max(self.after_s, _BUSY_POLL_S)

    def _begin_look(self) -> None:
        """Mark a look as running (holding ``_state``): work waits until it is over."""
        self._wanted = False
        self._filled = False
        self._releasing = True

    def _end_look(self) -> None:
        """The look that ``_begin_look`` marked is over: work may run again."""
        with self._state:
            self._releasing = False
            self._last_look = time.monotonic()
            self._state.notify_all()

    def _release_logged(self) -> None:
        """Release the cache if it holds more than the idle budget; never raises (a look
        may run in the thread of work that succeeded, and must not fail it)."""
        try:
            self._release()
        except duckdb.Error:
            logger.debug("could not release the events file's cache", exc_info=True)
        except Exception:
            logger.warning("could not release the events file's cache", exc_info=True)

    def _release(self) -> None:
        # fetchall, not fetchone: a result left open keeps its transaction open, and a
        # checkpoint cannot then vacuum the rows that a deletion (retention) took away
        (row,) = self._con.execute(_USAGE_SQL).fetchall()
        total, cached = (int(value or 0) for value in row)
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
