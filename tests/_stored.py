"""Stored queries that tests check against ``EventFilter.includes``: a store holding given
events, and a query answered within a small DuckDB memory limit."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import msgspec

from localevents._settings import temporary_settings
from localevents.events._filters import EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.storage import open_store, query_events, release

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from localevents.storage import EventStore

__all__ = ("check_within_memory", "ids_in_file", "store_holding")


@contextlib.contextmanager
def store_holding(
    path: Path, events: Sequence[ReceivedEvent], *, covered: bool
) -> Iterator[EventStore]:
    """A store at ``path`` holding ``events``, with the label set tables caught up on them
    (``covered``) or with every event past the tables."""
    store = open_store(str(path))
    try:
        store.write_events(events)
        if covered:
            store.label_sets.catch_up(store.cursor(), after=0)
        yield store
    finally:
        release(store)


def ids_in_file(path: Path | str) -> set[str]:
    """The ids of the events stored in the events file ``path``."""
    store = open_store(str(path))
    try:
        return {row[0] for row in store.fetchall("SELECT id::VARCHAR FROM events")}
    finally:
        release(store)


def check_within_memory(path: Path, event_filter: EventFilter, limit: str) -> None:
    """Query the events file ``path`` with ``limit`` as the memory limit: the answer holds
    exactly the stored events that ``event_filter.includes`` takes, and some."""
    window = msgspec.convert({"occurred": event_filter.occurred}, EventFilter)
    with temporary_settings(database_memory_limit=limit):
        store = open_store(str(path))
        try:
            page = query_events(store, event_filter, 1000)
            every = query_events(store, window, 1000)
        finally:
            release(store)
    stored = [msgspec.json.decode(line, type=ReceivedEvent) for line in every.events]
    expected = sorted(str(e.id) for e in stored if event_filter.includes(e))
    assert expected
    assert sorted(msgspec.json.decode(line)["id"] for line in page.events) == expected
