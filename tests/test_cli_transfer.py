"""The command line's export, import and sample, against a real server (one per module) and
offline on events files, with their errors and exit codes; and the sync client's export and
import."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import msgspec
import pytest
from _cli import against as run_against
from _cli import run
from _servers import clean_environ, free_port, serve

from localevents import (
    ConfigurationError,
    Event,
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    ReceivedEvent,
    temporary_settings,
)
from localevents.client import get_sync_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _servers import ServerProcess
    from click.testing import Result

pytestmark = pytest.mark.slow  # the module shares one real server

KEY = "s3cret"
ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
START = datetime(2025, 6, 1, 22, 0, tzinfo=UTC)
"""When the tests' events happened: long ago (an export covers every time) and across two
UTC days."""
DAYS = timedelta(days=2)
"""How long after START the tests' events all happened."""
_names = itertools.count()


@pytest.fixture(scope="module")
def server_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The events file of the module's server."""
    return tmp_path_factory.mktemp("transfer") / "events.duckdb"


@pytest.fixture(scope="module")
def server(server_database: Path) -> Iterator[ServerProcess]:
    """One server with an API key for the whole module; each test uses its own names."""
    with serve(server_database, "--api-key", KEY) as process:
        yield process


@pytest.fixture(scope="module")
def small_bodies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server taking request bodies of 1 MB at most (no key); each test its own names."""
    database = tmp_path_factory.mktemp("small-bodies") / "events.duckdb"
    with serve(database, env={"LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES": "1000000"}) as process:
        yield process


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server taking 5 labels per resource at most (no key); each test its own names."""
    database = tmp_path_factory.mktemp("strict") / "events.duckdb"
    with serve(database, env={"LOCALEVENTS_EVENTS_MAXIMUM_LABELS_PER_RESOURCE": "5"}) as process:
        yield process


@pytest.fixture
def prefix() -> str:
    """An event-name prefix no other test of the module uses."""
    return f"x{next(_names)}"


def against(server: ServerProcess, *args: str | Path) -> Result:
    """The CLI talking to ``server``."""
    return run_against(server, *args, key=KEY)


def made(prefix: str, n: int) -> list[Event]:
    """``n`` events named ``<prefix>.step.*``, a minute apart from START, with labels,
    related resources and payloads."""
    return [
        Event(
            event=f"{prefix}.step.{i % 2}",
            resource={ID: f"{prefix}.widget.{i % 3}", "colour": "red"},
            related=[{ID: f"{prefix}.batch.{i % 2}", ROLE: "batch"}],
            payload={"i": i, "nested": {"ok": True}},
            occurred=START + timedelta(minutes=30 * i),
        )
        for i in range(n)
    ]


def store(server: ServerProcess, events: list[Event]) -> None:
    with get_sync_client(api_url=server.url, api_key=KEY) as client:
        client.create_events(events)


def on_server(server: ServerProcess, prefix: str) -> list[ReceivedEvent]:
    """The server's events named ``<prefix>.*``, oldest first (through the SDK)."""
    everything = EventFilter(
        occurred=EventOccurredFilter(since=START - timedelta(days=1), until=START + DAYS),
        event=EventNameFilter(prefix=[f"{prefix}."]),
        order="ASC",
    )
    with get_sync_client(api_url=server.url, api_key=KEY) as client:
        return list(client.iter_events(everything))


def read_ndjson(path: Path) -> list[ReceivedEvent]:
    return [
        msgspec.json.decode(line, type=ReceivedEvent) for line in path.read_bytes().splitlines()
    ]


def write_ndjson(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in events))
    return path


def sql(query: str, database: Path | None = None) -> list[tuple[object, ...]]:
    """The rows of a DuckDB query, in memory or on ``database``."""
    with duckdb.connect(str(database) if database else ":memory:") as con:
        return con.execute(query).fetchall()


