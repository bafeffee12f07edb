"""Import events from NDJSON or Parquet exports, all or nothing, idempotent by id.

Every row is checked with the rules ingest applies (the protocol's rules on names and labels,
this process's limits, the size limit) before anything is stored: one bad row stops the import
with an :class:`~localevents.InvalidEventError` naming the file, the line (NDJSON) or row
(Parquet, counting from 1) and the problem, and nothing of it is stored. Then the rows go
through the store's own write path in batches, so an id already stored is skipped exactly as
on ingest and importing the same file twice stores nothing the second time. Each event keeps
its ``received`` time from the file (an event without one is stamped now).

The rows are read twice (check, then store), so memory stays flat however large the input.
Should storing fail part way (a full disk), re-running the import completes it: the events
already stored are skipped.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import msgspec

from localevents._exceptions import ConfigurationError, InvalidEventError
from localevents._import_files import is_parquet, ndjson_lines, not_a_file
from localevents._settings import get_settings
from localevents.events._nesting import decoded
from localevents.events._rules import event_problem, size_problem
from localevents.events._schemas import AwareDatetime
from localevents.events._time import from_epoch_us, now_utc
from localevents.storage._engine import EventStore, open_store, release
from localevents.storage._rows import (
    OUT_OF_RANGE,
    Stamp,
    compact_payload,
    encoded_row,
    payload_problem,
)
from localevents.storage._utf8_paths import utf8_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from localevents._settings import Settings
    from localevents.storage._rows import Row

__all__ = ("IMPORT_BATCH_SIZE", "ImportFormat", "ImportSummary", "import_events")

ImportFormat = Literal["ndjson", "parquet"]
IMPORT_BATCH_SIZE = 5000
"""Events per transaction when storing an import."""

_FETCH = 5000
_REQUIRED = ("id", "occurred", "event", "resource")
_JSON_COLUMNS = ("resource", "related", "payload")


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What an import did: rows read, and how many of them were new (the rest were ids
    already stored)."""

    read: int
    stored: int


class _Located(msgspec.Struct, frozen=True):
    """One row of the input as wire JSON, and how to name it in an error."""

    where: str
    line: bytes | str


# -- reading -------------------------------------------------------------------------------


def _ndjson_rows(path: Path) -> Iterator[_Located]:
    for number, line in ndjson_lines(path):
        yield _Located(f"{path}, line {number}", line)


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise ConfigurationError(f"there are no .parquet files under {path}")
    return files


def _parquet(*, as_text: bool = True) -> str:
    """DuckDB's reader of the Parquet file ``?``, numbering its rows (from 0).

    ``as_text`` reads strings that a writer kept as BINARY without the UTF8 annotation
    (Hive, Impala, some Spark and pyarrow settings) as the text they are, also inside maps
    and structs; read as BLOBs they would be cast to escaped bytes (``caf\\xC3\\xA9``).
    Such a value that is not UTF-8 fails the read (see :func:`_invalid_text`).
    """
    flag = "true" if as_text else "false"
    return f"read_parquet(?, binary_as_string = {flag}, file_row_number = true)"


def _column_types(con: duckdb.DuckDBPyConnection, file: Path, *, as_text: bool) -> dict[str, str]:
    """The DuckDB type of each column of ``file``, as :func:`_parquet` reads it."""
    describe = f"DESCRIBE SELECT * EXCLUDE (file_row_number) FROM {_parquet(as_text=as_text)}"
    try:
        described = con.execute(describe, [str(file)]).fetchall()
    except duckdb.Error as exc:
        raise _unreadable_parquet(file, exc) from None
    return {str(row[0]): str(row[1]) for row in described}


