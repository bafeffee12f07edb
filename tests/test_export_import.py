"""Export (NDJSON, Hive-partitioned Parquet) and import: round trips, readers, bad input.

Offline exports and imports run on real events files; the API route runs in-process and on a
real uvicorn server that keeps ingesting while it exports.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import duckdb
import httpx
import msgspec
import pytest

from localevents import (
    ConfigurationError,
    DatabaseInUseError,
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    InvalidEventError,
    InvalidRequestError,
    ReceivedEvent,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents.events._time import to_epoch_us
from localevents.server import create_app
from localevents.storage import export_events, import_events, open_store, query_events, release
from tests._servers import serve

if TYPE_CHECKING:
    from pathlib import Path

    from localevents.storage import EventStore

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
START = datetime(2026, 2, 27, 20, tzinfo=UTC)
ALL_TIME = EventFilter(
    occurred=EventOccurredFilter(
        since=datetime(2000, 1, 1, tzinfo=UTC), until=datetime(2100, 1, 1, tzinfo=UTC)
    )
)
COLUMNS = (
    "id::VARCHAR, epoch_us(occurred), event, resource_id, resource::VARCHAR, related::VARCHAR, "
    "related_ids, related_roles, payload::VARCHAR, follows::VARCHAR, epoch_us(received)"
)


def make_events(count: int, start: datetime = START, step: timedelta = timedelta(hours=1)):
    """Varied events: labels in no particular order, related resources in roles, nested
    payloads, non-ASCII text, some following the one before."""
    events: list[ReceivedEvent] = []
    for i in range(count):
        events.append(
            ReceivedEvent(
                occurred=start + i * step,
                event=f"acme.widget.{('made', 'shipped', 'lost')[i % 3]}",
                resource={  # type: ignore[arg-type]
                    "zeta": str(i),
                    ID: f"acme.widget.{i % 5}",
                    "prefect.resource.name": f"wïdget «{i % 5}»",
                },
                related=[  # type: ignore[list-item]
                    {ID: f"acme.factory.{i % 2}", ROLE: "factory"},
                    {ID: "acme.tag.urgent", ROLE: "tag", "colour": "red"},
                ][: i % 3],
                payload={"n": i, "nested": {"list": [1, 2.5, None, "x"]}} if i % 2 else {},
                id=uuid.UUID(int=(i + 1) << 64 | 7),
                follows=events[-1].id if events and i % 4 == 0 else None,
                received=start + i * step + timedelta(seconds=3),
            )
        )
    return events


def stored(store: EventStore) -> list[tuple[Any, ...]]:
    """Every column of every stored event, in id order."""
    return store.fetchall(f"SELECT {COLUMNS} FROM events ORDER BY id")


def read_parquet(folder: Path, what: str = "*", rest: str = "") -> list[tuple[Any, ...]]:
    """``SELECT what FROM <the export's Hive folder> rest`` with DuckDB."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        glob = str(folder / "*" / "*.parquet")
        return con.execute(
            f"SELECT {what} FROM read_parquet(?, hive_partitioning = true) {rest}", [glob]
        ).fetchall()


@pytest.fixture
def filled(store: EventStore) -> EventStore:
    """A store holding 30 events over 30 hours (two UTC days and a bit)."""
    store.write_events(make_events(30))
    return store


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["ndjson", "parquet"])
def test_export_then_import_gives_back_the_same_events(
    filled: EventStore, tmp_path: Path, format: str
) -> None:
    """File -> export -> another file: every column of every event is the same."""
    destination = tmp_path / f"export.{format}"
    assert export_events(filled, destination, format=format) == 30  # type: ignore[arg-type]

    summary = import_events(tmp_path / "copy.duckdb", destination)

    assert (summary.read, summary.stored) == (30, 30)
    copy = open_store(str(tmp_path / "copy.duckdb"))
    try:
        assert stored(copy) == stored(filled)
    finally:
        release(copy)


def test_ndjson_lines_are_what_the_query_api_answers(filled: EventStore, tmp_path: Path) -> None:
    """Each NDJSON line is the ReceivedEvent JSON a query returns, oldest first."""
    export_events(filled, tmp_path / "out.ndjson", format="ndjson")

    lines = (tmp_path / "out.ndjson").read_text().splitlines()
    page = query_events(filled, msgspec.structs.replace(ALL_TIME, order="ASC"), 100)
    assert lines == page.events
    assert json.loads(lines[1])["payload"] == {"n": 1, "nested": {"list": [1, 2.5, None, "x"]}}


