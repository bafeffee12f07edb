"""Export events: newline-delimited JSON (the wire shape) or Hive-partitioned Parquet.

NDJSON is one ``ReceivedEvent`` per line, exactly the JSON the query API answers with, read
in keyset pages of :data:`EXPORT_PAGE_SIZE` (constant memory, however large the range).

Parquet is written by DuckDB's ``COPY ... PARTITION_BY`` as one folder per UTC day of
``occurred``, ``day=YYYY-MM-DD/events-0.parquet``, with columns any engine reads without
knowing localevents: ``occurred`` and ``received`` as UTC timestamps (``TIMESTAMP``,
``isAdjustedToUTC``, microseconds), ids as text, ``related_ids`` / ``related_roles`` as lists
of text, and the labels (``resource``, ``related``) and ``payload`` as JSON text. JSON text
rather than a ``MAP`` keeps the labels byte-for-byte as stored (key order included, so an
import gives back the same events), holds the nested payload that no map type can, and every
engine has JSON functions. An export that matches nothing still writes one file, with zero
rows and the full schema, at ``day=<UTC day the range ends, or today>/events-0.parquet``, so
readers need no special case. See docs/export.md.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import msgspec

from localevents._destinations import check_destination, publish
from localevents._exceptions import ConfigurationError
from localevents.events._filters import EventFilter, EventOccurredFilter
from localevents.events._time import EARLIEST, LATEST
from localevents.storage._engine import EventStore, open_store, release
from localevents.storage._queries import _page, _source, resolve_filter
from localevents.storage._rows import event_json
from localevents.storage._sql import build_where, sql_string
from localevents.storage._utf8_paths import utf8_path

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = (
    "EVERYTHING",
    "EXPORT_PAGE_SIZE",
    "PARQUET_FILE_NAME",
    "ExportFormat",
    "NdjsonChunk",
    "export_events",
    "export_filter",
    "make_scratch_folder",
    "ndjson_chunk",
    "ndjson_chunks",
    "write_parquet",
)

ExportFormat = Literal["ndjson", "parquet"]
EXPORT_PAGE_SIZE = 2000
"""Events per keyset page of an NDJSON export (and per chunk of a streamed one)."""
PARQUET_FILE_NAME = "events-0.parquet"
"""The name of the (single) file in each ``day=`` folder."""

EVERYTHING = EventFilter(
    occurred=EventOccurredFilter(since=EARLIEST, until=LATEST),
    order="ASC",
)
"""The filter of an export given none: every stored event, whenever it occurred."""

_PARQUET_COLUMNS = (
    "id::VARCHAR AS id, occurred, event, resource_id, resource::VARCHAR AS resource, "
    "related::VARCHAR AS related, related_ids, related_roles, payload::VARCHAR AS payload, "
    "follows::VARCHAR AS follows, received"
)

Key = tuple[int, str]
"""Where a keyset page ends: the last event's (occurred in epoch microseconds, id)."""


def export_filter(event_filter: EventFilter | None) -> EventFilter:
    """What an export reads: ``event_filter`` (an unset ``until`` fixed to now), oldest first;
    every event when ``None``."""
    if event_filter is None:
        return EVERYTHING
    return msgspec.structs.replace(resolve_filter(event_filter), order="ASC")


class NdjsonChunk(msgspec.Struct, frozen=True):
    """One keyset page as NDJSON lines, how many events it holds, and where the next one
    starts (``None``: this was the last)."""

    data: bytes
    count: int
    after: Key | None


def ndjson_chunk(store: EventStore, event_filter: EventFilter, after: Key | None) -> NdjsonChunk:
    """The page of an export (resolved with :func:`export_filter`) after ``after``."""
    rows = _page(store, event_filter, EXPORT_PAGE_SIZE, after)
    if not rows:
        return NdjsonChunk(b"", 0, None)
    data = "".join(f"{event_json(row)}\n" for row in rows).encode()
    last = rows[-1]
    more = len(rows) == EXPORT_PAGE_SIZE
    return NdjsonChunk(data, len(rows), (last[0], last[5]) if more else None)


def ndjson_chunks(store: EventStore, event_filter: EventFilter) -> Iterator[NdjsonChunk]:
    """Every page of an export in turn (blocking; one query per page)."""
    after: Key | None = None
    while True:
        chunk = ndjson_chunk(store, event_filter, after)
        if chunk.count:
            yield chunk
        if chunk.after is None:
            return
        after = chunk.after