def _parquet_select(con: duckdb.DuckDBPyConnection, file: Path) -> str:
    """The query reading one file as the columns of ``event_json``, or an error naming a
    missing column. A value that cannot be cast reads as NULL and is reported with its row;
    labels or a payload kept as a map or struct (by another tool) are read as their JSON."""
    types = _column_types(con, file, as_text=True)
    missing = [name for name in _REQUIRED if name not in types]
    if missing:
        raise InvalidEventError(f"{file}: the column {missing[0]!r} is missing")

    def text(name: str, default: str = "NULL") -> str:
        if name not in types:
            return default
        value = f"TRY_CAST({name} AS VARCHAR)"
        if name in _JSON_COLUMNS and types[name] not in ("VARCHAR", "JSON"):
            value = f"to_json({name})::VARCHAR"
        return value if default == "NULL" else f"coalesce({value}, {default})"

    def instant(name: str) -> str:
        return f"epoch_us(TRY_CAST({name} AS TIMESTAMPTZ))" if name in types else "NULL"

    columns = [
        instant("occurred"),
        text("event"),
        text("resource"),
        text("related", "'[]'"),
        text("payload", "'{}'"),
        text("id"),
        text("follows"),
        instant("received"),
    ]
    return (
        f"SELECT {', '.join(columns)}, file_row_number FROM {_parquet()} ORDER BY file_row_number"
    )


def _unreadable_parquet(file: Path, exc: duckdb.Error) -> InvalidEventError:
    """One line naming ``file``: DuckDB's message runs over several, quoting its own SQL."""
    if not is_parquet(file):
        return InvalidEventError(f"{file} is not a Parquet file (it does not start with PAR1)")
    first = next(iter(str(exc).splitlines()), type(exc).__name__)
    return InvalidEventError(f"{file}: cannot read it as Parquet: {first}")


_encode = msgspec.json.Encoder().encode


def _instant(us: int) -> str:
    return _encode(from_epoch_us(us)).decode()


_NAMES = ("occurred", "event", "resource", "related", "payload", "id", "follows", "received")
_NEEDED = tuple(_NAMES.index(name) for name in _REQUIRED)


def _parquet_line(row: tuple[Any, ...], where: str) -> _Located:
    """One Parquet row as wire JSON, or an error naming the column that cannot be one."""
    values = list(row[:8])
    for index in _NEEDED:
        if values[index] is None:
            problem = f"{_NAMES[index]} is missing or cannot be read as its type"
            raise InvalidEventError(f"{where}: {problem}")
    for name in _JSON_COLUMNS:
        try:
            msgspec.json.decode(values[_NAMES.index(name)], type=msgspec.Raw)
        except (msgspec.DecodeError, TypeError) as exc:
            raise InvalidEventError(f"{where}: {name} is not valid JSON: {exc}") from None
    occurred, name, resource, related, payload, id_, follows, received = values
    fields = [
        f'"occurred":{_instant(occurred)}',
        f'"event":{_encode(name).decode()}',
        f'"resource":{resource}',
        f'"related":{related}',
        f'"payload":{payload}',
        f'"id":{_encode(id_).decode()}',
        f'"follows":{_encode(follows).decode()}',
    ]
    if received is not None:  # else the import stamps it, as ingest would
        fields.append(f'"received":{_instant(received)}')
    return _Located(where, "{" + ",".join(fields) + "}")


def _fetched(con: duckdb.DuckDBPyConnection, file: Path) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``file`` in order, a chunk at a time; a read that fails part way (a value
    that is not UTF-8 text, a damaged page) is an error naming the file."""
    try:
        cursor = con.execute(_parquet_select(con, file), [str(file)])
        while rows := cursor.fetchmany(_FETCH):
            yield rows
    except duckdb.Error as exc:
        raise _failed_read(con, file, exc) from None


def _parquet_rows(path: Path) -> Iterator[_Located]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for file in _parquet_files(path):
            for rows in _fetched(con, file):
                for row in rows:
                    yield _parquet_line(row, f"{file}, row {int(row[8]) + 1}")


def _failed_read(
    con: duckdb.DuckDBPyConnection, file: Path, exc: duckdb.Error
) -> InvalidEventError:
    """Why reading the rows of ``file`` failed: the first text of ours that is not UTF-8,
    named by its row and column where it can be, else DuckDB's own first line."""
    try:
        found = _invalid_text(con, file)
    except (duckdb.Error, InvalidEventError):  # the file cannot be read at all
        found = None
    return found if found is not None else _unreadable_parquet(file, exc)


