"""Imports store what the file says: the same events offline as through a server, payloads
with repeated keys kept as written, and Parquet strings kept as BINARY read as text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pytest

from localevents import InvalidEventError, ephemeral, get_client
from localevents.storage import export_events, import_events, open_store, release
from localevents.storage._import import IMPORT_BATCH_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from localevents.storage import EventStore

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
SAME = (
    "id::VARCHAR, epoch_us(occurred), event, resource_id, resource::VARCHAR, related::VARCHAR, "
    "related_ids, related_roles, payload::VARCHAR, follows::VARCHAR"
)
"""Every column but ``received``, which a server stamps anew (and an import too, for a
file without it)."""
EVERY = f"{SAME}, epoch_us(received)"


def line(n: int, *, resource: str = f'{{"{ID}":"acme.1"}}', **fields: str) -> str:
    """An NDJSON line written by hand, so that it can repeat a key; ``fields`` are raw JSON."""
    parts = {
        "occurred": '"2026-03-01T12:00:00Z"',
        "event": '"acme.made"',
        "resource": resource,
        "id": f'"00000000-0000-0000-0000-{n:012d}"',
        "received": '"2026-03-01T12:00:01Z"',
        **fields,
    }
    return "{" + ",".join(f'"{key}":{value}' for key, value in parts.items()) + "}"


REPEATED = [
    line(1, payload='{"a":1,"a":2}'),
    line(2, payload='{"n":{"b":1,"b":[2,{"c":3,"c":4}]},"n":0}'),
    line(3, payload='{ "a" : 1 ,\t"a" : "\\u00e9\\/ x" , "f": 1.0e2 }'),
    line(4, resource=f'{{"{ID}":"acme.1","colour":"red","colour":"blue"}}'),
    line(5, resource=f'{{"{ID}":"acme.0","{ID}":"acme.2"}}'),
    line(6, related=f'[{{"{ID}":"acme.f","{ROLE}":"a","{ROLE}":"factory","x":"1","x":"2"}}]'),
]
"""Lines repeating a key: in the payload (at the top, nested, with whitespace and escapes),
in the resource's labels (even its id) and in a related resource's labels."""


def rows(database: Path, columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every event stored in ``database``, in id order."""
    store = open_store(str(database))
    try:
        return store.fetchall(f"SELECT {columns} FROM events ORDER BY id")
    finally:
        release(store)


async def through_a_server(source: Path, database: Path) -> None:
    """Import ``source`` as ``localevents import`` does for a server: HTTP ingest."""
    async with ephemeral(database=str(database)), get_client() as client:
        await client.import_events(source)


async def test_an_ndjson_file_stores_the_same_events_offline_and_through_a_server(
    tmp_path: Path,
) -> None:
    """Repeated keys: a payload keeps every one as written, labels keep the last, on both
    paths."""
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(REPEATED) + "\n")

    import_events(tmp_path / "offline.duckdb", source)
    await through_a_server(source, tmp_path / "served.duckdb")

    offline = rows(tmp_path / "offline.duckdb", SAME)
    assert offline == rows(tmp_path / "served.duckdb", SAME)
    payloads = rows(tmp_path / "offline.duckdb", "payload::VARCHAR")
    assert payloads[:2] == [('{"a":1,"a":2}',), ('{"n":{"b":1,"b":[2,{"c":3,"c":4}]},"n":0}',)]
    labels = rows(tmp_path / "offline.duckdb", "resource_id, resource->>'colour', related_roles")
    assert labels[3:] == [
        ("acme.1", "blue", []),
        ("acme.2", None, []),
        ("acme.1", None, ["factory"]),
    ]


@pytest.mark.parametrize("format", ["ndjson", "parquet"])
async def test_an_export_of_repeated_payload_keys_imports_back_byte_for_byte(
    tmp_path: Path, format: str
) -> None:
    """What a server stored exports and imports offline into the very same rows, and the
    copy exports the same NDJSON again."""
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(REPEATED) + "\n")
    served = tmp_path / "served.duckdb"
    await through_a_server(source, served)
    export_events(served, tmp_path / "export", format=format)  # type: ignore[arg-type]

    import_events(tmp_path / "copy.duckdb", tmp_path / "export")

    assert rows(tmp_path / "copy.duckdb", EVERY) == rows(served, EVERY)
    export_events(served, tmp_path / "first.ndjson", format="ndjson")
    export_events(tmp_path / "copy.duckdb", tmp_path / "again.ndjson", format="ndjson")
    assert (tmp_path / "again.ndjson").read_bytes() == (tmp_path / "first.ndjson").read_bytes()


@pytest.mark.parametrize(("payload", "kind"), [("[1]", "array"), ('"x"', "str"), ("null", "null")])
def test_a_payload_that_is_not_an_object_is_named(
    store: EventStore, tmp_path: Path, payload: str, kind: str
) -> None:
    """A payload kept as written is still refused unless it is a JSON object."""
    source = tmp_path / "in.ndjson"
    source.write_text(line(1) + "\n" + line(2, payload=payload) + "\n")

    with pytest.raises(InvalidEventError) as caught:
        import_events(store, source)

    expected = f"{source}, line 2: Expected `object`, got `{kind}` - at `$.payload`"
    assert str(caught.value) == expected
    assert store.fetchall("SELECT count(*) FROM events") == [(0,)]