def same(events: list[ReceivedEvent]) -> list[tuple[object, ...]]:
    """What an event is, without ``received`` (which a server stamps anew on import)."""
    return [
        (e.id, e.occurred, e.event, dict(e.resource), [dict(r) for r in e.related], e.payload)
        for e in events
    ]


# -- export --------------------------------------------------------------------------------


def test_export_from_a_server_writes_the_matching_events_oldest_first(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """export --format ndjson writes the events matching the filter options, as the server
    stores them, oldest first, and says how many."""
    events = made(prefix, 6)
    store(server, events)
    destination = tmp_path / "out.ndjson"
    result = against(server, "export", destination, "-e", f"{prefix}.step.0")
    assert result.exit_code == 0, result.output
    exported = read_ndjson(destination)
    assert [e.id for e in exported] == [e.id for e in events[0::2]]
    assert same(exported) == same(on_server(server, prefix))[0::2]
    assert "exported 3 events" in result.stderr


def test_since_and_until_bound_an_export(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """--since and --until (inclusive) choose the time range of an export."""
    events = made(prefix, 6)
    store(server, events)
    destination = tmp_path / "out.ndjson"
    window = ["--since", events[1].occurred.isoformat(), "--until", events[3].occurred.isoformat()]
    result = against(server, "export", destination, "-p", f"{prefix}.", *window)
    assert result.exit_code == 0, result.output
    assert [e.id for e in read_ndjson(destination)] == [e.id for e in events[1:4]]


def test_parquet_from_a_server_is_a_folder_by_day(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """export --format parquet writes one day= folder per UTC day of the events, holding
    every matching event."""
    store(server, made(prefix, 6))  # 22:00 to 00:30: two days
    destination = tmp_path / "parquet"
    result = against(server, "export", destination, "-f", "parquet", "-p", f"{prefix}.")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in destination.iterdir()) == ["day=2025-06-01", "day=2025-06-02"]
    assert sql(f"SELECT count(*) FROM '{destination}/*/*.parquet'") == [(6,)]
    assert "exported 6 events" in result.stderr


@pytest.mark.parametrize("format", ["ndjson", "parquet"])
def test_export_then_import_gives_back_the_same_events(
    server: ServerProcess, prefix: str, tmp_path: Path, format: str
) -> None:
    """An export from a server imported into a new events file and exported again from it
    holds the very same events, received times included."""
    store(server, made(prefix, 5))
    exported, copy = tmp_path / f"export.{format}", tmp_path / "copy.duckdb"
    assert against(server, "export", exported, "-f", format, "-p", f"{prefix}.").exit_code == 0
    imported = run("import", exported, "--database", copy)
    assert imported.exit_code == 0, imported.output
    assert "read 5 events" in imported.stderr
    assert "stored 5 new" in imported.stderr
    again = tmp_path / "again.ndjson"
    assert run("export", again, "--database", copy).exit_code == 0
    assert read_ndjson(again) == on_server(server, prefix)


def test_offline_export_reads_the_events_file(tmp_path: Path) -> None:
    """Without a server, export reads the --database file, with the filter options."""
    database = tmp_path / "sample.duckdb"
    assert run("sample", database, "-n", "300").exit_code == 0
    everything, shop = tmp_path / "all.ndjson", tmp_path / "shop"
    result = run("export", everything, "--database", database)
    assert result.exit_code == 0, result.output
    assert len(read_ndjson(everything)) == 300
    assert "exported 300 events" in result.stderr
    result = run("export", shop, "-f", "parquet", "-p", "shop.", "--database", database)
    assert result.exit_code == 0, result.output
    names = sql(f"SELECT DISTINCT event FROM '{shop}/*/*.parquet'")
    assert names
    assert all(name.startswith("shop.") for (name,) in names)


@pytest.mark.parametrize("format", ["ndjson", "parquet"])
@pytest.mark.parametrize("where", ["server", "file"])
def test_an_empty_range_exports_0_events(
    server: ServerProcess, tmp_path: Path, format: str, where: str
) -> None:
    """An export that matches nothing succeeds, says "0 events", and writes an empty file
    (NDJSON) or a schema-only Parquet file."""
    destination = tmp_path / "empty"
    args = ["export", destination, "-f", format, "-e", "nothing.matches.this"]
    if where == "server":
        result = against(server, *args)
    else:
        database = tmp_path / "events.duckdb"
        assert run("sample", database, "-n", "10").exit_code == 0
        result = run(*args, "--database", database)
    assert result.exit_code == 0, result.output
    assert "exported 0 events" in result.stderr
    if format == "ndjson":
        assert destination.read_bytes() == b""
    else:
        assert len(list(destination.glob("day=*/*.parquet"))) == 1


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["exists.ndjson"], "already exists"),
        (["full", "-f", "parquet"], "already exists"),
        (["missing/out.ndjson"], "does not exist"),
        (["folder/"], "NDJSON is one file"),
    ],
)
def test_a_bad_destination_exits_2_and_touches_nothing(
    server: ServerProcess, tmp_path: Path, args: list[str], complaint: str
) -> None:
    """An existing file or non-empty folder, a missing folder, or a folder for NDJSON is
    refused with exit code 2 and a message saying why; what is there stays as it was."""
    (tmp_path / "exists.ndjson").write_text("precious\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious\n")
    destination, *options = args
    result = against(server, "export", f"{tmp_path}/{destination}", *options)
    assert result.exit_code == 2
    assert complaint in result.stderr
    assert (tmp_path / "exists.ndjson").read_text() == "precious\n"
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("command", ["export", "import"])
def test_a_bad_format_exits_2(tmp_path: Path, command: str) -> None:
    """--format accepts only ndjson and parquet."""
    source = write_ndjson(tmp_path / "in.ndjson", [])
    path = tmp_path / "out.csv" if command == "export" else source
    result = run(command, path, "--format", "csv")
    assert result.exit_code == 2
    assert "'csv' is not one of 'ndjson', 'parquet'" in result.stderr