def _invalid_text(con: duckdb.DuckDBPyConnection, file: Path) -> InvalidEventError | None:
    """The first value that is not UTF-8 in a column of ours kept as BINARY: by its row
    for a plain column (the first such row), by its column for a map or a struct."""
    types = _column_types(con, file, as_text=False)
    binary = [name for name in _NAMES if types.get(name) == "BLOB"]
    if binary and (found := _first_invalid_row(con, file, binary)) is not None:
        row, name = found
        return InvalidEventError(f"{file}, row {row}: {name} is not valid UTF-8 text")
    for name in _NAMES:
        if "BLOB" in types.get(name, "") and not _reads_as_text(con, file, name):
            return InvalidEventError(
                f"{file}: the column {name!r} holds a string that is not valid UTF-8 text"
            )
    return None


def _first_invalid_row(
    con: duckdb.DuckDBPyConnection, file: Path, names: list[str]
) -> tuple[int, str] | None:
    """The first row (from 1) where one of the BLOB columns ``names`` is not UTF-8, and
    the first such column in it."""
    invalid = [f"({name} IS NOT NULL AND TRY(decode({name})) IS NULL)" for name in names]
    found = con.execute(
        f"SELECT file_row_number, {', '.join(invalid)} FROM {_parquet(as_text=False)} "
        f"WHERE {' OR '.join(invalid)} ORDER BY file_row_number LIMIT 1",
        [str(file)],
    ).fetchone()
    if found is None:
        return None
    return int(found[0]) + 1, names[list(found[1:]).index(True)]


def _reads_as_text(con: duckdb.DuckDBPyConnection, file: Path, name: str) -> bool:
    """Whether every string in column ``name`` (a map or struct of BLOBs) is UTF-8."""
    try:
        con.execute(f"SELECT count(to_json({name})) FROM {_parquet()}", [str(file)]).fetchall()
    except duckdb.Error:
        return False
    return True


# -- checking ------------------------------------------------------------------------------


class _Imported(msgspec.Struct, kw_only=True, gc=False):
    """An event as an export holds it: the wire shape, ``received`` optional. Lean (plain
    maps, no model objects) because every row is decoded twice; the rules are checked by
    the same function ingest uses.

    The payload is kept as written, as ingest keeps it (``localevents.server._ingest``):
    decoding it into a dict would keep only the last of a repeated key, so a file would
    store other events offline than through a server, and an export of what a server
    stored would not import back as it was. Labels are decoded as ingest decodes them."""

    occurred: AwareDatetime
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = msgspec.field(default_factory=list)
    payload: msgspec.Raw = msgspec.Raw(b"{}")  # checked to be an object, made compact
    id: uuid.UUID
    follows: uuid.UUID | None = None
    received: AwareDatetime | None = None


_decoder = msgspec.json.Decoder(_Imported)


def _decoded(located: _Located) -> _Imported:
    """One row decoded, its payload a compact JSON object (one line, as the store loads
    it and the size limit counts it), or an error naming the row."""
    try:
        event = decoded(_decoder.decode, located.line)
    except msgspec.DecodeError as exc:
        raise InvalidEventError(f"{located.where}: {exc}") from None
    problem = payload_problem(event.payload)
    if problem is not None:
        raise InvalidEventError(f"{located.where}: {problem} - at `$.payload`")
    event.payload = compact_payload(event.payload)
    return event


