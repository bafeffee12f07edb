"""The only package that touches DuckDB: the events file, its writer and its queries."""

from __future__ import annotations

from localevents.storage._engine import EventStore, open_store, release
from localevents.storage._queries import QueryPage, count_events, query_events, query_next_page

__all__ = (
    "EventStore",
    "QueryPage",
    "count_events",
    "open_store",
    "query_events",
    "query_next_page",
    "release",
)
