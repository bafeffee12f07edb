"""The analyst's interface to an events file: views and macros over ``events``.

Ids, roles and positions come from the list columns; labels are parsed from JSON only when
a query selects them (``events_resources`` counts roles over a million events about five
times faster this way than by unnesting the parsed ``related`` array).

They hold no data, so an open re-creates them (``CREATE OR REPLACE``) unless the file has
them as this version defines them (see ``_schema``): a file always has the definitions of
the localevents that last opened it, and one a user dropped or redefined comes back.
Their names and columns are part of the schema version (docs/schema.md): renaming or
removing one is a version bump, a fix that keeps the columns is not.

Time buckets use the arithmetic of count-by (``events._counting``): integer epoch
microseconds in UTC, anchored at 2024-04-01T00:00:00Z (a Monday), so ``bucket_start`` and
``events_per`` agree with ``POST /api/events/count-by/time`` whatever the session time zone.
"""

from __future__ import annotations

from localevents.events._counting import PIVOT, TimeUnit
from localevents.events._rules import RESOURCE_NAME
from localevents.events._time import to_epoch_us

__all__ = ("ANALYST_OBJECTS", "ANALYST_SQL", "MACROS_PROBE_SQL", "VIEWS_SQL_TEXT")

_PIVOT_US = to_epoch_us(PIVOT)
_UNITS = ", ".join(unit.value for unit in TimeUnit)
_WIDTH_CASES = " ".join(f"WHEN '{unit.value}' THEN {unit.microseconds}" for unit in TimeUnit)


def _width_us(unit: str, n: str) -> str:
    """SQL for the bucket width in microseconds: ``n`` units (an error for a bad unit or a
    width under one microsecond)."""
    width = f"round({n} * CASE lower({unit}) {_WIDTH_CASES} ELSE NULL END)::BIGINT"
    return (
        f"CASE WHEN lower({unit}) NOT IN ({', '.join(repr(u.value) for u in TimeUnit)}) "
        f"THEN error('unknown time unit ' || {unit} || ' (use {_UNITS})') "
        f"WHEN {width} >= 1 THEN {width} "
        f"ELSE error('the bucket interval must be positive, got ' || {n}) END"
    )


def _floor_us(us: str, width: str) -> str:
    """SQL for the start of the bucket holding ``us`` (DuckDB's ``%`` and ``//`` truncate
    toward zero; this floors, also before the anchor)."""
    return f"({us} - ((({us} - {_PIVOT_US}) % {width}) + {width}) % {width})"


def _label(labels: str, key: str) -> str:
    return f"label_of({labels}, '{key}')"


_MACROS = f"""
CREATE OR REPLACE MACRO label_of(labels, key) AS
    json_extract_string(labels, '/' || replace(replace(key, '~', '~0'), '/', '~1'));

CREATE OR REPLACE MACRO bucket_start(ts, unit, n := 1) AS
    make_timestamptz({_floor_us("epoch_us(ts)", _width_us("unit", "n"))});

CREATE OR REPLACE MACRO events_per(unit, n := 1, pattern := '*') AS TABLE
WITH counted AS (
    SELECT {_floor_us("epoch_us(occurred)", _width_us("unit", "n"))} AS start_us,
           count(*) AS events
    FROM events
    WHERE event GLOB pattern
    GROUP BY start_us
),
buckets AS (
    SELECT unnest(range(min(start_us), max(start_us) + 1, {_width_us("unit", "n")})) AS start_us
    FROM counted
)
SELECT make_timestamptz(b.start_us) AS bucket_start,
       make_timestamptz(b.start_us + {_width_us("unit", "n")} - 1) AS bucket_end,
       coalesce(c.events, 0) AS events
FROM buckets b LEFT JOIN counted c USING (start_us)
ORDER BY b.start_us;
"""

_VIEWS = f"""
CREATE OR REPLACE VIEW events_flat AS
SELECT id, occurred, event, resource_id,
       {_label("resource", RESOURCE_NAME)} AS resource_name,
       {_label("resource", "prefect.state-name")} AS state_name,
       {_label("resource", "prefect.state-type")} AS state_type,
       resource::MAP(VARCHAR, VARCHAR) AS labels,
       related_ids, related_roles, payload, follows, received
FROM events;

CREATE OR REPLACE VIEW events_resources AS
SELECT id AS event_id, occurred, event, 0 AS position, '' AS role, resource_id,
       {_label("resource", RESOURCE_NAME)} AS resource_name,
       resource::MAP(VARCHAR, VARCHAR) AS labels
FROM events
UNION ALL
SELECT e.id, e.occurred, e.event, p.position, e.related_roles[p.position],
       e.related_ids[p.position],
       {_label("e.related -> (p.position - 1)", RESOURCE_NAME)},
       (e.related -> (p.position - 1))::MAP(VARCHAR, VARCHAR)
FROM events e, LATERAL (SELECT unnest(range(1, len(e.related_ids) + 1)) AS position) p;

CREATE OR REPLACE VIEW events_follows AS
SELECT e.id, e.occurred, e.event, e.resource_id,
       p.id AS follows_id, p.occurred AS follows_occurred, p.event AS follows_event,
       p.resource_id AS follows_resource_id,
       (epoch_us(e.occurred) - epoch_us(p.occurred)) / 1000.0 AS latency_ms
FROM events e JOIN events p ON p.id = e.follows;

CREATE OR REPLACE VIEW events_by_hour AS SELECT * FROM events_per('hour');

CREATE OR REPLACE VIEW events_by_day AS SELECT * FROM events_per('day');
"""

ANALYST_SQL = _MACROS + _VIEWS
"""Creates (or replaces) every view and macro; macros first, as views use them."""

ANALYST_OBJECTS = (
    "bucket_start",
    "events_by_day",
    "events_by_hour",
    "events_flat",
    "events_follows",
    "events_per",
    "events_resources",
    "label_of",
)
"""The names of the views and macros (docs/schema.md documents each)."""

_VIEW_NAMES = ", ".join(f"'{name}'" for name in ANALYST_OBJECTS)

VIEWS_SQL_TEXT = f"""
SELECT view_name, sql FROM duckdb_views()
WHERE database_name = current_database() AND schema_name = 'main'
  AND view_name IN ({_VIEW_NAMES})
ORDER BY view_name
"""
"""The analyst's views as the file holds them, with their definitions (8-12 ms on a
file's first open in a process, DuckDB writing each view's SQL out; ~1.5 ms later)."""

MACROS_PROBE_SQL = (
    "SELECT label_of(NULL, 'x'), bucket_start(NULL::TIMESTAMPTZ, 'hour') "
    "FROM events_per('hour') LIMIT 0"
)
"""Binds every macro and reads nothing: a ``CatalogException`` if one is missing (listing
the macros through ``duckdb_functions()`` takes ~20 ms, binding them ~5 ms)."""
