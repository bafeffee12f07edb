"""Retention: delete events older than a period, on a schedule, and give their space back.

A pass deletes every event that occurred before ``now - period`` in its own transaction, on
its own cursor, then runs ``CHECKPOINT``. Ingest goes on meanwhile: DuckDB's MVCC lets the
writer append while the DELETE and the CHECKPOINT run (measured; see
benchmarks/retention_space.py).

DuckDB never shrinks a file on DELETE, but a checkpoint vacuums row groups holding deleted
rows: their blocks go on the free list, later appends reuse them, and free blocks at the end
of the file are truncated. So the file stays near the size of the events retained instead of
growing with every ingest/delete cycle.

After a deletion, DuckDB refuses a CHECKPOINT while another transaction is open (a query or
an export still reading, a subscriber's backfill). The worker then owes the checkpoint and
tries again every :data:`CHECKPOINT_RETRY` seconds until it runs, instead of leaving the
space to the next pass (which deletes nothing more, so would not checkpoint at all).

One :class:`RetentionWorker` thread runs per store, shared by every app that asks for one
(:func:`start_retention` / :func:`stop_retention`, ref-counted like ``open_store``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import duckdb

from localevents._settings import spoken_duration
from localevents.events._time import ago
from localevents.storage._exit import stop_at_exit

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from localevents.storage._engine import EventStore

__all__ = (
    "CHECKPOINT_RETRY",
    "RetentionWorker",
    "checkpoint",
    "delete_expired",
    "start_retention",
    "stop_retention",
)

logger = logging.getLogger("localevents.storage")


_REFUSED = "Cannot CHECKPOINT"  # DuckDB's words when another transaction is open
CHECKPOINT_RETRY = 10.0
"""Seconds between attempts at a checkpoint that DuckDB refused (a transaction was open)."""


def delete_expired(store: EventStore, before: datetime) -> int:
    """Delete every event that occurred before ``before`` and checkpoint (see
    :func:`checkpoint`) so that the space is reused; return how many were deleted.
    Blocking: run it in a worker thread."""
    deleted = _delete_before(store, before)
    if deleted and not checkpoint(store):
        logger.warning(
            "retention: the checkpoint that frees the deleted events' space was refused: "
            "a transaction is open (a query or an export still reading)"
        )
    return deleted


def _delete_before(store: EventStore, before: datetime) -> int:
    return store.delete_events("occurred < ?", [before])


def checkpoint(store: EventStore) -> bool:
    """Fold the write-ahead log into the file, vacuuming deleted rows; ``False`` when DuckDB
    refuses because another transaction is open (try again once it has ended). Any other
    failure is raised."""
    with store.reading() as cursor:
        try:
            cursor.execute("CHECKPOINT")
        except duckdb.TransactionException as exc:
            if _REFUSED not in str(exc):
                raise
            return False
    return True


class RetentionWorker:
    """A thread that runs a pass (:meth:`run_once`) for ``period`` at once and then every
    ``interval`` until :meth:`stop`, and retries a checkpoint that was refused every
    :data:`CHECKPOINT_RETRY` seconds."""

    def __init__(self, store: EventStore, period: timedelta, interval: timedelta) -> None:
        self.store = store
        self.period = period
        self.interval = interval
        self.passes = 0
        self.deleted = 0
        self.checkpoint_owed = False
        """Events were deleted and no checkpoint has run since (DuckDB refused it)."""
        self._users = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="localevents-retention", daemon=True)

    def start(self) -> None:
        """Start the thread (its first pass runs now)."""
        logger.info(
            "retention: deleting events that occurred over %s ago, now and every %s",
            spoken_duration(self.period),
            spoken_duration(self.interval),
        )
        stop_at_exit(self)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, waiting for a pass in progress to finish."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> int:
        """One pass now, in the calling thread; return how many events it deleted."""
        deleted = _delete_before(self.store, ago(self.period))
        self.passes += 1
        self.deleted += deleted
        if deleted:
            logger.info(
                "retention: deleted %d events older than %s", deleted, spoken_duration(self.period)
            )
        if deleted or self.checkpoint_owed:
            self._checkpoint()
        return deleted

    def _checkpoint(self) -> None:
        if checkpoint(self.store):
            if self.checkpoint_owed:
                logger.info("retention: the checkpoint ran; the deleted events' space is free")
            self.checkpoint_owed = False
        elif not self.checkpoint_owed:  # said once, not at every retry
            self.checkpoint_owed = True
            logger.warning(
                "retention: the checkpoint that frees the deleted events' space waits for "
                "open transactions (queries, exports) to end; retrying every %g s",
                CHECKPOINT_RETRY,
            )

    def _run(self) -> None:
        next_pass = time.monotonic()
        while not self._stopping.is_set() and not self.store.closed:
            try:
                if time.monotonic() >= next_pass:
                    next_pass = time.monotonic() + self.interval.total_seconds()
                    self.run_once()
                elif self.checkpoint_owed:
                    self._checkpoint()
            except duckdb.Error as exc:  # the next pass tries again
                logger.warning("retention pass failed: %s", exc)
            except Exception:
                logger.exception("retention pass failed")
            wait = next_pass - time.monotonic()
            if self.checkpoint_owed:
                wait = min(wait, CHECKPOINT_RETRY)
            self._stopping.wait(max(wait, 0.0))


_lock = threading.Lock()
_workers: dict[int, RetentionWorker] = {}


def start_retention(store: EventStore, period: timedelta, interval: timedelta) -> RetentionWorker:
    """The retention worker of ``store``, started on first use; pair with
    :func:`stop_retention`. Later callers share the first one's period and interval."""
    with _lock:
        worker = _workers.get(id(store))
        if worker is None:
            worker = RetentionWorker(store, period, interval)
            _workers[id(store)] = worker
            worker.start()
        worker._users += 1
        return worker


def stop_retention(worker: RetentionWorker) -> None:
    """Give back a worker from :func:`start_retention`; the last one stops it."""
    with _lock:
        worker._users -= 1
        if worker._users > 0:
            return
        _workers.pop(id(worker.store), None)
    worker.stop()