# -- import --------------------------------------------------------------------------------


def test_import_ndjson_to_a_server_stores_each_event_once(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """import sends an NDJSON file to the server; importing it again stores no duplicate."""
    events = made(prefix, 4)
    source = write_ndjson(tmp_path / "in.ndjson", events)
    for _ in range(2):
        result = against(server, "import", source)
        assert result.exit_code == 0, result.output
        assert "sent 4 events" in result.stderr
    assert [e.id for e in on_server(server, prefix)] == [e.id for e in events]


def test_import_parquet_to_a_server(server: ServerProcess, prefix: str, tmp_path: Path) -> None:
    """A Parquet export (found to be Parquet without --format) imports into a server."""
    events = made(prefix, 4)
    database, folder = tmp_path / "events.duckdb", tmp_path / "parquet"
    source = write_ndjson(tmp_path / "in.ndjson", events)
    assert run("import", source, "--database", database).exit_code == 0
    assert run("export", folder, "-f", "parquet", "--database", database).exit_code == 0
    result = against(server, "import", folder)
    assert result.exit_code == 0, result.output
    assert "sent 4 events" in result.stderr
    assert [e.id for e in on_server(server, prefix)] == [e.id for e in events]


@pytest.mark.parametrize("where", ["server", "file"])
def test_a_bad_row_exits_1_naming_it_and_stores_nothing(
    server: ServerProcess, prefix: str, tmp_path: Path, where: str
) -> None:
    """An NDJSON line that is not a valid event stops the import with exit code 1, naming
    the file and line; none of the file's events are stored."""
    lines = [msgspec.json.encode(event) for event in made(prefix, 3)]
    no_resource_id = msgspec.json.encode(Event(event=f"{prefix}.bad", resource={ID: "r"}))
    lines.insert(2, no_resource_id.replace(f'"{ID}"'.encode(), b'"colour"'))
    source = tmp_path / "bad.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    database = tmp_path / "events.duckdb"
    result = (
        against(server, "import", source)
        if where == "server"
        else run("import", source, "--database", database)
    )
    assert result.exit_code == 1
    assert f"{source}, line 3" in result.stderr
    assert "Traceback" not in result.stderr
    if where == "server":
        assert on_server(server, prefix) == []
    else:
        assert sql("SELECT count(*) FROM events", database) == [(0,)]


def test_an_event_over_the_size_limit_stops_an_import_before_anything_is_sent(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """A line over the event size limit past the first batch is named before any batch is
    sent: the server would refuse its batch only after storing the ones before it."""
    events = made(prefix, 1002)
    events[-1] = Event(event=f"{prefix}.big", resource={ID: "r"}, payload={"b": "x" * 1_600_000})
    source = write_ndjson(tmp_path / "big.ndjson", events)
    result = against(server, "import", source)
    assert result.exit_code == 1
    assert f"{source}, line 1002: the event is" in result.stderr
    assert "over the limit of 1500000" in result.stderr
    assert on_server(server, prefix) == []


def test_an_import_of_large_events_keeps_each_request_within_the_body_limit(
    small_bodies: ServerProcess, tmp_path: Path
) -> None:
    """Batches are cut by size as well as by count: ten 300 KB events against a server
    taking 1 MB bodies go in several requests, and every event is stored."""
    events = [
        Event(event="large.one", resource={ID: f"large.{i}"}, payload={"b": "x" * 300_000})
        for i in range(10)
    ]
    source = write_ndjson(tmp_path / "large.ndjson", events)
    with (
        temporary_settings(server_maximum_body_bytes=1_000_000),
        get_sync_client(api_url=small_bodies.url) as client,
    ):
        assert client.import_events(source) == 10
        stored = list(client.iter_events(EventFilter(event=EventNameFilter(name=["large.one"]))))
    assert sorted(e.id for e in stored) == sorted(e.id for e in events)


def test_an_import_through_a_server_with_smaller_bodies_halves_its_batches(
    small_bodies: ServerProcess, tmp_path: Path
) -> None:
    """A server taking bodies smaller than this side knows (its own setting) answers 413:
    the import sends the batch again in halves until each fits, and stores every event."""
    events = [
        Event(event="halved.one", resource={ID: f"halved.{i}"}, payload={"b": "x" * 300_000})
        for i in range(10)
    ]
    source = write_ndjson(tmp_path / "large.ndjson", events)
    with get_sync_client(api_url=small_bodies.url) as client:
        assert client.import_events(source) == 10
        stored = list(client.iter_events(EventFilter(event=EventNameFilter(name=["halved.one"]))))
    assert sorted(e.id for e in stored) == sorted(e.id for e in events)


@pytest.mark.parametrize("kind", ["ndjson", "parquet"])
def test_an_event_a_stricter_server_refuses_is_named_with_what_went_in_before_it(
    strict_server: ServerProcess, tmp_path: Path, kind: str
) -> None:
    """A server whose label limit is lower than this side's refuses the batch holding line
    1200: the error names that line (or, for Parquet, the event) and says the 1000 events
    before it are stored; once the line is fixed, importing again stores the rest."""
    name = f"strict.{kind}"
    events = [
        Event(event=name, resource={ID: f"strict.{i}"}, occurred=START + timedelta(seconds=i))
        for i in range(1500)
    ]
    labelled = {ID: "strict.labelled", **{f"label.{n}": "v" for n in range(10)}}
    events[1199] = Event(event=name, resource=labelled, occurred=START + timedelta(seconds=1199.5))
    ndjson = write_ndjson(tmp_path / "events.ndjson", events)
    source = ndjson
    if kind == "parquet":  # in occurred order, as an export writes it
        run("import", ndjson, "--database", tmp_path / "offline.duckdb")
        source = tmp_path / "events.parquet"
        run("export", source, "-f", "parquet", "--database", tmp_path / "offline.duckdb")
    everything = EventFilter(
        occurred=EventOccurredFilter(since=START, until=START + DAYS),
        event=EventNameFilter(name=[name]),
    )
    result = run("import", source, "--api-url", strict_server.url)
    assert result.exit_code == 1, result.output
    where = f"line 1200 (event {events[1199].id})" if kind == "ndjson" else ""
    where = where or f"event {events[1199].id}"
    assert f"{source}, {where}: the server refused it" in result.stderr
    assert "labels per resource is 5 (at resource)" in result.stderr
    assert "the 1000 events before it went in" in result.stderr
    assert "Traceback" not in result.stderr
    with get_sync_client(api_url=strict_server.url) as client:
        assert len(list(client.iter_events(everything))) == 1000
        write_ndjson(ndjson, events[:1199] + events[1200:])
        assert run("import", ndjson, "--api-url", strict_server.url).exit_code == 0
        assert len(list(client.iter_events(everything))) == 1499


def test_a_bad_parquet_row_for_a_server_is_named(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """A Parquet file with a row lacking the resource id is refused naming that row, and
    nothing of it reaches the server."""
    source = tmp_path / "bad.parquet"
    sql(
        f"""COPY (SELECT * FROM (VALUES
            ('0197a000-0000-7000-8000-000000000001', TIMESTAMPTZ '2025-06-01 00:00:00+00',
             '{prefix}.ok', '{{"{ID}": "{prefix}.r"}}'),
            ('0197a000-0000-7000-8000-000000000002', TIMESTAMPTZ '2025-06-01 00:01:00+00',
             '{prefix}.bad', '{{"colour": "red"}}')
        ) AS t(id, occurred, event, resource)) TO '{source}' (FORMAT parquet)"""
    )
    result = against(server, "import", source)
    assert result.exit_code == 1
    assert f"{source}, row 2" in result.stderr
    assert on_server(server, prefix) == []


def imported(server: ServerProcess, where: str, source: Path, database: Path) -> Result:
    """``localevents import SOURCE`` into the module's server, or offline into ``database``."""
    if where == "server":
        return against(server, "import", source)
    return run("import", source, "--database", database)


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark Windows tools often write at the start of a text file."""


@pytest.mark.parametrize("where", ["server", "file"])
def test_an_ndjson_file_starting_with_a_utf8_bom_imports(
    server: ServerProcess, prefix: str, tmp_path: Path, where: str
) -> None:
    """An NDJSON file that a Windows tool started with a byte order mark imports like one
    without it, into a server and into an events file."""
    events = made(prefix, 3)
    source = tmp_path / "windows.ndjson"
    source.write_bytes(BOM + write_ndjson(tmp_path / "plain.ndjson", events).read_bytes())
    database = tmp_path / "events.duckdb"
    result = imported(server, where, source, database)
    assert result.exit_code == 0, result.output
    if where == "server":
        assert [e.id for e in on_server(server, prefix)] == [e.id for e in events]
    else:
        assert sql("SELECT count(*) FROM events", database) == [(3,)]


@pytest.mark.parametrize("where", ["server", "file"])
def test_a_bad_line_after_a_bom_is_named_in_the_users_file(
    server: ServerProcess, prefix: str, tmp_path: Path, where: str
) -> None:
    """Only the first line loses its byte order mark: a bad second line is still named by
    the file the user gave and its line number, and nothing is stored."""
    good = msgspec.json.encode(made(prefix, 1)[0])
    source = tmp_path / "windows.ndjson"
    source.write_bytes(BOM + good + b"\n{not json\n")
    database = tmp_path / "events.duckdb"
    result = imported(server, where, source, database)
    assert result.exit_code == 1
    assert f"Error: {source}, line 2: JSON is malformed" in result.stderr
    if where == "server":
        assert on_server(server, prefix) == []


MISMATCHED = {
    "parquet": ("in.ndjson", "is not a Parquet file (it does not start with PAR1): use -f ndjson"),
    "ndjson": ("in.parquet", "is a Parquet file: use -f parquet"),
}
"""For each -f: a file that is not in that format, and what import says about it."""


@pytest.mark.parametrize("where", ["server", "file"])
@pytest.mark.parametrize("given", list(MISMATCHED))
def test_a_format_the_file_is_not_exits_2_naming_the_file_and_the_right_one(
    server: ServerProcess, prefix: str, tmp_path: Path, where: str, given: str
) -> None:
    """`import -f parquet file.ndjson` (or the reverse) is one line naming the file and the
    -f to use, exit code 2, instead of DuckDB's multi-line error; nothing is stored."""
    name, advice = MISMATCHED[given]
    database, source = tmp_path / "events.duckdb", tmp_path / name
    write_ndjson(tmp_path / "in.ndjson", made(prefix, 2))
    sql(f"COPY (FROM read_json('{tmp_path / 'in.ndjson'}')) TO '{tmp_path / 'in.parquet'}'")
    if where == "server":
        result = against(server, "import", "-f", given, source)
    else:
        result = run("import", "-f", given, source, "--database", database)
    assert result.exit_code == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"{source} {advice}, or leave -f out" in error
    assert "LINE 1" not in result.stderr
    assert on_server(server, prefix) == []
    assert not database.exists()


def test_an_offline_import_counts_what_it_read_and_stored(tmp_path: Path) -> None:
    """Without a server, import says how many events it read and how many were new:
    importing the same file again stores none."""
    events = made("offline", 3)
    source, database = write_ndjson(tmp_path / "in.ndjson", events), tmp_path / "events.duckdb"
    first = run("import", source, "--database", database)
    assert first.exit_code == 0, first.output
    assert "read 3 events" in first.stderr
    assert "stored 3 new" in first.stderr
    second = run("import", source, "--database", database)
    assert second.exit_code == 0, second.output
    assert "stored 0 new" in second.stderr
    assert "3 already there" in second.stderr


@contextlib.contextmanager
def fifo(path: Path, data: bytes) -> Iterator[Path]:
    """A named pipe at ``path`` that a thread fills with ``data`` once it is opened, as
    ``<(zcat events.ndjson.gz)`` does: it can be read once."""
    os.mkfifo(path)

    def fill() -> None:
        with path.open("wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=fill, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        if writer.is_alive():  # never opened: open it to let the writer finish
            with contextlib.suppress(OSError), path.open("rb") as pipe:
                pipe.read()
        writer.join(5)


@pytest.mark.parametrize("where", ["file", "server"])
def test_an_import_from_a_pipe_stores_every_event(
    server: ServerProcess, prefix: str, tmp_path: Path, where: str
) -> None:
    """A pipe is read once, into a temporary file: the import read its source twice (check,
    then store), found the pipe empty the second time, stored nothing and said the events
    were "already there"."""
    events = made(prefix, 60)  # over 8 KiB: the format check's first read took a part
    data = b"".join(msgspec.json.encode(event) + b"\n" for event in events)
    database = tmp_path / "events.duckdb"
    with fifo(tmp_path / "pipe", data) as pipe:
        if where == "server":
            result = against(server, "import", pipe)
        else:
            result = run("import", pipe, "--database", database)
    assert result.exit_code == 0, result.output
    if where == "server":
        assert "sent 60 events" in result.stderr
        assert [e.id for e in on_server(server, prefix)] == [e.id for e in events]
    else:
        assert "stored 60 new" in result.stderr
        assert sql("SELECT count(*) FROM events", database) == [(60,)]


def test_an_import_from_standard_input_names_its_bad_line(tmp_path: Path) -> None:
    """``-`` reads standard input; a bad line is named as standard input's, and nothing
    is stored."""
    database = tmp_path / "events.duckdb"
    good = b"".join(msgspec.json.encode(event) + b"\n" for event in made("stdin", 3))
    result = run("import", "-", "--database", database, stdin=good)
    assert result.exit_code == 0, result.output
    assert "read 3 events from standard input: stored 3 new" in result.stderr
    bad = run("import", "-", "--database", database, stdin=good + b'{"event": "x"}\n')
    assert bad.exit_code == 1
    assert "Error: standard input, line 4: " in bad.stderr
    assert sql("SELECT count(*) FROM events", database) == [(3,)]


def test_the_import_functions_refuse_a_pipe_naming_it(tmp_path: Path) -> None:
    """``import_events`` of the store and of the SDK read their source twice: a pipe is
    refused with a line naming it, before anything is read or stored."""
    from localevents.client._transfer import check_ndjson
    from localevents.storage import import_events

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for attempt in (
        lambda: import_events(tmp_path / "events.duckdb", pipe),
        lambda: check_ndjson(pipe),
    ):
        with pytest.raises(ConfigurationError, match=r"is not a regular file .*save it to a file"):
            attempt()
    assert not (tmp_path / "events.duckdb").exists()


_SMALL_FILES = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, resource.RLIM_INFINITY))
from localevents.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("where", "format"),
    [("file", "ndjson"), ("file", "parquet"), ("server", "ndjson"), ("server", "parquet")],
)
def test_an_export_that_cannot_be_written_says_so_in_one_line(
    server: ServerProcess, prefix: str, tmp_path: Path, *, where: str, format: str
) -> None:
    """A destination that cannot take the export (here files over 2 KB refused, as a full
    disk refuses them) is one line naming it, exit 1, and nothing is left: Parquet was a
    DuckDB traceback, NDJSON blamed "the events stream"."""
    store(server, made(prefix, 40))
    database = tmp_path / "events.duckdb"
    if where == "file":
        write = run(
            "import", write_ndjson(tmp_path / "in.ndjson", made(prefix, 40)), "--database", database
        )
        assert write.exit_code == 0, write.output
        target = ["--database", str(database)]
    else:
        target = ["--api-url", server.url, "--api-key", KEY]
    destination = tmp_path / "out"
    args = [
        "export",
        str(destination),
        "-f",
        format,
        "--since",
        START.isoformat(),
        "-p",
        f"{prefix}.",
        *target,
    ]
    done = subprocess.run(
        [sys.executable, "-c", _SMALL_FILES, *args],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot write {destination}: File too large; nothing was left there"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["events.duckdb", "in.ndjson"][: 2 if where == "file" else 0]
    )


# -- sample --------------------------------------------------------------------------------


def test_sample_is_reproducible_by_seed(tmp_path: Path) -> None:
    """The same seed writes the same events (ids and times included), another seed other
    events; writing the same sample again adds none."""
    exports = {}
    for name, seed in [("a", "7"), ("b", "7"), ("c", "8")]:
        database = tmp_path / f"{name}.duckdb"
        result = run("sample", database, "--count", "200", "--seed", seed)
        assert result.exit_code == 0, result.output
        wrote, hint = result.stderr.strip().splitlines()
        assert wrote == f"wrote 200 new events to {database}"
        assert "add --since 2024-04-01 to see them" in hint  # the default start is long past
        assert run("export", tmp_path / f"{name}.ndjson", "--database", database).exit_code == 0
        exports[name] = (tmp_path / f"{name}.ndjson").read_bytes()
    assert exports["a"] == exports["b"]
    assert exports["a"] != exports["c"]
    again = run("sample", tmp_path / "a.duckdb", "--count", "200", "--seed", "7")
    assert again.exit_code == 0, again.output
    assert "wrote 0 new events" in again.stderr


def test_sample_start_and_days_place_the_events(tmp_path: Path) -> None:
    """--start and --days put every generated event in [start, start + days)."""
    database, out = tmp_path / "events.duckdb", tmp_path / "out.ndjson"
    result = run("sample", database, "-n", "100", "--start", "2026-01-05", "--days", "2")
    assert result.exit_code == 0, result.output
    assert run("export", out, "--database", database).exit_code == 0
    moments = [event.occurred for event in read_ndjson(out)]
    start = datetime(2026, 1, 5, tzinfo=UTC)
    assert len(moments) == 100
    assert all(start <= moment < start + timedelta(days=2) for moment in moments)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--days", "0"], "--days"),
        (["--count", "-1"], "--count"),
        (["--start", "someday"], "neither an ISO 8601 time"),
    ],
)
def test_bad_sample_arguments_exit_2(tmp_path: Path, args: list[str], complaint: str) -> None:
    """Bad sample options exit with 2 naming the option, and write no file."""
    database = tmp_path / "events.duckdb"
    result = run("sample", database, *args)
    assert result.exit_code == 2
    assert complaint in result.stderr
    assert not database.exists()


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "import"])
def test_an_unreachable_server_exits_1_naming_it(tmp_path: Path, command: str) -> None:
    """export and import against a server nobody listens at exit with 1, naming its URL,
    and leave no file behind."""
    url = f"http://127.0.0.1:{free_port()}/api"
    source = write_ndjson(tmp_path / "in.ndjson", made("gone", 2))
    path = tmp_path / "out.ndjson" if command == "export" else source
    result = run(command, path, "--api-url", url)
    assert result.exit_code == 1
    assert f"cannot reach the events API at {url}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["in.ndjson"]