def test_an_export_of_an_events_file_by_path_reads_the_file(tmp_path: Path) -> None:
    """Given a path, export opens the events file itself (no server needed)."""
    path = tmp_path / "events.duckdb"
    store = open_store(str(path))
    store.write_events(make_events(4))
    release(store)

    assert export_events(path, tmp_path / "out.ndjson", format="ndjson") == 4
    assert len((tmp_path / "out.ndjson").read_text().splitlines()) == 4


def test_a_filter_and_time_range_choose_what_is_exported(
    filled: EventStore, tmp_path: Path
) -> None:
    """Only events matching the filter, inside its time range, are exported."""
    chosen = EventFilter(
        occurred=EventOccurredFilter(since=START, until=START + timedelta(hours=11)),
        event=EventNameFilter(name=["acme.widget.made"]),
    )
    count = export_events(filled, tmp_path / "out", filter=chosen, format="parquet")

    names = read_parquet(tmp_path / "out", "DISTINCT event")
    latest = read_parquet(tmp_path / "out", "max(epoch_us(occurred))")[0][0]
    assert count == 4  # hours 0, 3, 6 and 9
    assert names == [("acme.widget.made",)]
    assert latest == to_epoch_us(START + timedelta(hours=9))


# -- what other engines see ----------------------------------------------------------------


def test_parquet_is_partitioned_by_utc_day_and_duckdb_reads_the_hive_layout(
    filled: EventStore, tmp_path: Path
) -> None:
    """day=YYYY-MM-DD folders by UTC day of occurred; hive_partitioning reads ``day`` back
    as a date, times as UTC timestamps and related ids as a list."""
    export_events(filled, tmp_path / "out", format="parquet")

    folders = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.parquet")
    )
    assert folders == [
        "day=2026-02-27/events-0.parquet",
        "day=2026-02-28/events-0.parquet",
        "day=2026-03-01/events-0.parquet",
    ]
    days = read_parquet(tmp_path / "out", "day, count(*)", "GROUP BY day ORDER BY day")
    assert [(str(day), n) for day, n in days] == [
        ("2026-02-27", 4),
        ("2026-02-28", 24),
        ("2026-03-01", 2),
    ]
    with duckdb.connect() as con:
        types = dict(
            con.execute(
                "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                "read_parquet(?, hive_partitioning = true))",
                [str(tmp_path / "out" / "*" / "*.parquet")],
            ).fetchall()
        )
    assert types["occurred"] == types["received"] == "TIMESTAMP WITH TIME ZONE"
    assert types["day"] == "DATE"
    assert types["related_ids"] == "VARCHAR[]"
    assert types["resource"] == types["payload"] == types["id"] == "VARCHAR"


def test_parquet_holds_the_first_and_last_days_a_time_can_have(
    store: EventStore, tmp_path: Path
) -> None:
    """Events on 0001-01-01 and 9999-12-31 (the store takes both) are exported in their
    days' folders, the last microsecond of each day included: the next midnight after
    9999-12-31 does not exist, and computing it failed every Parquet export."""
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    ends = [first, first + timedelta(days=1, microseconds=-1), last - timedelta(hours=1), last]
    events = [
        msgspec.structs.replace(event, occurred=at, received=at)
        for event, at in zip(make_events(4), ends, strict=True)
    ]
    store.write_events(events)
    everything = EventFilter(occurred=EventOccurredFilter(since=first, until=last))
    assert export_events(store, tmp_path / "out", format="parquet", filter=everything) == 4
    days = read_parquet(tmp_path / "out", "day::VARCHAR, count(*)", "GROUP BY day ORDER BY day")
    assert days == [("0001-01-01", 2), ("9999-12-31", 2)]


# DuckDB 2.0's DataFrame conversion calls DataFrame.drop(inplace=True), which pandas 3.1
# deprecates; the warning is theirs, not ours.
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")
def test_pandas_reads_the_export_through_duckdb(filled: EventStore, tmp_path: Path) -> None:
    """A DataFrame of the export has UTC datetimes and the labels as JSON text."""
    export_events(filled, tmp_path / "out", format="parquet")

    with duckdb.connect() as con:
        glob = str(tmp_path / "out" / "*" / "*.parquet")
        frame = con.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = true) ORDER BY occurred", [glob]
        ).df()

    assert len(frame) == 30
    assert frame["occurred"].iloc[0] == START
    assert frame["occurred"].iloc[0].utcoffset() == timedelta(0)
    assert json.loads(frame["resource"].iloc[0])["prefect.resource.name"] == "wïdget «0»"


