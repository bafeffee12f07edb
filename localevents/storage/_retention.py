"""Retention: delete events older than a period, on a schedule, and give their space back.

A pass deletes every event that occurred before ``now - period`` in its own transaction, on
its own cursor, then runs ``CHECKPOINT``. Ingest goes on meanwhile: DuckDB's MVCC lets the
writer append while the DELETE runs, and in DuckDB 2.0 a CHECKPOINT proceeds while other
transactions are open (both measured; see benchmarks/retention_space.py).

DuckDB never shrinks a file on DELETE, but a checkpoint vacuums row groups holding deleted
rows: their blocks go on the free list, later appends reuse them, and free blocks at the end
of the file are truncated. So the file stays near the size of the events retained instead of
growing with every ingest/delete cycle. A checkpoint cannot vacuum rows that an open read
still sees (a long export, say); the next pass's checkpoint catches up.

One :class:`RetentionWorker` thread runs per store, shared by every app that asks for one
(:func:`start_retention` / :func:`stop_retention`, ref-counted like ``open_store``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import duckdb

from localevents.events._time import now_utc

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from localevents.storage._engine import EventStore

__all__ = ("RetentionWorker", "delete_expired", "start_retention", "stop_retention")

logger = logging.getLogger("localevents.storage")


def delete_expired(store: EventStore, before: datetime) -> int:
    """Delete every event that occurred before ``before`` and checkpoint so that the space
    is reused; return how many were deleted. Blocking: run it in a worker thread."""
    deleted = store.delete_events("occurred < ?", [before])
    if deleted:
        with store.reading() as cursor:
            cursor.execute("CHECKPOINT")
    return deleted


class RetentionWorker:
    """A thread that runs :func:`delete_expired` for ``period`` at once and then every
    ``interval`` until :meth:`stop`."""

    def __init__(self, store: EventStore, period: timedelta, interval: timedelta) -> None:
        self.store = store
        self.period = period
        self.interval = interval
        self.passes = 0
        self.deleted = 0
        self._users = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="localevents-retention", daemon=True)

    def start(self) -> None:
        """Start the thread (its first pass runs now)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, waiting for a pass in progress to finish."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> int:
        """One pass now, in the calling thread; return how many events it deleted."""
        deleted = delete_expired(self.store, now_utc() - self.period)
        self.passes += 1
        self.deleted += deleted
        if deleted:
            logger.info("retention: deleted %d events older than %s", deleted, self.period)
        return deleted

    def _run(self) -> None:
        while not self._stopping.is_set() and not self.store.closed:
            try:
                self.run_once()
            except duckdb.Error as exc:  # the next pass tries again
                logger.warning("retention pass failed: %s", exc)
            except Exception:
                logger.exception("retention pass failed")
            self._stopping.wait(self.interval.total_seconds())


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