def _row(located: _Located, settings: Settings, now: Stamp) -> Row:
    """The store's row for one input row, checked as ingest checks an event."""
    event = _decoded(located)
    problem = event_problem(event.event, event.resource, event.related, settings)
    if problem is not None:
        where, message = problem
        raise InvalidEventError(f"{located.where}: {message} (at $.{where})")
    try:
        received = now if event.received is None else Stamp.of(event.received)
        row, size = encoded_row(event, received)
    except OverflowError:
        raise InvalidEventError(f"{located.where}: {OUT_OF_RANGE}") from None
    too_big = size_problem(size, settings)
    if too_big is not None:
        raise InvalidEventError(f"{located.where}: {too_big}")
    return row


def _detect(path: Path, format: ImportFormat | None) -> ImportFormat:
    """The format of ``path``: as given (checked), else Parquet for a folder or a file
    starting with Parquet's magic bytes, NDJSON otherwise."""
    if format is not None and format not in ("ndjson", "parquet"):
        raise ConfigurationError(f"unknown import format {format!r}: use ndjson or parquet")
    if not path.exists():
        raise ConfigurationError(f"there is nothing to import at {path}")
    if (problem := not_a_file(path)) is not None:
        raise ConfigurationError(problem)
    if path.is_dir():
        if format == "ndjson":
            raise ConfigurationError(f"{path} is a folder: NDJSON is imported from a file")
        return "parquet"
    found: ImportFormat = "parquet" if is_parquet(path) else "ndjson"
    if format == "ndjson" and found == "parquet":
        raise ConfigurationError(
            f"{path} is a Parquet file, not NDJSON: import it with format='parquet' or "
            "without a format"
        )
    return format or found


def _located_rows(path: Path, format: ImportFormat) -> Iterator[_Located]:
    return _parquet_rows(path) if format == "parquet" else _ndjson_rows(path)


def _batches(path: Path, format: ImportFormat, settings: Settings) -> Iterator[list[Row]]:
    batch: list[Row] = []
    now = Stamp.of(now_utc())
    for located in _located_rows(path, format):
        batch.append(_row(located, settings, now))
        if len(batch) == IMPORT_BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def import_events(
    target: str | os.PathLike[str] | EventStore,
    source: str | os.PathLike[str],
    *,
    format: ImportFormat | None = None,
    between_batches: Callable[[], None] | None = None,
) -> ImportSummary:
    """Import an NDJSON file, a Parquet file or a folder of Parquet files (such as an
    export's ``day=`` folders) into ``target`` (an events file, created if missing, or an
    open store). ``format`` is detected when not given: a folder or a file starting with
    Parquet's magic bytes is Parquet, anything else NDJSON.

    Raises :class:`~localevents.InvalidEventError` naming the first bad row, with nothing
    stored; ids already in the store are skipped (:attr:`ImportSummary.stored` counts the
    new ones). Every row is checked before the first is stored; then they are stored
    :data:`IMPORT_BATCH_SIZE` per commit. ``between_batches``, if given, is called before
    each batch is checked and before each is stored: what it raises ends the import there
    (to stop it on a signal, say), the batches committed so far staying stored.
    """
    path = Path(source)
    kind = _detect(path, format)
    if kind == "parquet":  # DuckDB reads it
        utf8_path(str(path.absolute()), "the Parquet source")
    settings = get_settings()
    step = between_batches or _go_on
    read = 0
    for batch in _batches(path, kind, settings):  # check everything
        step()
        read += len(batch)
    store = target if isinstance(target, EventStore) else open_store(os.fspath(target))
    stored = reread = 0
    try:
        for batch in _batches(path, kind, settings):
            step()
            stored += len(store.write_rows(batch))
            reread += len(batch)
    finally:
        if not isinstance(target, EventStore):
            release(store)
    if reread != read:
        raise ConfigurationError(
            f"{path} changed while it was imported: it held {read} events when checked and "
            f"{reread} when stored ({stored} new ones were stored; importing it again skips "
            "them)"
        )
    return ImportSummary(read=read, stored=stored)


def _go_on() -> None:
    """Between batches: nothing to do."""
