"""Totals and counts by resource from the label sets' event counts, without reading every
event (blocking; run in worker threads).

Each recorded label set counts its events and keeps the first and last instant they
occurred at (see ``_label_sets``). When a filter tests nothing but its time window and one
kind of label set (:func:`~localevents.storage._sql.set_where`), the events it selects are
those of three parts, each counted its own way:

* the sets wholly inside the window: their counts, summed (one row per set, ~190k at 10M
  events, instead of 10M keys);
* the sets that straddle an end of the window: their events inside it, read from
  ``events`` by key (none when the window holds all of them, the usual case; DuckDB skips
  the scan when no key is left);
* the events past ``label_sets_through``, which no set counts yet: read one by one.

At 10M events this took a label pattern's total from ~26 ms to ~6 ms, and a count by
resource's grouping of every event's key (~110 ms) down to its ~190k label sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localevents.events._time import from_epoch_us, to_epoch_us
from localevents.storage._label_sets import LATEST_LABEL
from localevents.storage._sql import build_where, set_where

if TYPE_CHECKING:
    from datetime import datetime

    from localevents.events._filters import EventFilter
    from localevents.storage._engine import EventStore
    from localevents.storage._label_sets import KeyTables, LabelSetTable
    from localevents.storage._sql import Where

__all__ = ("SetScope", "resource_groups_by_set", "set_scope", "span_by_set")

_EPOCH_US = "epoch_us(occurred)"


class SetScope:
    """The label sets a filter selects (``where`` over ``sets``, from ``set_where``), the
    events it selects (``events_where``, from ``build_where`` with the same key tables),
    its window in epoch microseconds, and the first ``seq`` the sets may not count."""

    def __init__(
        self,
        sets: LabelSetTable,
        where: Where,
        events_where: Where,
        event_filter: EventFilter,
        through: int,
    ) -> None:
        self.sets = sets
        self.where = where
        self.events_where = events_where
        until = event_filter.occurred.until
        assert until is not None  # resolved by the caller (resolve_filter)
        self.since_us = to_epoch_us(event_filter.occurred.since)
        self.until_us = to_epoch_us(until)
        self.through = through

    def matched(self, columns: str) -> str:
        """SQL: ``columns`` of the sets the filter selects that count events."""
        sets = self.sets
        return (
            f"SELECT {columns} FROM (SELECT key AS {sets.key}, * FROM {sets.table}) "
            f"WHERE event_count > 0 AND ({self.where.sql})"
        )

    @property
    def inside(self) -> str:
        """SQL condition: the set's events all lie in the window."""
        return f"first_us >= {self.since_us:d} AND last_us <= {self.until_us:d}"

    def straddling_keys(self) -> str:
        """SQL: the keys of the selected sets with events both inside and outside the window."""
        overlaps = f"first_us <= {self.until_us:d} AND last_us >= {self.since_us:d}"
        return self.matched("key") + f" AND NOT ({self.inside}) AND {overlaps}"

    def straddling_events(self) -> str:
        """SQL condition on ``events``: selected, counted by a set that straddles the window."""
        return f"seq < {self.through:d} AND {self.sets.key} IN ({self.straddling_keys()})"

    @property
    def past(self) -> str:
        """SQL condition on ``events``: not counted by any set yet."""
        return f"seq >= {self.through:d}"


def set_scope(event_filter: EventFilter, keys: KeyTables) -> SetScope | None:
    """The scope of a filter (its ``until`` resolved) that the label sets can count, or
    None (see :func:`~localevents.storage._sql.set_where`)."""
    found = set_where(event_filter, keys)
    if found is None:
        return None
    sets, where = found
    return SetScope(sets, where, build_where(event_filter, keys=keys), event_filter, keys.through)


def span_by_set(store: EventStore, scope: SetScope) -> tuple[int, datetime | None, datetime | None]:
    """How many events the scope selects, and the first and last instants they occurred."""
    where = scope.events_where
    sql = f"""
        SELECT sum(n)::BIGINT, min(f), max(l) FROM (
            {scope.matched("event_count AS n, first_us AS f, last_us AS l")} AND {scope.inside}
            UNION ALL
            SELECT count(*), min({_EPOCH_US}), max({_EPOCH_US}) FROM events
            WHERE {scope.straddling_events()} AND ({where.sql})
            UNION ALL
            SELECT count(*), min({_EPOCH_US}), max({_EPOCH_US}) FROM events
            WHERE {scope.past} AND ({where.sql})
        )
        """
    params: list[Any] = [*scope.where.params, *scope.where.params, *where.params, *where.params]
    total, first, last = store.fetchall(sql, params)[0]
    return (
        int(total or 0),
        None if first is None else from_epoch_us(first),
        None if last is None else from_epoch_us(last),
    )


def resource_groups_by_set(scope: SetScope, display_name: str) -> tuple[str, list[object]]:
    """SQL and parameters: per primary resource id (``value``), the label of its latest
    label set (``label``), its count of selected events and their first and last instants
    in epoch microseconds (``n``, ``first``, ``last``). ``display_name``: SQL for an event's
    label from its own columns."""
    where = scope.events_where
    straddling = (
        f"SELECT resource_key AS key, count(*) AS n, min({_EPOCH_US}) AS first, "
        f"max({_EPOCH_US}) AS last FROM events WHERE {scope.straddling_events()} "
        f"AND ({where.sql}) GROUP BY resource_key"
    )
    parts = f"""
        {scope.matched("resource_id, display_name, event_count, first_us, last_us")}
            AND {scope.inside}
        UNION ALL
        SELECT s.resource_id, s.display_name, k.n, k.first, k.last
        FROM ({straddling}) AS k JOIN {scope.sets.table} AS s USING (key)
        UNION ALL
        SELECT resource_id, {display_name}, 1, {_EPOCH_US}, {_EPOCH_US} FROM events
        WHERE {scope.past} AND ({where.sql})
        """
    sql = (
        "SELECT resource_id AS value, "
        f"{LATEST_LABEL.format(name='display_name', last='last_us')} AS label, "
        "sum(event_count)::BIGINT AS n, min(first_us) AS first, max(last_us) AS last "
        f"FROM ({parts}) GROUP BY resource_id"
    )
    params = [*scope.where.params, *scope.where.params, *where.params, *where.params]
    return sql, params