# -- Parquet strings kept as BINARY --------------------------------------------------------


def sql_value(item: Any, *, binary: bool) -> str:
    """``item`` as a DuckDB literal: a dict as a MAP, bytes as a BLOB, text as a BLOB of its
    UTF-8 when ``binary``, else as VARCHAR."""
    if isinstance(item, dict):
        entries = [
            f"{sql_value(k, binary=binary)}: {sql_value(v, binary=binary)}" for k, v in item.items()
        ]
        return f"MAP {{{', '.join(entries)}}}"
    if isinstance(item, bytes):
        return "'" + "".join(f"\\x{byte:02X}" for byte in item) + "'::BLOB"
    quoted = "'" + item.replace("'", "''") + "'"
    return f"encode({quoted})" if binary else quoted


def duckdb_file(path: Path, rows: list[dict[str, Any]], *, binary: bool) -> None:
    """``rows`` as Parquet written by DuckDB: strings as BLOB (BINARY without the UTF8
    annotation) when ``binary``, else as VARCHAR."""
    selects = [
        "SELECT TIMESTAMPTZ '2026-03-01 12:00:00+00' AS occurred, "
        + ", ".join(f"{sql_value(item, binary=binary)} AS {name}" for name, item in row.items())
        for row in rows
    ]
    with duckdb.connect() as con:
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{path}' (FORMAT parquet)")


def pyarrow_file(path: Path, rows: list[dict[str, Any]], *, binary: bool) -> None:
    """``rows`` as Parquet written by pyarrow, strings as ``pa.binary()`` when ``binary``."""
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    text = pa.binary() if binary else pa.string()

    def cell(item: Any) -> Any:
        if isinstance(item, dict):
            return [(cell(key), cell(value)) for key, value in item.items()]
        return item.encode() if binary else item

    columns = {"occurred": pa.array([datetime(2026, 3, 1, 12, tzinfo=UTC)] * len(rows))}
    for name, first in rows[0].items():
        kind = pa.map_(text, text) if isinstance(first, dict) else text
        columns[name] = pa.array([cell(row[name]) for row in rows], type=kind)
    parquet.write_table(pa.table(columns), path)


WRITERS = {"duckdb": duckdb_file, "pyarrow": pyarrow_file}
TEXT = [
    {
        "id": "00000000-0000-0000-0000-000000000001",
        "event": "café.made",
        "resource": json.dumps({ID: "acme.é", "name": "wïdget «1»"}, ensure_ascii=False),
        "related": json.dumps([{ID: "acme.ü", ROLE: "tag"}], ensure_ascii=False),
        "payload": '{"text":"naïve ☃","a":1,"a":2}',
        "follows": "00000000-0000-0000-0000-000000000009",
    },
    {
        "id": "00000000-0000-0000-0000-000000000002",
        "event": "日本.made",
        "resource": json.dumps({ID: "acme.ß", "name": "rød"}, ensure_ascii=False),
        "related": "[]",
        "payload": "{}",
        "follows": "00000000-0000-0000-0000-000000000001",
    },
]
"""Non-ASCII text in every string column."""


def with_labels(rows: list[dict[str, Any]], labels: str) -> list[dict[str, Any]]:
    """``rows`` with their resources as JSON text, or as a map (as Spark writes them)."""
    if labels == "json":
        return rows
    return [{**row, "resource": json.loads(row["resource"])} for row in rows]


