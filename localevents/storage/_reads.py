"""The reads in progress on a store: each one's time limit, and stopping them all on close.

A read (a query, a page, a count, an export's page) runs on its thread's DuckDB cursor in a
worker thread that nothing can cancel: a client that gave up, or a server that stopped
waiting for it, leaves it running. A filter at its size limits over 100,000 events takes
2-5 s per query (it took 15 s before a label's value was read once for all of its
patterns); over 10M, minutes. And closing the store while a read ran failed: DuckDB refuses to
close a cursor busy in another thread ("connection is busy with another call").

So every read registers here for as long as it runs. One watcher thread per store calls
``cursor.interrupt()`` on a read whose deadline has passed (and again every
:data:`REINTERRUPT_S` until it ends: an interrupt that arrives between two statements is
forgotten when the next one starts). The read raises :class:`QueryTimeout` naming its
limit, also when it ends without an error after its deadline: a read of many short
statements could otherwise see every interrupt fall between two of them and run on.
Closing the store interrupts every read at once; each raises the store's closed error, and
the close waits for them to end before it closes their cursors.

A read that was interrupted ends with a ``ROLLBACK`` of any transaction left open on its
cursor (the interrupt may have cut the statements that end it), so the thread's cursor
stays usable.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING

import duckdb

from localevents._exceptions import LocalEventsError, QueryTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ("REINTERRUPT_S", "Reads")

REINTERRUPT_S = 0.05
"""How often a read past its deadline (or cut by a close) is interrupted again until it
ends."""

_TIMEOUT = "timeout"
_CLOSING = "closing"
_REOPENING = "reopening"


class _Read:
    """One read in progress: its cursor, its deadline, and why it was interrupted."""

    __slots__ = ("cursor", "deadline", "ending", "limit", "why")

    def __init__(
        self, cursor: duckdb.DuckDBPyConnection, limit: float | None, deadline: float | None
    ) -> None:
        self.cursor = cursor
        self.limit = limit
        self.deadline = deadline
        self.why: str | None = None
        self.ending = False  # rolling back after an interrupt: not to be interrupted again


class Reads:
    """The reads in progress on one store (thread-safe).

    ``closed_error`` makes the error a read raises once the store closes: the same one as
    a read that starts after it.
    """

    def __init__(
        self,
        closed_error: Callable[[], LocalEventsError],
        reopened_error: Callable[[], LocalEventsError],
    ) -> None:
        self._closed_error = closed_error
        self._reopened_error = reopened_error
        self._changed = threading.Condition()
        self._running: set[_Read] = set()
        self._due: list[tuple[float, int, _Read]] = []  # (when, tiebreak, read): a heap
        self._order = itertools.count()
        self._watcher: threading.Thread | None = None
        self._wakes_at = float("inf")  # when the watcher wakes next if nothing changes
        self._closed = False  # the store is closing: reads are refused for good
        self._reopening = False  # the store reopens: reads are refused until resume()

    @property
    def running(self) -> int:
        """Reads in progress now."""
        with self._changed:
            return len(self._running)

    @contextlib.contextmanager
    def watching(
        self, cursor: duckdb.DuckDBPyConnection, limit: float | None, deadline: float | None
    ) -> Iterator[None]:
        """Watch the read that the block runs on ``cursor``: interrupted at ``deadline`` (a
        ``time.monotonic()`` instant; None: never), then raising :class:`QueryTimeout`
        naming ``limit`` (seconds), or when the store closes or reopens."""
        read = _Read(cursor, limit, deadline)
        with self._changed:
            if self._closed or self._reopening:
                raise (self._reopened_error if self._reopening else self._closed_error)()
            self._running.add(read)
            if deadline is not None:
                self._schedule(deadline, read)
        try:
            yield
        except duckdb.InterruptException as exc:
            if read.why is None:
                raise
            raise self._error(read) from exc
        else:
            if read.why is not None:  # every interrupt fell between its statements
                raise self._error(read)
        finally:
            if read.why is not None:
                with self._changed:
                    read.ending = True
                _end_transaction(cursor)
            with self._changed:
                self._running.discard(read)
                self._changed.notify_all()

    def interrupt_all(self, wait_s: float, *, reopening: bool = False) -> int:
        """Refuse new reads, interrupt every read in progress and wait up to ``wait_s`` for
        them to end; return how many still run (their cursors must not be closed yet).
        ``reopening``: the store reopens its file, not closes it; the interrupted reads
        raise its reopened error, and new reads are refused until :meth:`resume`."""
        end = time.monotonic() + wait_s
        with self._changed:
            self._reopening = reopening and not self._closed
            self._closed = self._closed or not reopening
            for read in self._running:
                if read.ending:
                    continue
                read.why = _REOPENING if reopening else _CLOSING
                with contextlib.suppress(duckdb.Error):  # a cursor closed meanwhile
                    read.cursor.interrupt()
                self._schedule(time.monotonic() + REINTERRUPT_S, read)
            while self._running and (left := end - time.monotonic()) > 0:
                self._changed.wait(left)
            self._changed.notify_all()  # the watcher ends once nothing runs
            return len(self._running)

    def resume(self) -> None:
        """Take reads again after :meth:`interrupt_all` for a reopen."""
        with self._changed:
            self._reopening = False

    def _error(self, read: _Read) -> LocalEventsError:
        if read.why == _CLOSING:
            return self._closed_error()
        if read.why == _REOPENING:
            return self._reopened_error()
        return QueryTimeout(
            f"the query took longer than the server's limit of {read.limit:g} s "
            "(LOCALEVENTS_SERVER_QUERY_TIMEOUT) and was stopped; narrow its time window "
            "or its filter"
        )

    def _schedule(self, when: float, read: _Read) -> None:
        """Have the watcher interrupt ``read`` at ``when`` (lock held)."""
        heapq.heappush(self._due, (when, next(self._order), read))
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="localevents-read-deadlines", daemon=True
            )
            self._watcher.start()
        elif when < self._wakes_at:
            self._changed.notify_all()

    def _watch(self) -> None:
        with self._changed:
            try:
                while not ((self._closed or self._reopening) and not self._running):
                    self._interrupt_due(time.monotonic())
                    self._wakes_at = self._due[0][0] if self._due else float("inf")
                    wait = None if not self._due else max(0.0, self._wakes_at - time.monotonic())
                    self._changed.wait(wait)
            finally:  # the next deadline starts a watcher again
                self._watcher = None

    def _interrupt_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, _, read = heapq.heappop(self._due)
            if read in self._running and not read.ending:
                read.why = read.why or _TIMEOUT
                with contextlib.suppress(duckdb.Error):  # a cursor a reopen has closed
                    read.cursor.interrupt()
                heapq.heappush(self._due, (now + REINTERRUPT_S, next(self._order), read))


def _end_transaction(cursor: duckdb.DuckDBPyConnection) -> None:
    """Roll back what an interrupted read may have left open on its cursor."""
    with contextlib.suppress(duckdb.Error):  # nothing was open
        cursor.execute("ROLLBACK")
