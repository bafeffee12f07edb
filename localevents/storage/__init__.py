"""The only package that touches DuckDB: the events file, its writer and its queries.

Export and import load on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localevents._lazy import lazy_exports
from localevents.storage._counts import count_events
from localevents.storage._engine import EventStore, open_store, release
from localevents.storage._queries import QueryPage, query_events, query_next_page

if TYPE_CHECKING:
    from localevents.storage._export import export_events
    from localevents.storage._import import ImportSummary, import_events

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

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "localevents.storage._export": ("export_events",),
            "localevents.storage._import": ("ImportSummary", "import_events"),
        },
    )
