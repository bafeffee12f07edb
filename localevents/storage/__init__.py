"""The only package that touches DuckDB: the events file, its writer and its queries."""

from __future__ import annotations

from localevents.storage._engine import EventStore, open_store, release
from localevents.storage._export import export_events
from localevents.storage._import import ImportSummary, import_events
from localevents.storage._queries import QueryPage, count_events, query_events, query_next_page

__all__ = (
    "EventStore",
    "ImportSummary",
    "QueryPage",
    "count_events",
    "export_events",
    "import_events",
    "open_store",
    "query_events",
    "query_next_page",
    "release",
)
