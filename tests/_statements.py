"""Watching which SQL statements a store runs through ``EventStore.fetchall``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents.storage import EventStore

__all__ = ("recorded_statements",)


@contextlib.contextmanager
def recorded_statements(store: EventStore) -> Iterator[list[str]]:
    """The statements ``store.fetchall`` runs in the block, in order (each still runs)."""
    statements: list[str] = []
    fetchall = store.fetchall

    def recording(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return fetchall(sql, params)

    store.fetchall = recording  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        del store.fetchall
