"""The layout of an events file, its version, and the upgrade from older versions.

``events`` is append-mostly and columnar, shaped for count-by: ``occurred`` as TIMESTAMPTZ
(events arrive roughly in time order, so row-group zone maps prune time ranges for free),
the primary ``resource_id`` and the related ids and roles as their own columns, labels and
payload as JSON, and ``resource_key`` and ``related_key``, hashes of the primary and the
related resources' JSON that ``resource_sets`` and ``related_sets`` map back to their labels
(see ``_label_sets``), and ``seq``, the order the store accepted each event in.
``localevents_meta`` records the schema version, the page-token secret and how far the
label set tables reach (a ``seq``).
See docs/schema.md.

A file's version is the number of steps of :data:`STEPS` applied to it. Opening a file
applies the missing steps in order and re-creates the analyst's views and macros, all in one
transaction: an upgrade that fails leaves the file exactly as it was. A file already set up
by this version is opened without writing anything (re-creating the views and macros took
~24 ms of every open): its page secret is there, a digest of this version's analyst SQL and
of its views as the file holds them matches the one recorded when they were created, and
its macros bind (~16 ms on a file's first open in a process). A version bump is one
more step at the end of the list; a file from a newer localevents is refused untouched.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import secrets
from typing import NamedTuple

import duckdb

from localevents._exceptions import SchemaVersionError, StorageError
from localevents.storage._views import ANALYST_SQL, MACROS_PROBE_SQL, VIEWS_SQL_TEXT

__all__ = (
    "NEXT_SEQ_KEY",
    "SCHEMA_VERSION",
    "STEPS",
    "Step",
    "ensure_schema",
    "read_meta",
    "write_meta",
)


class Step(NamedTuple):
    """One version of the layout: the SQL that turns the previous version into it."""

    version: int
    summary: str
    sql: str


def _count_sets(table: str, key: str) -> str:
    """Step 6's SQL: the count and first and last instants of the events that each label set
    of ``table`` covers (kept here, apart from ``_label_sets``, as the step ran)."""
    return f"""
        UPDATE {table} SET event_count = c.n, first_us = c.f, last_us = c.l FROM (
            SELECT {key} AS key, count(*) AS n, min(epoch_us(occurred)) AS f,
                max(epoch_us(occurred)) AS l
            FROM events
            WHERE seq < (
                SELECT value::BIGINT FROM localevents_meta WHERE key = 'label_sets_through'
            )
            GROUP BY {key}
        ) AS c
        WHERE {table}.key = c.key;
        """


STEPS: tuple[Step, ...] = (
    Step(
        1,
        "the events table and localevents_meta",
        """
        CREATE TABLE events (
            id UUID NOT NULL,
            occurred TIMESTAMPTZ NOT NULL,
            event VARCHAR NOT NULL,
            resource_id VARCHAR NOT NULL,
            resource JSON NOT NULL,
            related JSON NOT NULL,
            related_ids VARCHAR[] NOT NULL,
            related_roles VARCHAR[] NOT NULL,
            payload JSON NOT NULL,
            follows UUID,
            received TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE localevents_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
        INSERT INTO localevents_meta VALUES ('schema_version', '1');
        """,
    ),
    Step(
        2,
        "the schema history; the analyst's views and macros",
        """
        CREATE TABLE localevents_schema_history (
            version INTEGER NOT NULL,
            applied TIMESTAMPTZ NOT NULL,
            localevents VARCHAR NOT NULL
        );
        """,
    ),
    Step(
        3,
        "resource label sets: events.resource_key and the resource_sets table",
        """
        ALTER TABLE events ADD COLUMN resource_key UBIGINT;
        UPDATE events SET resource_key = hash(resource);
        CREATE TABLE resource_sets (
            key UBIGINT NOT NULL,
            resource_id VARCHAR NOT NULL,
            resource JSON NOT NULL
        );
        INSERT INTO localevents_meta VALUES
            ('resource_sets_through', '0'), ('resource_sets_exact', 'true');
        """,
    ),
    Step(
        4,
        "related label sets: events.related_key and the related_sets table",
        """
        ALTER TABLE events ADD COLUMN related_key UBIGINT;
        UPDATE events SET related_key = hash(related);
        CREATE TABLE related_sets (
            key UBIGINT NOT NULL,
            related JSON NOT NULL,
            related_ids VARCHAR[] NOT NULL,
            related_roles VARCHAR[] NOT NULL
        );
        INSERT INTO related_sets
        SELECT related_key, any_value(related), any_value(related_ids), any_value(related_roles)
        FROM events
        WHERE rowid < (
            SELECT value::BIGINT FROM localevents_meta WHERE key = 'resource_sets_through'
        )
        GROUP BY related_key;
        INSERT INTO localevents_meta
        SELECT 'label_sets_through', value FROM localevents_meta
        WHERE key = 'resource_sets_through';
        INSERT INTO localevents_meta
        SELECT 'label_sets_exact', value FROM localevents_meta WHERE key = 'resource_sets_exact';
        DELETE FROM localevents_meta WHERE key IN ('resource_sets_through', 'resource_sets_exact');
        """,
    ),
    Step(
        5,
        "resource_sets.display_name: each label set's label in counts by resource",
        """
        ALTER TABLE resource_sets ADD COLUMN display_name VARCHAR;
        UPDATE resource_sets SET display_name = coalesce(
            json_extract_string(resource, '/prefect.resource.name'),
            json_extract_string(resource, '/prefect.name'),
            resource_id
        );
        """,
    ),
    Step(
        6,
        "events.seq, and each label set's event count and first and last occurrence",
        f"""
        ALTER TABLE events ADD COLUMN seq BIGINT;
        UPDATE events SET seq = rowid;
        ALTER TABLE resource_sets ADD COLUMN event_count BIGINT DEFAULT 0;
        ALTER TABLE resource_sets ADD COLUMN first_us BIGINT;
        ALTER TABLE resource_sets ADD COLUMN last_us BIGINT;
        ALTER TABLE related_sets ADD COLUMN event_count BIGINT DEFAULT 0;
        ALTER TABLE related_sets ADD COLUMN first_us BIGINT;
        ALTER TABLE related_sets ADD COLUMN last_us BIGINT;
        {_count_sets("resource_sets", "resource_key")}
        {_count_sets("related_sets", "related_key")}
        DELETE FROM resource_sets WHERE event_count = 0;
        DELETE FROM related_sets WHERE event_count = 0;
        """,
    ),
)
"""Every version of the layout, oldest first; ``STEPS[i].version == i + 1``."""

SCHEMA_VERSION = STEPS[-1].version
"""The version this localevents writes and understands."""


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    return {str(row[0]) for row in rows}


def read_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """The value of ``key`` in ``localevents_meta`` (None when it is not there)."""
    # fetchall, not fetchone: a result not read to its end keeps its transaction open, and
    # an open transaction on a store's connection makes DuckDB refuse a CHECKPOINT that
    # follows a deletion (retention's).
    rows = con.execute("SELECT value FROM localevents_meta WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


NEXT_SEQ_KEY = "next_seq_after_deletion"
"""The ``seq`` the next event gets, as of the last deletion (absent before any)."""


def write_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    """Set ``key`` in ``localevents_meta`` (added if it is not there)."""
    con.execute("INSERT OR REPLACE INTO localevents_meta VALUES (?, ?)", [key, value])


def _where(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return f"the events file {row[0]}" if row and row[0] else "this events database"


def _found_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the open file: 0 for a file localevents never set up."""
    try:  # the usual case, an events file: one lookup (listing the tables costs ~10x more)
        text = read_meta(con, "schema_version")
    except duckdb.CatalogException:  # no localevents_meta: a new file, or not ours
        if "events" in _tables(con):
            raise StorageError(
                f"{_where(con)} has an events table but no localevents_meta table: it was "
                "not made by localevents; use another database file"
            ) from None
        return 0
    if text is None or not text.isdigit():
        raise StorageError(f"{_where(con)} records no valid schema version ({text!r})")
    return int(text)


def _refuse_newer(con: duckdb.DuckDBPyConnection, found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{_where(con)} has schema version {found}, but this localevents "
            f"({_localevents_version()}) understands versions up to {SCHEMA_VERSION}; "
            "upgrade localevents to open it",
            found=found,
            supported=SCHEMA_VERSION,
        )


def _localevents_version() -> str:
    try:
        return importlib.metadata.version("localevents")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return "unknown version"


_ANALYST_DIGEST = "analyst_digest"


def _analyst_digest(con: duckdb.DuckDBPyConnection) -> str:
    """A digest of this version's analyst SQL and of the views as the file holds them."""
    views = con.execute(VIEWS_SQL_TEXT).fetchall()
    text = ANALYST_SQL + "".join(f"\0{name}\0{sql}" for name, sql in views)
    return hashlib.sha256(text.encode()).hexdigest()


def _set_up(con: duckdb.DuckDBPyConnection, found: int) -> bool:
    """Whether the file is set up as this version would set it up (nothing to write)."""
    if found != SCHEMA_VERSION:
        return False
    meta = dict(
        con.execute(
            "SELECT key, value FROM localevents_meta WHERE key IN ('page_secret', ?)",
            [_ANALYST_DIGEST],
        ).fetchall()
    )
    if not meta.get("page_secret") or meta.get(_ANALYST_DIGEST) != _analyst_digest(con):
        return False
    try:
        con.execute(MACROS_PROBE_SQL).fetchall()
    except duckdb.Error:  # a macro dropped, or redefined with other parameters
        return False
    return True


def _upgrade(con: duckdb.DuckDBPyConnection, found: int) -> None:
    """Apply the steps after ``found``, record them, re-create the views (one transaction)."""
    applied = [step for step in STEPS if step.version > found]
    con.execute("BEGIN")
    try:
        for step in applied:
            con.execute(step.sql)
        if applied:
            con.execute(
                "UPDATE localevents_meta SET value = ? WHERE key = 'schema_version'",
                [str(SCHEMA_VERSION)],
            )
            con.executemany(
                "INSERT INTO localevents_schema_history VALUES (?, now(), ?)",
                [[step.version, _localevents_version()] for step in applied],
            )
        if read_meta(con, "page_secret") is None:
            con.execute(
                "INSERT INTO localevents_meta VALUES ('page_secret', ?)", [secrets.token_hex(32)]
            )
        con.execute(ANALYST_SQL)
        con.execute(
            "INSERT OR REPLACE INTO localevents_meta VALUES (?, ?)",
            [_ANALYST_DIGEST, _analyst_digest(con)],
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StorageError(
            f"could not set up schema version {SCHEMA_VERSION} in {_where(con)}; it stays "
            f"at version {found}, unchanged: {exc}"
        ) from exc


def ensure_schema(con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> bytes:
    """Set up a new file, upgrade an older one, or refuse a newer one (untouched); return
    the page-token secret stored in the file.

    A read-only connection cannot upgrade: an older file is then refused with what to do.
    """
    found = _found_version(con)
    _refuse_newer(con, found)
    if read_only:
        if found < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{_where(con)} has schema version {found}, older than this localevents' "
                f"{SCHEMA_VERSION}, and is open read-only; open it once read-write (for "
                "example with localevents serve) to upgrade it",
                found=found,
                supported=SCHEMA_VERSION,
            )
    elif not _set_up(con, found):
        _upgrade(con, found)
    return bytes.fromhex(read_meta(con, "page_secret") or "")
