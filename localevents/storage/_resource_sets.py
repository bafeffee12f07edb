"""The distinct label sets of primary resources, so that a label filter tests each label set
once instead of every event's JSON.

Every event stores ``resource_key``: DuckDB's 64-bit ``hash`` of its resource's JSON text.
``resource_sets`` holds one row per key: the key, the resource id and that JSON. A filter on
the primary resource's labels is tested on those rows, and events are selected by key, a
semi-join on an integer column (see ``_sql``). At 10M events with ~190k label sets, counting
the events whose name matches a pattern went from 1.1 s to ~55 ms.

The table is brought up to date lazily, by :meth:`ResourceSets.catch_up`, not on every
commit: keeping it in step per commit cost ~10 ms per 1000 events, most of a commit. It
covers the events whose rowid is below ``resource_sets_through`` (in ``localevents_meta``).
A query adds the keys of the events past that point whose own JSON matches, so its answer
never depends on how far the table reaches; a query catches the table up first when more
than :data:`CATCH_UP_AFTER` events lie past it, so that part stays small.

Rows only move to lower rowids, and only when rows are deleted (a checkpoint vacuums them),
by at most the number deleted: a deletion lowers ``resource_sets_through`` by as many, and
the events seen twice are skipped by key.

Two different label sets with one key would be mixed up. Catching up compares each key's
JSON with the JSON already recorded for it; on a difference (about one chance in 10^7 with
a million label sets) it records ``resource_sets_exact = false``, and from then on label
filters read every event's JSON, exact and as slow as before.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from localevents.storage._schema import read_meta

if TYPE_CHECKING:
    from collections.abc import Sequence

    import duckdb

    from localevents.events._filters import EventFilter

__all__ = ("CATCH_UP_AFTER", "KeyTables", "ResourceSets", "uses_resource_labels")

CATCH_UP_AFTER = 50_000
"""Events past ``resource_sets_through`` that make a label query catch the table up first
(testing 50k events' JSON costs a few milliseconds)."""

_CHUNK = 1_000_000  # events per catch-up transaction (bounds its memory)

_COLLISIONS = """
SELECT count(*) FROM (
    SELECT key FROM (
        SELECT DISTINCT resource_key AS key, resource FROM events WHERE rowid >= $1 AND rowid < $2
        UNION
        SELECT key, resource FROM resource_sets
        WHERE key IN (SELECT resource_key FROM events WHERE rowid >= $1 AND rowid < $2)
    ) GROUP BY key HAVING count(*) > 1
)
"""

_ADD_NEW = """
INSERT INTO resource_sets
SELECT resource_key, any_value(resource_id), any_value(resource) FROM events
WHERE rowid >= $1 AND rowid < $2 AND resource_key NOT IN (SELECT key FROM resource_sets)
GROUP BY resource_key
"""


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str:
    value = read_meta(con, key)
    assert value is not None, key  # written by schema version 3
    return value


def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("UPDATE localevents_meta SET value = ? WHERE key = ?", [value, key])


def uses_resource_labels(event_filter: EventFilter) -> bool:
    """Whether the filter tests the primary resource's labels (so ``resource_sets`` helps)."""
    if event_filter.resource is not None and event_filter.resource.labels:
        return True
    return any(f.labels for f in event_filter.any_resource_filters)


class KeyTables:
    """The keys that each label test of one query matches, found once and kept in a
    temporary table for the query's other statements (a query counts, then reads one page
    or more: reading ~190k label sets' JSON took ~30 ms each time). Made in the query's
    read transaction on its cursor, the tables go when it ends."""

    def __init__(self, con: duckdb.DuckDBPyConnection, through: int) -> None:
        self.through = through
        self._con = con
        self._names: dict[tuple[str, tuple[Any, ...]], str] = {}

    def table(self, sql: str, params: Sequence[Any]) -> str:
        """The name of the table holding what ``sql`` selects (made on first use)."""
        made = (sql, tuple(params))
        name = self._names.get(made)
        if name is None:
            name = f"label_keys_{len(self._names)}"
            self._con.execute(f"CREATE TEMP TABLE {name} AS {sql}", params)
            self._names[made] = name
        return name


class ResourceSets:
    """The state of one store's ``resource_sets`` (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.exact = _meta(con, "resource_sets_exact") == "true"
        """False once two label sets were found to share a key: label filters then skip
        the table."""
        self.catch_up_after = CATCH_UP_AFTER
        self.catch_ups = 0
        self._lock = threading.Lock()

    def through(self, con: duckdb.DuckDBPyConnection) -> int:
        """The first rowid that the table may not cover, in ``con``'s snapshot."""
        return int(_meta(con, "resource_sets_through"))

    def catch_up(self, con: duckdb.DuckDBPyConnection, *, after: int | None = None) -> bool:
        """Add the label sets of the events past ``resource_sets_through`` if more than
        ``after`` (default :attr:`catch_up_after`) lie past it; return :attr:`exact`.
        ``con`` is a cursor of the store; each chunk of events is one transaction,
        committed on it."""
        least = self.catch_up_after if after is None else after
        with self._lock:
            while self.exact and self._catch_up_chunk(con, least):
                least = 0
            return self.exact

    def _catch_up_chunk(self, con: duckdb.DuckDBPyConnection, least: int) -> bool:
        """Catch up one chunk; whether events remain past it."""
        con.execute("BEGIN")
        try:
            through = self.through(con)
            newest = con.execute("SELECT max(rowid) FROM events WHERE rowid >= ?", [through])
            last: int | None = newest.fetchall()[0][0]
            if last is None or last + 1 - through <= least:
                con.execute("ROLLBACK")
                return False
            end = min(last + 1, through + _CHUNK)
            collisions = con.execute(_COLLISIONS, [through, end]).fetchall()[0][0]
            if collisions:
                _set_meta(con, "resource_sets_exact", "false")
            else:
                con.execute(_ADD_NEW, [through, end])
                _set_meta(con, "resource_sets_through", str(end))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self.catch_ups += 1
        if collisions:
            self.exact = False
        return end <= last

    def delete_events(self, con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> int:
        """Delete the events matching ``where`` in one transaction on ``con`` that also
        lowers ``resource_sets_through`` by as many (later rows may move down by as many
        rowids); return how many were deleted. Every deletion of events goes through here."""
        with self._lock:
            con.execute("BEGIN")
            try:
                row = con.execute(f"DELETE FROM events WHERE {where}", params).fetchone()
                count = int(row[0]) if row else 0
                through = self.through(con)
                _set_meta(con, "resource_sets_through", str(max(0, through - count)))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return count