@pytest.mark.parametrize("labels", ["json", "map"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_parquet_strings_kept_as_binary_import_as_the_same_text(
    tmp_path: Path, writer: str, labels: str
) -> None:
    """BINARY columns without the UTF8 annotation store what the same file with string
    columns stores: ``é`` stays ``é``, not ``\\xC3\\xA9``."""
    write: Callable[..., None] = WRITERS[writer]
    write(tmp_path / "binary.parquet", with_labels(TEXT, labels), binary=True)
    write(tmp_path / "text.parquet", with_labels(TEXT, labels), binary=False)

    import_events(tmp_path / "binary.duckdb", tmp_path / "binary.parquet")
    import_events(tmp_path / "text.duckdb", tmp_path / "text.parquet")

    assert rows(tmp_path / "binary.duckdb", SAME) == rows(tmp_path / "text.duckdb", SAME)
    names = rows(tmp_path / "binary.duckdb", "event, resource_id, resource->>'name', payload")
    assert names == [
        ("café.made", "acme.é", "wïdget «1»", '{"text":"naïve ☃","a":1,"a":2}'),
        ("日本.made", "acme.ß", "rød", "{}"),
    ]


@pytest.mark.parametrize(
    ("column", "bad", "problem"),
    [
        ("payload", b'{"k":"\xff"}', ", row 2: payload is not valid UTF-8 text"),
        ("event", b"caf\xe9.made", ", row 2: event is not valid UTF-8 text"),
        (
            "resource",
            {ID: b"acme.\xc3"},
            ": the column 'resource' holds a string that is not valid UTF-8 text",
        ),
    ],
)
def test_a_binary_string_that_is_not_utf8_is_refused_naming_it(
    tmp_path: Path, column: str, bad: Any, problem: str
) -> None:
    """Bytes that are no UTF-8 text stop the import naming the file, the column and (but
    inside a map) the row; nothing is stored."""
    good = with_labels(TEXT, "map" if column == "resource" else "json")
    source = tmp_path / "bad.parquet"
    duckdb_file(source, [good[0], {**good[1], column: bad}], binary=True)
    target = tmp_path / "copy.duckdb"

    with pytest.raises(InvalidEventError) as caught:
        import_events(target, source)

    assert str(caught.value) == f"{source}{problem}"
    assert not target.exists()


async def offline(source: Path, database: Path) -> None:
    """Import ``source`` into the events file ``database``, as ``localevents import`` does
    without a server."""
    import_events(database, source)


IMPORTS = {"offline": offline, "server": through_a_server}


@pytest.mark.parametrize("where", list(IMPORTS))
async def test_json_nested_too_deeply_is_named_as_unreadable(tmp_path: Path, where: str) -> None:
    """A payload nested 100,000 levels deep (past the decoder's recursion) is refused naming
    its line, as a request body holding it is, rather than ending the import with a
    RecursionError; nothing is stored."""
    deep = "[" * 100_000 + "]" * 100_000
    source = tmp_path / "deep.ndjson"
    source.write_text(line(1) + "\n" + line(2, payload=f'{{"x":{deep}}}') + "\n")
    database = tmp_path / "events.duckdb"

    with pytest.raises(InvalidEventError, match=f"^{source}, line 2: .*nested too deeply"):
        await IMPORTS[where](source, database)

    assert not database.exists() or rows(database, "id") == []


@pytest.mark.parametrize("where", list(IMPORTS))
async def test_a_line_that_is_not_utf8_is_named_as_unreadable(tmp_path: Path, where: str) -> None:
    """A line whose event name holds a byte that is not UTF-8 is refused naming its line, as
    JSON that cannot be read (it ended the import with a UnicodeDecodeError's traceback);
    nothing is stored."""
    source = tmp_path / "latin1.ndjson"
    source.write_bytes(
        line(1).encode() + b"\n" + line(2, event='"caf\xe9"').encode("latin-1") + b"\n"
    )
    database = tmp_path / "events.duckdb"

    with pytest.raises(
        InvalidEventError, match=rf"^{source}, line 2: .*invalid UTF-8 \(byte \d+\)"
    ):
        await IMPORTS[where](source, database)

    assert not database.exists() or rows(database, "id") == []


@pytest.mark.parametrize("where", list(IMPORTS))
async def test_a_payload_that_is_not_utf8_is_found_before_anything_is_stored(
    tmp_path: Path, where: str
) -> None:
    """A payload holding Latin-1 bytes, after a whole batch of good lines, is refused naming
    its line before anything is stored (the payload is kept raw, unread: DuckDB refused it
    at the commit of its batch, after the batches before it were stored, naming a
    temporary file)."""
    good = [line(n) for n in range(1, IMPORT_BATCH_SIZE + 2)]
    bad = line(IMPORT_BATCH_SIZE + 2, payload='{"note":"caf\xe9"}').encode("latin-1")
    source = tmp_path / "latin1.ndjson"
    source.write_bytes("\n".join(good).encode() + b"\n" + bad + b"\n")
    database = tmp_path / "events.duckdb"

    with pytest.raises(
        InvalidEventError,
        match=rf"^{source}, line {IMPORT_BATCH_SIZE + 2}: JSON is malformed: invalid UTF-8 "
        r"\(byte \d+",
    ):
        await IMPORTS[where](source, database)

    assert not database.exists() or rows(database, "id") == []


class _Enough(Exception):
    """Raised by a ``between_batches`` to end an import."""


def test_an_import_ended_between_batches_keeps_what_it_committed(tmp_path: Path) -> None:
    """``between_batches`` is called before each batch is checked and before each is
    stored; what it raises ends the import there, the batches committed before it stored
    (and stored once: importing again completes it)."""
    count = 2 * IMPORT_BATCH_SIZE + 10  # three batches
    source = tmp_path / "events.ndjson"
    source.write_text("\n".join(line(n) for n in range(1, count + 1)) + "\n")
    database = tmp_path / "events.duckdb"
    calls = []

    def second_store_step() -> None:
        calls.append(len(calls))
        if len(calls) == 5:  # three checked, one stored: before the second is stored
            raise _Enough

    with pytest.raises(_Enough):
        import_events(database, source, between_batches=second_store_step)
    assert len(rows(database, "id")) == IMPORT_BATCH_SIZE
    assert import_events(database, source).stored == count - IMPORT_BATCH_SIZE
    assert len(rows(database, "id")) == count
