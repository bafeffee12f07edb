"""The physical limits of ingest on this machine: msgspec and DuckDB alone.

* :func:`plain_decoder`: msgspec decoding request bodies into plain structs of the wire
  shape, no validation: what decoding the same bytes costs at the least;
* :func:`table_rows`: each event as a tuple of the ``events`` table's columns, built
  before any timing, then :class:`RawAppender` appending those rows into a real events file
  (created by the store, so the same table and schema) with no validation, no duplicate
  check and no HTTP, one transaction per batch, by each of DuckDB's fast paths from Python:
  the appender, ``INSERT ... SELECT`` from a pandas DataFrame, and ``INSERT ... SELECT``
  from ``read_json`` over newline-delimited JSON in the in-memory file the store hands its
  own batches through (``localevents.storage._batch_file``: rewriting a file on disk cost
  about a millisecond per commit). The fastest is the raw limit.

None of this uses the store's own row encoding, so the limit stays the same whatever the
store does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec

from localevents._settings import get_settings
from localevents.storage import open_store, release
from localevents.storage._batch_file import BatchFile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from localevents import Event

__all__ = ("RAW_METHODS", "RawAppender", "plain_decoder", "plain_event_decoder", "table_rows")

_RESOURCE_ID = "prefect.resource.id"
_RESOURCE_ROLE = "prefect.resource.role"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class _PlainEvent(msgspec.Struct, gc=False):
    """The wire shape without our validation: what msgspec alone costs (the decode limit)."""

    occurred: datetime
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]
    id: uuid.UUID
    follows: uuid.UUID | None = None
    received: datetime | None = None


def plain_decoder() -> Callable[[bytes], list[_PlainEvent]]:
    """Decode a JSON array of events into plain structs."""
    return msgspec.json.Decoder(list[_PlainEvent]).decode


def plain_event_decoder() -> Callable[[bytes], _PlainEvent]:
    """Decode one event (a frame) into a plain struct."""
    return msgspec.json.Decoder(_PlainEvent).decode


_COLUMNS = (
    "id",
    "occurred",
    "event",
    "resource_id",
    "resource",
    "related",
    "related_ids",
    "related_roles",
    "payload",
    "follows",
    "received",
    "resource_key",
    "related_key",
    "seq",
)
_encode = msgspec.json.Encoder().encode


def table_rows(events: Sequence[Event], received: datetime) -> list[tuple[Any, ...]]:
    """Each event as the ``events`` table holds it, in column order (JSON columns as text)."""
    return [
        (
            event.id,
            event.occurred,
            event.event,
            event.resource[_RESOURCE_ID],
            _encode(event.resource).decode(),
            _encode(event.related).decode(),
            [r[_RESOURCE_ID] for r in event.related],
            [r[_RESOURCE_ROLE] for r in event.related],
            _encode(event.payload).decode(),
            event.follows,
            received,
            0,  # resource_key and related_key: hashes DuckDB computes in a few
            0,  # microseconds per batch
            seq,
        )
        for seq, event in enumerate(events)
    ]


_NDJSON_COLUMNS = (
    "{id: 'UUID', occurred: 'BIGINT', event: 'VARCHAR', resource_id: 'VARCHAR', "
    "resource: 'VARCHAR', related: 'VARCHAR', related_ids: 'VARCHAR[]', "
    "related_roles: 'VARCHAR[]', payload: 'VARCHAR', follows: 'UUID', received: 'BIGINT', "
    "seq: 'BIGINT'}"
)


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // _ONE_US


class _Prepared:
    """A batch made ready for one method before timing (a DataFrame, NDJSON bytes...)."""

    def __init__(self, method: str, rows: Sequence[tuple[Any, ...]]) -> None:
        self.method = method
        self.rows = rows
        self.data: Any = rows
        if method == "pandas":
            import pandas as pd  # type: ignore[import-untyped]  # no stubs in the dev group

            self.data = pd.DataFrame(list(rows), columns=list(_COLUMNS))
        elif method == "read_json":
            records = [
                dict(
                    zip(
                        (*_COLUMNS[:11], "seq"),
                        (*r[:1], _us(r[1]), *r[2:10], _us(r[10]), r[13]),
                        strict=True,
                    )
                )
                for r in rows
            ]
            self.data = msgspec.json.Encoder().encode_lines(records)


def _pandas_available() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


RAW_METHODS = ("appender", "read_json", *(("pandas",) if _pandas_available() else ()))
"""DuckDB's fast paths from Python that this environment offers."""


class RawAppender:
    """A real, empty events file (the store made its schema) on a bare DuckDB connection,
    appended to by one method, one transaction per :meth:`append`."""

    def __init__(self, path: Path, method: str) -> None:
        release(open_store(str(path)))
        self.method = method
        self._file = BatchFile()
        self._con = duckdb.connect(str(path))
        self._con.execute("SET TimeZone = 'UTC'")
        threads = get_settings().database_threads
        if threads is not None:  # as the store's own connection has it
            self._con.execute(f"SET threads = {threads}")
        self._sql = (
            "INSERT INTO events SELECT id, make_timestamptz(occurred), event, resource_id, "
            "resource::JSON, related::JSON, related_ids, related_roles, payload::JSON, "
            "follows, make_timestamptz(received), hash(resource::JSON), hash(related::JSON), seq "
            "FROM read_json(?, "
            f"format = 'newline_delimited', columns = {_NDJSON_COLUMNS})"
        )

    def prepare(self, rows: Sequence[tuple[Any, ...]]) -> _Prepared:
        """Whatever this method starts from, built from ``rows`` (untimed)."""
        return _Prepared(self.method, rows)

    def append(self, batch: _Prepared) -> None:
        """Append one prepared batch and commit."""
        con = self._con
        con.execute("BEGIN")
        if self.method == "appender":
            with con.appender("events") as appender:
                appender.append_rows(batch.data)
        elif self.method == "pandas":
            con.register("batch", batch.data)
            con.execute("INSERT INTO events SELECT * FROM batch")
            con.unregister("batch")
        else:
            self._file.write(batch.data)
            con.execute(self._sql, [self._file.path])
        con.execute("COMMIT")

    def count(self) -> int:
        """Rows in the table."""
        found = self._con.execute("SELECT count(*) FROM events").fetchone()
        return 0 if found is None else int(found[0])

    def close(self) -> None:
        """Close the connection and the batch file."""
        self._con.close()
        self._file.close()
