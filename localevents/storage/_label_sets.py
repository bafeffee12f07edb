"""The distinct label sets of primary and related resources, so that a filter on them tests
each label set once instead of every event.

Every event stores two keys, DuckDB's 64-bit ``hash`` of its JSON: ``resource_key`` of its
primary resource, ``related_key`` of its related resources (the whole list). Two tables hold
one row per key: ``resource_sets`` (the key, the resource id and the resource JSON) and
``related_sets`` (the key, the related JSON and its id and role lists), the columns the
filters read on ``events``, under the same names. A filter on the primary resource's labels,
or on related resources (ids, roles, labels), is tested on those rows, and events are
selected by key, a semi-join on an integer column (see ``_sql``). At 10M events, with ~190k
resource label sets and ~41k related sets: counting the events whose resource name matches
a pattern went from 1.1 s to ~40 ms, and those with a given related id from ~250 ms to
about as little.

Each set also counts its events, with the first and last instant they occurred at
(``event_count``, ``first_us``, ``last_us``, epoch microseconds). A query whose filter is the
time window and one of these label tests sums the counts of the sets wholly inside its
window instead of reading every event's key (``_set_counts``): a first page's total, a count
by resource.

The tables are brought up to date lazily, by :meth:`LabelSets.catch_up`, not on every
commit: keeping them in step per commit cost ~10 ms per 1000 events, most of a commit. They
cover the events whose ``seq`` (the order the store accepted them in: each commit numbers
its events after the last) is below ``label_sets_through`` (in ``localevents_meta``). A
query adds the keys of the events past that point that match on their own JSON, so its
answer never depends on how far the tables reach; a query catches them up first when more
than :data:`CATCH_UP_AFTER` events lie past them, so that part stays small.

``seq`` never changes, unlike a rowid (a checkpoint that vacuums deleted rows moves the later
rows down), so the boundary is exact and a count never counts an event twice. A deletion
takes the deleted events out of their sets' counts and recomputes those sets' first and
last instants, in its own transaction; a set left with no event goes.

Two different label sets with one key would be mixed up. Catching up compares each new
key's JSON with the JSON already recorded for it; on a difference (about one chance in 10^7
with a million sets) it records ``label_sets_exact = false``, and from then on these
filters read every event's JSON, exact and as slow as before.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from localevents.storage._schema import NEXT_SEQ_KEY, read_meta, write_meta

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    import duckdb

    from localevents.events._filters import EventFilter

__all__ = (
    "CATCH_UP_AFTER",
    "DISPLAY_NAME",
    "RELATED_SETS",
    "RESOURCE_SETS",
    "KeyTables",
    "LabelSetTable",
    "LabelSets",
    "uses_label_sets",
)

CATCH_UP_AFTER = 50_000
"""Events past ``label_sets_through`` that make a query catch the tables up first (testing
50k events' JSON costs a few milliseconds)."""

_CHUNK = 1_000_000  # events per catch-up transaction (bounds its memory)


class LabelSetTable(NamedTuple):
    """One table of label sets: its name, the key column of ``events`` it maps, the columns
    it copies (the first one is the JSON that two sets sharing a key differ in), and the
    columns it derives from those (name, SQL over the copied columns)."""

    table: str
    key: str
    columns: tuple[str, ...]
    derived: tuple[tuple[str, str], ...] = ()

    def collisions(self) -> str:
        """SQL: how many keys of the events in seq [$1, $2) name two different label sets."""
        json = self.columns[0]
        return f"""
        SELECT count(*) FROM (
            SELECT key FROM (
                SELECT DISTINCT {self.key} AS key, {json} FROM events
                WHERE seq >= $1 AND seq < $2
                UNION
                SELECT key, {json} FROM {self.table}
                WHERE key IN (SELECT {self.key} FROM events WHERE seq >= $1 AND seq < $2)
            ) GROUP BY key HAVING count(*) > 1
        )
        """

    def counts(self, where: str) -> str:
        """SQL: per key of the events matching ``where``, how many there are, and the first
        and last instants they occurred at (``key, n, f, l``)."""
        return (
            f"SELECT {self.key} AS key, count(*) AS n, min(epoch_us(occurred)) AS f, "
            f"max(epoch_us(occurred)) AS l FROM events WHERE {where} GROUP BY {self.key}"
        )

    def count_in(self) -> str:
        """SQL: add the events in seq [$1, $2) to the counts of their recorded sets."""
        return f"""
        UPDATE {self.table} SET event_count = event_count + c.n,
            first_us = least(first_us, c.f), last_us = greatest(last_us, c.l)
        FROM ({self.counts("seq >= $1 AND seq < $2")}) AS c
        WHERE {self.table}.key = c.key
        """

    def add_new(self) -> str:
        """SQL: record the label sets of the events in seq [$1, $2) not recorded yet, with
        their counts."""
        copied = ", ".join(f"any_value({column}) AS {column}" for column in self.columns)
        names = [*self.columns, *(name for name, _ in self.derived)]
        values = [*self.columns, *(sql for _, sql in self.derived)]
        return f"""
        INSERT INTO {self.table} (key, {", ".join(names)}, event_count, first_us, last_us)
        SELECT key, {", ".join(values)}, n, f, l FROM (
            SELECT {self.key} AS key, {copied}, count(*) AS n,
                min(epoch_us(occurred)) AS f, max(epoch_us(occurred)) AS l
            FROM events
            WHERE seq >= $1 AND seq < $2 AND {self.key} NOT IN (SELECT key FROM {self.table})
            GROUP BY {self.key}
        )
        """


DISPLAY_NAME = (
    "coalesce(json_extract_string(resource, '/prefect.resource.name'), "
    "json_extract_string(resource, '/prefect.name'), resource_id)"
)
"""SQL: the label of a resource in counts by resource, from the columns ``resource`` and
``resource_id``: its name, else its legacy name, else its id (SPEC B §3.6)."""

LATEST_LABEL = "arg_max({name}, ({last}, {name}))"
"""SQL template: the aggregate that picks, of rows with a label ``name`` and an instant
``last``, the label of the latest; of several at that instant, the greatest label, so that
a count by resource labels a resource the same way however its events are grouped (label
sets, events one by one) and in whatever order they were stored."""

RESOURCE_SETS = LabelSetTable(
    "resource_sets",
    "resource_key",
    ("resource", "resource_id"),
    (("display_name", DISPLAY_NAME),),
)
"""The primary resources' label sets, each with its display name (read once per label set
by a count by resource, not once per event)."""
RELATED_SETS = LabelSetTable(
    "related_sets", "related_key", ("related", "related_ids", "related_roles")
)
"""The related resources' label sets (each event's whole list)."""
_TABLES = (RESOURCE_SETS, RELATED_SETS)


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str:
    value = read_meta(con, key)
    assert value is not None, key  # written by schema version 4
    return value


def uses_label_sets(event_filter: EventFilter) -> bool:
    """Whether the filter tests the primary resource's labels or related resources (so the
    label set tables help)."""
    if event_filter.resource is not None and event_filter.resource.labels:
        return True
    if any(not f.is_empty for f in event_filter.related_filters):
        return True
    return any(not f.is_empty for f in event_filter.any_resource_filters)


class KeyTables:
    """The keys that each label set test of one query matches, found once and kept in a
    temporary table for the query's other statements (a query counts, then reads one page
    or more: reading ~190k label sets' JSON took ~30 ms each time). Made in the query's
    read transaction on its cursor, the tables go when it ends."""

    def __init__(self, con: duckdb.DuckDBPyConnection, through: int) -> None:
        self.through = through
        self._con = con
        self._names: dict[tuple[str, tuple[Any, ...]], str] = {}
        self._rows: dict[str, int] = {}

    def table(self, sql: str, params: Sequence[Any]) -> str:
        """The name of the table holding what ``sql`` selects (made on first use)."""
        made = (sql, tuple(params))
        name = self._names.get(made)
        if name is None:
            name = f"label_keys_{len(self._names)}"
            created = self._con.execute(f"CREATE TEMP TABLE {name} AS {sql}", params)
            self._rows[name] = int(created.fetchall()[0][0])
            self._names[made] = name
        return name

    def rows(self, name: str) -> int:
        """How many rows the table ``name`` (made by :meth:`table`) holds."""
        return self._rows[name]


class LabelSets:
    """The state of one store's label set tables (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.exact = _meta(con, "label_sets_exact") == "true"
        """False once two label sets were found to share a key: filters then skip the
        tables."""
        self.catch_up_after = CATCH_UP_AFTER
        self.catch_ups = 0
        self._lock = threading.Lock()
        self._through = self.through(con)  # as of the last catch-up (only they move it)

    def through(self, con: duckdb.DuckDBPyConnection) -> int:
        """The first ``seq`` that the tables may not cover, in ``con``'s snapshot."""
        return int(_meta(con, "label_sets_through"))

    def next_seq(self, con: duckdb.DuckDBPyConnection) -> int:
        """The ``seq`` for the next event stored: past every stored one, and never below
        ``label_sets_through`` or the next ``seq`` as of the last deletion (the newest
        events may have been deleted), so that no ``seq`` is given out twice: a new event
        is never taken for one the tables cover, nor for one a subscriber has had."""
        newest = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
        deleted = read_meta(con, NEXT_SEQ_KEY)
        return max(
            self.through(con),
            -1 if newest is None else int(newest) + 1,
            0 if deleted is None else int(deleted),
        )

    def catch_up(
        self, con: duckdb.DuckDBPyConnection, *, after: int | None = None, stored: int | None = None
    ) -> bool:
        """Add the label sets of the events past ``label_sets_through`` if more than
        ``after`` (default :attr:`catch_up_after`) lie past it; return :attr:`exact`.
        ``con`` is a cursor of the store; each chunk of events is one transaction,
        committed on it.

        ``stored``, the ``seq`` the next stored event will get, lets a caller that knows it
        skip the file when no more than ``after`` events can lie past the tables (no
        statement at all: that check alone was four, about 2 ms of every query).
        """
        least = self.catch_up_after if after is None else after
        if stored is not None and stored - self._through <= least:
            return self.exact
        with self._lock:
            while self.exact and self._catch_up_chunk(con, least):
                least = 0
            return self.exact

    def _catch_up_chunk(self, con: duckdb.DuckDBPyConnection, least: int) -> bool:
        """Catch up one chunk; whether events remain past it."""
        con.execute("BEGIN")
        try:
            through = self.through(con)
            newest = con.execute("SELECT max(seq) FROM events WHERE seq >= ?", [through])
            last: int | None = newest.fetchall()[0][0]
            if last is None or last + 1 - through <= least:
                con.execute("ROLLBACK")
                return False
            end = min(last + 1, through + _CHUNK)
            collided = any(
                con.execute(sets.collisions(), [through, end]).fetchall()[0][0] for sets in _TABLES
            )
            if collided:
                write_meta(con, "label_sets_exact", "false")
            else:
                for sets in _TABLES:  # counts first: the new sets are added with theirs
                    con.execute(sets.count_in(), [through, end])
                    con.execute(sets.add_new(), [through, end])
                write_meta(con, "label_sets_through", str(end))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if not collided:
            self._through = end
        self.catch_ups += 1
        if collided:
            self.exact = False
        return end <= last

    def delete_events(
        self,
        con: duckdb.DuckDBPyConnection,
        where: str,
        params: list[Any],
        committing: Callable[[int], AbstractContextManager[object]],
    ) -> int:
        """Delete the events matching ``where`` in one transaction on ``con`` that also takes
        them out of the counts of their label sets; return how many were deleted. The
        transaction commits inside ``committing(count)``. Call it through
        ``EventStore.delete_events``, which every deletion goes through."""
        with self._lock:
            con.execute("BEGIN")
            try:
                through = self.through(con)
                covered = f"seq < {through:d}"
                for sets in _TABLES:
                    con.execute(
                        f"CREATE TEMP TABLE gone_{sets.table} AS "
                        f"{sets.counts(f'({where}) AND {covered}')}",
                        params,
                    )
                row = con.execute(f"DELETE FROM events WHERE {where}", params).fetchone()
                count = int(row[0]) if row else 0
                for sets in _TABLES:
                    _uncount(con, sets, f"gone_{sets.table}", covered)
                with committing(count):
                    con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return count


def _uncount(con: duckdb.DuckDBPyConnection, sets: LabelSetTable, gone: str, covered: str) -> None:
    """Take the deleted events counted in the table ``gone`` (key, n) out of ``sets``: lower
    the counts, drop the sets left empty, and recompute the first and last instants of the
    others from the events that remain."""
    table = sets.table
    con.execute(
        f"UPDATE {table} SET event_count = event_count - g.n FROM {gone} AS g "
        f"WHERE {table}.key = g.key"
    )
    con.execute(f"DELETE FROM {table} WHERE event_count <= 0")
    remaining = sets.counts(f"{covered} AND {sets.key} IN (SELECT key FROM {gone})")
    con.execute(
        f"UPDATE {table} SET first_us = c.f, last_us = c.l FROM ({remaining}) AS c "
        f"WHERE {table}.key = c.key"
    )
    con.execute(f"DROP TABLE {gone}")