def _copy(store: EventStore, select: str, params: list[object], target: str, options: str) -> int:
    sql = f"COPY ({select}) TO {sql_string(target)} (FORMAT parquet{options})"
    with store.reading() as cursor:
        try:
            rows = cursor.execute(sql, params).fetchall()
        except duckdb.IOException as exc:  # the file written, not the store: a full disk
            raise _os_error(exc) from exc
    return int(rows[0][0]) if rows else 0


def _os_error(exc: duckdb.IOException) -> OSError:
    """DuckDB's failed write as the OSError it wraps (its message embeds the errno)."""
    text = str(exc)
    found = re.search(r'"errno":"(\d+)"', text)
    if found is not None:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return OSError(next(iter(text.splitlines()), "").removeprefix("IO Error: "))


def write_parquet(store: EventStore, event_filter: EventFilter, directory: Path) -> int:
    """Write the export into ``directory`` (which must not exist yet), one ``day=`` folder
    per UTC day; return how many events it holds. ``event_filter`` is resolved already.

    One COPY per day, not one partitioned COPY: DuckDB holds a partitioned write's buffers
    in memory, which overflows the store's memory limit on a large export, while a day at a
    time stays within it (and reads only that day's row groups)."""
    where = build_where(event_filter)
    source = _source(event_filter, where)
    params = list(where.params)
    days = store.fetchall(
        f"SELECT DISTINCT strftime(occurred, '%Y-%m-%d') AS day FROM {source} ORDER BY day",
        params,
    )
    count = 0
    for (day,) in days:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        select = (
            f"SELECT {_PARQUET_COLUMNS} FROM {source} AS selected "
            "WHERE occurred >= ? AND occurred <= ? ORDER BY occurred, id"
        )
        folder = directory / f"day={day}"
        folder.mkdir(parents=True)
        # its last microsecond: the next midnight overflows on 9999-12-31
        bounds: list[object] = [start, datetime.combine(start.date(), time.max, UTC)]
        count += _copy(store, select, [*params, *bounds], str(folder / PARQUET_FILE_NAME), "")
    if count == 0:  # no rows, no day: write the schema, empty
        now = datetime.now(UTC)
        until = min(event_filter.occurred.until or now, now)
        folder = directory / f"day={until.astimezone(UTC):%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        empty = f"SELECT {_PARQUET_COLUMNS} FROM events WHERE false"
        _copy(store, empty, [], str(folder / PARQUET_FILE_NAME), "")
    return count


def _write_ndjson(store: EventStore, event_filter: EventFilter, path: Path) -> int:
    count = 0
    with path.open("wb") as sink:
        for chunk in ndjson_chunks(store, event_filter):
            sink.write(chunk.data)
            count += chunk.count
    return count


def _open(source: str | os.PathLike[str] | EventStore) -> tuple[EventStore, bool]:
    """The store to read, and whether this call opened it (and must release it)."""
    if isinstance(source, EventStore):
        return source, False
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ConfigurationError(f"there is no events file at {path}")
    return open_store(path), True


def export_events(
    source: str | os.PathLike[str] | EventStore,
    destination: str | os.PathLike[str],
    *,
    format: ExportFormat,
    filter: EventFilter | None = None,
) -> int:
    """Export the events of ``source`` (an events file, or an open store) that match
    ``filter`` (default: every event) to ``destination``; return how many were written.

    ``parquet`` makes ``destination`` a folder of ``day=YYYY-MM-DD/events-0.parquet``
    files; ``ndjson`` makes it one file of ``ReceivedEvent`` JSON lines, oldest first. The
    destination must not exist (an empty folder is fine for Parquet). A file held by another
    process raises :class:`~localevents.DatabaseInUseError`: export through its server
    (``EventsAPIClient.export_events``) instead.
    """
    if format not in ("ndjson", "parquet"):
        raise ConfigurationError(f"unknown export format {format!r}: use 'ndjson' or 'parquet'")
    target = Path(destination)
    if format == "parquet":  # DuckDB writes it
        utf8_path(str(target.absolute()), "the export folder")
    check_destination(target, folder=format == "parquet")
    event_filter = export_filter(filter)
    store, opened = _open(source)
    try:
        if format == "parquet":
            return publish(target, lambda path: write_parquet(store, event_filter, path))
        return publish(target, lambda path: _write_ndjson(store, event_filter, path))
    finally:
        if opened:
            release(store)


def make_scratch_folder() -> Path:
    """A new private folder for a server-side Parquet snapshot (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="localevents-export-"))