def test_pandas_reads_the_parquet_folder_itself(filled: EventStore, tmp_path: Path) -> None:
    """pandas.read_parquet (pyarrow) reads the Hive folder with ``day`` as a column."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    export_events(filled, tmp_path / "out", format="parquet")
    frame = pd.read_parquet(tmp_path / "out")

    assert len(frame) == 30
    assert str(frame["occurred"].dtype) == "datetime64[us, UTC]"
    assert sorted(str(day) for day in frame["day"].unique()) == [
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
    ]


# -- empty ranges --------------------------------------------------------------------------


def test_an_empty_range_exports_an_empty_file_and_a_schema_only_parquet(
    filled: EventStore, tmp_path: Path
) -> None:
    """Nothing matching: an empty NDJSON file, and one Parquet file with the full schema and
    no rows in the folder of the day the range ends; both import as nothing."""
    nothing = EventFilter(
        occurred=EventOccurredFilter(
            since=datetime(2020, 5, 1, tzinfo=UTC), until=datetime(2020, 5, 2, 12, tzinfo=UTC)
        )
    )
    assert export_events(filled, tmp_path / "e.ndjson", filter=nothing, format="ndjson") == 0
    assert export_events(filled, tmp_path / "e", filter=nothing, format="parquet") == 0

    assert (tmp_path / "e.ndjson").read_bytes() == b""
    files = [p.relative_to(tmp_path / "e").as_posix() for p in (tmp_path / "e").rglob("*")]
    assert sorted(files) == ["day=2020-05-02", "day=2020-05-02/events-0.parquet"]
    assert read_parquet(tmp_path / "e", "count(*)") == [(0,)]
    with duckdb.connect() as con:
        columns = [
            row[0]
            for row in con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)",
                [str(tmp_path / "e" / "day=2020-05-02" / "events-0.parquet")],
            ).fetchall()
        ]
    assert columns == [
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
        "day",  # from the folder name, as for every day of a non-empty export
    ]
    for source in (tmp_path / "e.ndjson", tmp_path / "e"):
        summary = import_events(filled, source)
        assert (summary.read, summary.stored) == (0, 0)


# -- import: idempotent, all or nothing ----------------------------------------------------


def test_importing_the_same_file_twice_stores_nothing_twice(
    filled: EventStore, tmp_path: Path
) -> None:
    """The second import reads every row and stores none: ids are deduplicated."""
    export_events(filled, tmp_path / "out", format="parquet")
    target = tmp_path / "copy.duckdb"

    first = import_events(target, tmp_path / "out")
    second = import_events(target, tmp_path / "out")

    assert (first.read, first.stored, second.read, second.stored) == (30, 30, 30, 0)
    copy = open_store(str(target))
    try:
        assert copy.fetchall("SELECT count(*), count(DISTINCT id) FROM events") == [(30, 30)]
    finally:
        release(copy)


def good_line(i: int) -> dict[str, Any]:
    return {
        "occurred": f"2026-01-01T00:00:0{i}Z",
        "event": "acme.made",
        "resource": {ID: f"acme.widget.{i}"},
        "id": str(uuid.UUID(int=i + 1)),
    }


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "malformed"),
        ({**good_line(2), "resource": {"name": "x"}}, "must include the prefect.resource.id"),
        ({**good_line(2), "related": [{ID: "a"}]}, "must include the prefect.resource.role"),
        ({**good_line(2), "resource": {ID: "a", "n": 1}}, "Expected `str`, got `int`"),
        ({**good_line(2), "occurred": "2026-01-01T00:00:00"}, "timezone"),
        ({**good_line(2), "id": "not-a-uuid"}, "Invalid UUID"),
        ({**good_line(2), "event": "x" * 1025}, "at most 1024 characters"),
        (
            {**good_line(2), "occurred": "9999-12-31T23:00:00-05:00"},
            "the instant is outside years 1-9999 in UTC",
        ),
    ],
)
def test_a_bad_ndjson_line_is_named_and_nothing_is_imported(
    store: EventStore, tmp_path: Path, bad: Any, problem: str
) -> None:
    """One bad line among good ones: the error names the file, the line and the problem,
    and none of the good lines is stored."""
    source = tmp_path / "in.ndjson"
    bad_text = bad if isinstance(bad, str) else json.dumps(bad)
    lines = [json.dumps(good_line(0)), "", json.dumps(good_line(1)), bad_text]
    source.write_text("\n".join(lines) + "\n")

    with pytest.raises(InvalidEventError) as caught:
        import_events(store, source)

    message = str(caught.value)
    assert message.startswith(f"{source}, line 4: ")
    assert problem in message
    assert stored(store) == []


def test_a_utf8_bom_before_the_first_line_is_skipped(store: EventStore, tmp_path: Path) -> None:
    """NDJSON written by a Windows tool, starting with a byte order mark, imports whole."""
    source = tmp_path / "windows.ndjson"
    lines = "\n".join(json.dumps(good_line(i)) for i in range(2))
    source.write_text("\ufeff" + lines + "\n", encoding="utf-8")

    summary = import_events(store, source)

    assert (summary.read, summary.stored) == (2, 2)
    assert len(stored(store)) == 2


def test_a_file_read_as_the_wrong_format_is_one_line_naming_it(
    store: EventStore, tmp_path: Path
) -> None:
    """NDJSON imported as Parquet, or Parquet as NDJSON, fails in one line naming the file
    and the format (not DuckDB's multi-line message quoting its SQL); nothing is stored."""
    lines, table = tmp_path / "in.ndjson", tmp_path / "in.parquet"
    lines.write_text(json.dumps(good_line(0)) + "\n")
    write_parquet(table, f"FROM read_json('{lines}')")

    with pytest.raises(InvalidEventError) as as_parquet:
        import_events(store, lines, format="parquet")
    with pytest.raises(ConfigurationError) as as_ndjson:
        import_events(store, table, format="ndjson")

    assert str(as_parquet.value) == f"{lines} is not a Parquet file (it does not start with PAR1)"
    assert str(as_ndjson.value).startswith(f"{table} is a Parquet file, not NDJSON: ")
    assert "\n" not in str(as_ndjson.value)
    assert stored(store) == []


def test_the_size_limit_applies_to_imported_events(store: EventStore, tmp_path: Path) -> None:
    """An event over LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES is a bad row, as on ingest."""
    source = tmp_path / "in.ndjson"
    source.write_text(json.dumps({**good_line(0), "payload": {"text": "x" * 2000}}) + "\n")

    with (
        temporary_settings(events_maximum_size_bytes=1000),
        pytest.raises(InvalidEventError) as caught,
    ):
        import_events(store, source)

    assert "line 1: the event is" in str(caught.value)
    assert "over the limit of 1000" in str(caught.value)
    assert stored(store) == []


def write_parquet(path: Path, select: str) -> None:
    with duckdb.connect() as con:
        con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")


def test_a_bad_parquet_row_is_named_and_nothing_is_imported(
    filled: EventStore, store: EventStore, tmp_path: Path
) -> None:
    """A row whose resource lacks its id, in a second file of a folder: the error names the
    file and the row (from 1), and nothing from either file is stored."""
    export_events(filled, tmp_path / "out", format="parquet")
    bad = tmp_path / "out" / "day=2026-03-01" / "events-1.parquet"
    write_parquet(
        bad,
        "SELECT * FROM (VALUES "
        "('00000000-0000-0000-0000-0000000000aa', TIMESTAMPTZ '2026-03-01 05:00:00+00', 'a.b', "
        '\'{"prefect.resource.id": "r"}\'), '
        "('00000000-0000-0000-0000-0000000000bb', TIMESTAMPTZ '2026-03-01 06:00:00+00', 'a.b', "
        '\'{"name": "no id"}\')) AS t(id, occurred, event, resource)',
    )
    copy = tmp_path / "copy.duckdb"

    with pytest.raises(InvalidEventError) as caught:
        import_events(copy, tmp_path / "out")

    assert str(caught.value).startswith(f"{bad}, row 2: ")
    assert "must include the prefect.resource.id" in str(caught.value)
    assert not copy.exists()


@pytest.mark.parametrize(
    ("select", "problem"),
    [
        (
            "SELECT 'x' AS id, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS occurred, 'a' AS event",
            "the column 'resource' is missing",
        ),
        (
            "SELECT uuid() AS id, 'soon' AS occurred, 'a' AS event, "
            '\'{"prefect.resource.id": "r"}\' AS resource',
            "row 1: occurred is missing or cannot be read as its type",
        ),
        (
            "SELECT uuid() AS id, now() AS occurred, 'a' AS event, '{\"prefect' AS resource",
            "row 1: resource is not valid JSON",
        ),
    ],
)
def test_a_parquet_file_that_is_not_an_export_is_refused_clearly(
    store: EventStore, tmp_path: Path, select: str, problem: str
) -> None:
    """Missing columns, unreadable values and broken JSON are named; nothing is stored."""
    source = tmp_path / "other.parquet"
    write_parquet(source, select)

    with pytest.raises(InvalidEventError, match=problem):
        import_events(store, source)

    assert stored(store) == []


def test_parquet_from_another_tool_with_labels_as_a_map_is_imported(
    store: EventStore, tmp_path: Path
) -> None:
    """Labels kept as a MAP (as Spark writes them) are read as their JSON."""
    source = tmp_path / "spark.parquet"
    write_parquet(
        source,
        "SELECT '00000000-0000-0000-0000-000000000001' AS id, "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00' AS occurred, 'a.b' AS event, "
        "MAP {'prefect.resource.id': 'acme.1', 'colour': 'red'} AS resource",
    )

    assert import_events(store, source).stored == 1
    assert store.fetchall("SELECT resource->>'colour', related::VARCHAR FROM events") == [
        ("red", "[]")
    ]


# -- bad arguments -------------------------------------------------------------------------


def test_export_refuses_a_destination_that_exists(filled: EventStore, tmp_path: Path) -> None:
    """An existing file or a non-empty folder is never overwritten; an empty folder takes
    a Parquet export."""
    (tmp_path / "taken.ndjson").write_text("keep me")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    (tmp_path / "empty").mkdir()

    with pytest.raises(ConfigurationError, match="already exists"):
        export_events(filled, tmp_path / "taken.ndjson", format="ndjson")
    with pytest.raises(ConfigurationError, match="already exists"):
        export_events(filled, tmp_path / "full", format="parquet")
    with pytest.raises(ConfigurationError, match="does not exist"):
        export_events(filled, tmp_path / "no" / "such" / "folder", format="parquet")

    with pytest.raises(ConfigurationError, match="already exists"):
        export_events(filled, tmp_path / "empty", format="ndjson")  # NDJSON is a file
    assert export_events(filled, tmp_path / "empty", format="parquet") == 30
    assert (tmp_path / "taken.ndjson").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_and_import_name_a_missing_source(tmp_path: Path) -> None:
    """Exporting a file that does not exist, or importing nothing, is a clear error (and
    creates no events file)."""
    with pytest.raises(ConfigurationError, match="no events file at"):
        export_events(tmp_path / "missing.duckdb", tmp_path / "out", format="parquet")
    with pytest.raises(ConfigurationError, match="nothing to import at"):
        import_events(tmp_path / "events.duckdb", tmp_path / "missing.ndjson")
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(ConfigurationError, match=r"no \.parquet files under"):
        import_events(tmp_path / "events.duckdb", tmp_path / "empty-folder")

    assert not (tmp_path / "missing.duckdb").exists()
    assert not (tmp_path / "events.duckdb").exists()


def test_exporting_a_file_held_by_a_server_says_so(tmp_path: Path) -> None:
    """A file another process holds raises DatabaseInUseError naming it: export through
    that server instead."""
    path = tmp_path / "events.duckdb"
    with serve(path) as server, pytest.raises(DatabaseInUseError, match=f"PID {server.pid}"):
        export_events(path, tmp_path / "out", format="parquet")


# -- through the API -----------------------------------------------------------------------


@pytest.mark.parametrize("format", ["ndjson", "parquet"])
async def test_the_sdk_exports_from_the_in_process_store(tmp_path: Path, format: str) -> None:
    """EventsAPIClient.export_events downloads the same events an offline export writes."""
    database = str(tmp_path / "events.duckdb")
    async with ephemeral(database=database), get_client() as client:
        await client.create_events(make_events(30))
        count = await client.export_events(tmp_path / "api", format=format)  # type: ignore[arg-type]
        store = open_store(database)  # the in-process app's store, shared
        try:
            offline = export_events(store, tmp_path / "offline", format=format)  # type: ignore[arg-type]
        finally:
            release(store)

    assert count == offline == 30
    if format == "ndjson":
        assert (tmp_path / "api").read_bytes() == (tmp_path / "offline").read_bytes()
    else:
        assert sorted(read_parquet(tmp_path / "api", "id, event, day")) == sorted(
            read_parquet(tmp_path / "offline", "id, event, day")
        )


async def test_the_export_route_refuses_a_bad_body(tmp_path: Path) -> None:
    """An unknown format or key answers 422 naming it; nothing is written locally."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")), get_client() as client:
        with pytest.raises(InvalidRequestError, match="format"):
            await client.export_events(tmp_path / "out", format="csv")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="colour"):
            await client.http.post("events/export", json={"colour": "red"})

    assert [path async for path in anyio.Path(tmp_path).glob("*out*")] == []


async def test_the_sdk_imports_ndjson_and_a_second_import_adds_nothing(tmp_path: Path) -> None:
    """EventsAPIClient.import_events sends an NDJSON export to a server; sending it again
    stores no duplicates."""
    source = tmp_path / "in.ndjson"
    store = open_store(str(tmp_path / "source.duckdb"))
    store.write_events(make_events(30))
    export_events(store, source, format="ndjson")
    release(store)

    async with ephemeral(database=str(tmp_path / "events.duckdb")), get_client() as client:
        assert await client.import_events(source, batch_size=7) == 30
        assert await client.import_events(source) == 30
        page = await client.read_events(ALL_TIME, limit=100)

    assert page.total == 30
    assert sorted(str(e.id) for e in page.events) == sorted(str(e.id) for e in make_events(30))


async def test_the_sdk_refuses_a_bad_line_before_sending_anything(tmp_path: Path) -> None:
    """A bad line raises InvalidEventError naming it, and the server receives nothing."""
    source = tmp_path / "in.ndjson"
    lines = [json.dumps(good_line(0)), json.dumps({**good_line(1), "resource": {}})]
    source.write_text("\n".join(lines))

    async with ephemeral(database=str(tmp_path / "events.duckdb")), get_client() as client:
        with pytest.raises(InvalidEventError, match=f"{source}, line 2: "):
            await client.import_events(source)
        page = await client.read_events(ALL_TIME)

    assert page.total == 0


@pytest.mark.slow
async def test_a_live_server_exports_while_it_ingests(tmp_path: Path) -> None:
    """A real server streams NDJSON and snapshots Parquet while producers keep writing:
    every event stored before the export is in it, and ingest never fails."""
    before = make_events(500, start=START, step=timedelta(minutes=1))
    ingested: list[ReceivedEvent] = []
    with serve(tmp_path / "events.duckdb") as server:
        async with get_client(api_url=server.url) as client:
            await client.create_events(before)
            exporting = anyio.Event()

            async def ingest() -> None:
                for batch in range(1000):
                    events = make_events(20, start=START + timedelta(days=30 + batch))
                    events = [
                        msgspec.structs.replace(e, id=uuid.UUID(int=(batch + 1) << 96 | i))
                        for i, e in enumerate(events)
                    ]
                    await client.create_events(events)
                    ingested.extend(events)
                    if exporting.is_set() and batch > 3:
                        return

            async with anyio.create_task_group() as group:
                group.start_soon(ingest)
                ndjson = await client.export_events(tmp_path / "live.ndjson", format="ndjson")
                parquet = await client.export_events(tmp_path / "live", format="parquet")
                exporting.set()
            final = await client.read_events(ALL_TIME, limit=0)

    lines = (tmp_path / "live.ndjson").read_text().splitlines()
    exported = {json.loads(line)["id"] for line in lines}
    snapshot = {row[0] for row in read_parquet(tmp_path / "live", "id")}
    assert {str(e.id) for e in before} <= exported
    assert {str(e.id) for e in before} <= snapshot
    assert ndjson == len(lines) == len(exported)
    assert parquet == len(snapshot)
    assert final.total == len(before) + len(ingested)


async def test_the_export_route_is_documented(tmp_path: Path) -> None:
    """OpenAPI lists POST /api/events/export with its body and both kinds of answer."""
    app = create_app(database=str(tmp_path / "events.duckdb"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/") as http:
        document = (await http.get("docs/openapi.json")).json()

    operation = document["paths"]["/api/events/export"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"filter", "format"}
    assert body["properties"]["format"]["enum"] == ["ndjson", "parquet"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/x-ndjson",
        "application/x-tar",
    }
    schemas = document["components"]["schemas"]
    refs = [part for part in json.dumps(body).split('"') if part.startswith("#/components/")]
    assert all(ref.rsplit("/", 1)[1] in schemas for ref in refs)