@pytest.mark.parametrize("command", [["export", "out.ndjson"], ["import", "in.ndjson"], ["sample"]])
def test_a_file_held_by_a_server_is_a_clear_error(
    server: ServerProcess, server_database: Path, tmp_path: Path, command: list[str]
) -> None:
    """Offline, the events file of a running server exits with 1 and names the server's
    PID (export it through the server instead)."""
    write_ndjson(tmp_path / "in.ndjson", made("held", 1))
    name, *rest = command
    paths = [tmp_path / arg for arg in rest]
    if name == "sample":
        result = run(name, server_database, "-n", "1")
    else:
        result = run(name, *paths, "--database", server_database)
    assert result.exit_code == 1
    assert f"in use by PID {server.pid}" in result.stderr


# -- the sync client -----------------------------------------------------------------------


def test_the_sync_client_exports_and_imports(
    server: ServerProcess, prefix: str, tmp_path: Path
) -> None:
    """SyncEventsAPIClient.export_events downloads NDJSON or Parquet from a server and
    import_events sends an NDJSON file, here into an events file in ephemeral mode."""
    events = made(prefix, 3)
    store(server, events)
    only = EventFilter(
        occurred=EventOccurredFilter(since=START - timedelta(days=1), until=START + DAYS),
        event=EventNameFilter(prefix=[f"{prefix}."]),
        order="ASC",
    )
    lines, folder = tmp_path / "out.ndjson", tmp_path / "parquet"
    with get_sync_client(api_url=server.url, api_key=KEY) as client:
        assert client.export_events(lines, format="ndjson", filter=only) == 3
        assert client.export_events(folder, format="parquet", filter=only) == 3
    assert [e.id for e in read_ndjson(lines)] == [e.id for e in events]
    assert [p.parent.name for p in folder.glob("day=*/*.parquet")] == ["day=2025-06-01"]
    with temporary_settings(database=str(tmp_path / "copy.duckdb")), get_sync_client() as local:
        assert local.import_events(lines, batch_size=2) == 3
        copied = list(local.iter_events(only))
    assert same(copied) == same(read_ndjson(lines))
