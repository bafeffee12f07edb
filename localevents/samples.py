"""Sample events files: generated events (``localevents.events``) written to a store.

::

    from localevents.samples import write_sample_database

    write_sample_database("sample.duckdb", 100_000, seed=1)   # four weeks from 2024-04-01

The events are those of :func:`localevents.events.generate_events` with the same arguments,
so a file is reproducible from its seed. Each is stamped ``received`` a little after it
occurred (20-420 ms, fixed by its id), as a live store would have received it.
"""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from typing import TYPE_CHECKING

from localevents._exceptions import ConfigurationError
from localevents.events._samples import SAMPLE_SPAN, generate_events
from localevents.storage._engine import open_store, release
from localevents.storage._rows import Stamp, encoded_row

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from localevents.events import Event
    from localevents.storage._rows import Row

__all__ = ("write_sample_database",)

_BATCH = 20_000  # events per transaction: large enough for the fast write path, bounded memory


def _received_lag(event: Event) -> timedelta:
    return timedelta(microseconds=20_000 + (event.id.int >> 8) % 400_000)


def _rows(events: Iterable[Event]) -> list[Row]:
    return [encoded_row(e, Stamp.of(e.occurred + _received_lag(e)))[0] for e in events]


def write_sample_database(
    path: str | os.PathLike[str],
    count: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    span: timedelta = SAMPLE_SPAN,
) -> int:
    """Write ``count`` generated events (see ``generate_events``) to the events file at
    ``path``, creating it if needed; return how many were new.

    Events already in the file (same ids: the same seed and window written before) are
    skipped, so writing a sample twice adds nothing. The file is opened through the
    process-wide store, so this also works while this process serves it; another process
    holding it raises :class:`~localevents.DatabaseInUseError`. The file is left complete
    (its label-set tables cover every event), so a first query neither waits for them nor
    grows the file.
    """
    if count < 0:
        raise ConfigurationError(f"count must be zero or more, got {count}")
    events = generate_events(count, seed=seed, start=start, span=span)
    store = open_store(os.fspath(path))
    try:
        written = 0
        while batch := _rows(itertools.islice(events, _BATCH)):
            written += len(store.write_rows(batch))
        with store.reading() as cursor:  # complete: reading the file never changes it
            store.label_sets.catch_up(cursor, after=0)
        return written
    finally:
        release(store)
