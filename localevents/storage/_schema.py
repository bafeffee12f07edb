"""The tables of an events file, created (or checked) when the file is opened.

``events`` is append-mostly and columnar, shaped for count-by: ``occurred`` as TIMESTAMPTZ
(events arrive roughly in time order, so row-group zone maps prune time ranges for free),
the primary ``resource_id`` and the related ids and roles as their own columns, labels and
payload as JSON. ``localevents_meta`` records the schema version and the page-token secret.
See docs/schema.md.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from localevents._exceptions import StorageError

if TYPE_CHECKING:
    import duckdb

__all__ = ("SCHEMA_VERSION", "ensure_schema")

SCHEMA_VERSION = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS events (
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
CREATE TABLE IF NOT EXISTS localevents_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"""

_VIEWS = """
CREATE OR REPLACE VIEW events_resources AS
SELECT e.id AS event_id, e.occurred, e.event, e.resource_id, '' AS role, e.resource AS labels
FROM events e
UNION ALL
SELECT e.id, e.occurred, e.event, r.rid, r.rrole, r.labels
FROM events e,
     LATERAL (SELECT unnest(e.related_ids) AS rid, unnest(e.related_roles) AS rrole,
                     unnest(json_extract(e.related, '$[*]')) AS labels) r;
"""


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = con.execute("SELECT value FROM localevents_meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def ensure_schema(con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> bytes:
    """Create the tables on a new file, check the version of an existing one, and return the
    page-token secret stored in the file."""
    if not read_only:
        con.execute("BEGIN")
        con.execute(_TABLES)
        if _meta(con, "schema_version") is None:
            con.execute(
                "INSERT INTO localevents_meta VALUES ('schema_version', ?), ('page_secret', ?)",
                [str(SCHEMA_VERSION), secrets.token_hex(32)],
            )
        con.execute(_VIEWS)
        con.execute("COMMIT")
    version = int(_meta(con, "schema_version") or 0)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"this events file has schema version {version}, newer than this localevents "
            f"understands ({SCHEMA_VERSION}); upgrade localevents to open it"
        )
    return bytes.fromhex(_meta(con, "page_secret") or "")
