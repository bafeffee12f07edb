"""The events file as a product: its version and upgrade path, the analyst's views and
macros, and the documented examples (docs/schema.md), all on real DuckDB files."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec
import pytest

from localevents import ReceivedEvent, StorageError
from localevents._exceptions import SchemaVersionError
from localevents.events import Countable, EventFilter, EventOccurredFilter, TimeUnit
from localevents.samples import write_sample_database
from localevents.storage import count_events, open_store, query_events, release
from localevents.storage._schema import SCHEMA_VERSION, STEPS, ensure_schema
from localevents.storage._views import ANALYST_OBJECTS
from tests._set_counts import assert_set_counts_exact

if TYPE_CHECKING:
    from localevents.storage import EventStore

DOC = Path(__file__).parent.parent / "docs" / "schema.md"
START = datetime(2024, 3, 31, 22, 0, tzinfo=UTC)  # two hours before the bucket anchor

# The layout of schema version 1, as localevents 0.1 created it (frozen here on purpose:
# it is the past that the upgrade must keep working from).
V1_LAYOUT = """
CREATE TABLE events (
    id UUID NOT NULL, occurred TIMESTAMPTZ NOT NULL, event VARCHAR NOT NULL,
    resource_id VARCHAR NOT NULL, resource JSON NOT NULL, related JSON NOT NULL,
    related_ids VARCHAR[] NOT NULL, related_roles VARCHAR[] NOT NULL, payload JSON NOT NULL,
    follows UUID, received TIMESTAMPTZ NOT NULL
);
CREATE TABLE localevents_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
INSERT INTO localevents_meta VALUES ('schema_version', '1'), ('page_secret', '{secret}');
CREATE OR REPLACE VIEW events_resources AS
SELECT e.id AS event_id, e.occurred, e.event, e.resource_id, '' AS role, e.resource AS labels
FROM events e
UNION ALL
SELECT e.id, e.occurred, e.event, r.rid, r.rrole, r.labels
FROM events e,
     LATERAL (SELECT unnest(e.related_ids) AS rid, unnest(e.related_roles) AS rrole,
                     unnest(json_extract(e.related, '$[*]')) AS labels) r;
INSERT INTO events VALUES
    ('00000000-0000-7000-8000-000000000001', '2024-03-31 22:10:00+00', 'acme.widget.made',
     'acme.widget.1', '{"prefect.resource.id":"acme.widget.1","prefect.resource.name":"one"}',
     '[{"prefect.resource.id":"acme.line.a","prefect.resource.role":"line"}]',
     ['acme.line.a'], ['line'], '{"size":3}', NULL, '2024-03-31 22:10:01+00'),
    ('00000000-0000-7000-8000-000000000002', '2024-03-31 22:12:00+00', 'acme.widget.shipped',
     'acme.widget.1', '{"prefect.resource.id":"acme.widget.1","prefect.resource.name":"one"}',
     '[]', [], [], '{}', '00000000-0000-7000-8000-000000000001', '2024-03-31 22:12:01+00');
"""
V1_SECRET = "ab" * 32


def create_v1_file(path: Path) -> None:
    """An events file of schema version 1 holding two events, made with DuckDB alone."""
    with duckdb.connect(str(path)) as con:
        con.execute(V1_LAYOUT.replace("{secret}", V1_SECRET))


def create_file_with_resource_sets(path: Path, version: int) -> None:
    """The v1 file brought to ``version`` (3 or more) by its steps alone, with the
    resource label sets of its two events recorded as that version recorded them."""
    create_v1_file(path)
    reach = "resource_sets_through" if version == 3 else "label_sets_through"
    named = ", resource ->> 'prefect.resource.name'" if version >= 5 else ""
    with duckdb.connect(str(path)) as con:
        con.execute("BEGIN")
        for step in STEPS[1:version]:
            con.execute(step.sql)
        con.execute(
            f"INSERT INTO resource_sets SELECT DISTINCT resource_key, resource_id, resource{named} "
            f"FROM events; UPDATE localevents_meta SET value = '2' WHERE key = '{reach}'; "
            f"UPDATE localevents_meta SET value = '{version}' WHERE key = 'schema_version'"
        )
        if version >= 4:
            con.execute(
                "INSERT INTO related_sets SELECT DISTINCT related_key, related, related_ids, "
                "related_roles FROM events"
            )
        con.execute("COMMIT")


def raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run one query on the file with DuckDB alone (read-only), as an analyst would."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def objects(path: Path) -> set[str]:
    """Every table, view and macro in the file."""
    rows = raw(
        path,
        "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views() "
        "WHERE NOT internal UNION SELECT function_name FROM duckdb_functions() "
        "WHERE NOT internal AND database_name = current_database()",
    )
    return {str(row[0]) for row in rows}


EVENT_ROWS = (
    "SELECT id::VARCHAR, occurred::VARCHAR, event, resource_id, resource::VARCHAR, "
    "related::VARCHAR, related_ids, related_roles, payload::VARCHAR, follows::VARCHAR, "
    "received::VARCHAR FROM events ORDER BY id"
)


def open_and_release(path: Path) -> None:
    release(open_store(str(path)))


# -- versions and upgrades ------------------------------------------------------------------


def test_a_new_file_records_the_current_version_and_its_history(tmp_path: Path) -> None:
    """A new file is at SCHEMA_VERSION, with one history row per step it went through."""
    path = tmp_path / "new.duckdb"
    open_and_release(path)
    assert raw(path, "SELECT value FROM localevents_meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    history = raw(path, "SELECT version FROM localevents_schema_history ORDER BY version")
    assert history == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert set(ANALYST_OBJECTS) <= objects(path)


def test_a_version_1_file_is_upgraded_in_place_keeping_every_event(tmp_path: Path) -> None:
    """Opening a v1 file upgrades it; its events, page secret and old view name survive,
    and the new views answer over the old rows."""
    path = tmp_path / "v1.duckdb"
    create_v1_file(path)
    before = raw(path, EVENT_ROWS)
    store = open_store(str(path))
    try:
        assert store.secret == bytes.fromhex(V1_SECRET)  # page tokens issued before stay valid
        assert store.fetchall(EVENT_ROWS) == before
        flat = store.fetchall(
            "SELECT event, resource_name, labels['prefect.resource.name'] FROM events_flat "
            "ORDER BY occurred"
        )
        assert flat == [("acme.widget.made", "one", "one"), ("acme.widget.shipped", "one", "one")]
        involved = store.fetchall(
            "SELECT event, position, role, resource_id FROM events_resources "
            "ORDER BY event, position"
        )
        assert involved == [
            ("acme.widget.made", 0, "", "acme.widget.1"),
            ("acme.widget.made", 1, "line", "acme.line.a"),
            ("acme.widget.shipped", 0, "", "acme.widget.1"),
        ]
        assert store.fetchall("SELECT follows_event, latency_ms FROM events_follows") == [
            ("acme.widget.made", 120_000.0)
        ]
        # version 3: the old rows got their resource keys, and label filters find them
        assert store.fetchall("SELECT count(*) FROM events WHERE resource_key = hash(resource)")
        assert store.fetchall("SELECT count(*) FROM events WHERE resource_key IS NULL") == [(0,)]
        named = msgspec.convert(
            {
                "occurred": {"since": "2024-03-31T00:00:00Z", "until": "2024-04-01T00:00:00Z"},
                "resource": {"labels": {"prefect.resource.name": "on*"}},
            },
            EventFilter,
            strict=False,
        )
        assert query_events(store, named, 10).total == 2
        # version 4: the old rows got their related keys, and related filters find them
        assert store.fetchall("SELECT count(*) FROM events WHERE related_key IS NULL") == [(0,)]
        on_line = msgspec.convert(
            {
                "occurred": {"since": "2024-03-31T00:00:00Z", "until": "2024-04-01T00:00:00Z"},
                "related": {"id": ["acme.line.a"]},
            },
            EventFilter,
        )
        assert query_events(store, on_line, 10).total == 1
        store.label_sets.catch_up(store.cursor(), after=0)
        assert store.fetchall("SELECT resource_id FROM resource_sets") == [("acme.widget.1",)]
        assert store.fetchall("SELECT count(*) FROM related_sets") == [(2,)]  # a line, none
        assert query_events(store, named, 10).total == 2
        assert query_events(store, on_line, 10).total == 1
    finally:
        release(store)
    assert raw(path, "SELECT value FROM localevents_meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    history = raw(path, "SELECT version FROM localevents_schema_history ORDER BY version")
    assert history == [(v,) for v in range(2, SCHEMA_VERSION + 1)]


def test_a_version_3_file_gets_the_related_sets_of_the_events_its_resource_sets_reach(
    tmp_path: Path,
) -> None:
    """Version 4 shares version 3's reach (how far the label set tables cover the events)
    with the new related_sets: the upgrade records the related sets of the events already
    covered, so related filters find them without scanning them."""
    path = tmp_path / "v3.duckdb"
    create_file_with_resource_sets(path, 3)
    store = open_store(str(path))
    try:
        assert store.fetchall(
            "SELECT key, value FROM localevents_meta WHERE key LIKE '%sets%' ORDER BY key"
        ) == [("label_sets_exact", "true"), ("label_sets_through", "2")]
        assert store.fetchall("SELECT related_ids FROM related_sets ORDER BY related_ids") == [
            ([],),
            (["acme.line.a"],),
        ]
        on_line = msgspec.convert(
            {
                "occurred": {"since": "2024-03-31T00:00:00Z", "until": "2024-04-01T00:00:00Z"},
                "related": {"id": ["acme.line.a"], "role": ["line"]},
            },
            EventFilter,
        )
        assert query_events(store, on_line, 10).total == 1
    finally:
        release(store)


def test_a_version_4_file_gets_the_display_names_of_its_label_sets(tmp_path: Path) -> None:
    """Version 5 keeps each resource label set's display name: the upgrade names the sets
    recorded before it, and a count by resource labels them with it."""
    path = tmp_path / "v4.duckdb"
    create_file_with_resource_sets(path, 4)
    store = open_store(str(path))
    try:
        assert store.fetchall("SELECT resource_id, display_name FROM resource_sets") == [
            ("acme.widget.1", "one")
        ]
        window = msgspec.convert(
            {"occurred": {"since": "2024-03-31T00:00:00Z", "until": "2024-04-01T00:00:00Z"}},
            EventFilter,
        )
        counts = count_events(store, window, Countable.resource)
        assert [(c.value, c.label, c.count) for c in counts] == [("acme.widget.1", "one", 2)]
    finally:
        release(store)


def test_a_version_5_file_numbers_its_events_and_counts_its_label_sets(tmp_path: Path) -> None:
    """Version 6 numbers the stored events in their order (``seq``) and counts each label
    set's events; a set whose events were all deleted goes. Events stored after the upgrade
    are numbered after them."""
    path = tmp_path / "v5.duckdb"
    create_file_with_resource_sets(path, 5)
    with duckdb.connect(str(path)) as con:  # a set whose events were deleted
        con.execute(
            "INSERT INTO resource_sets VALUES (42, 'acme.gone', "
            """'{"prefect.resource.id":"acme.gone"}', 'acme.gone')"""
        )
    store = open_store(str(path))
    try:
        assert store.fetchall("SELECT seq FROM events ORDER BY rowid") == [(0,), (1,)]
        first, last = (START + timedelta(minutes=m) for m in (10, 12))
        assert store.fetchall(
            "SELECT resource_id, event_count, make_timestamptz(first_us), "
            "make_timestamptz(last_us) FROM resource_sets"
        ) == [("acme.widget.1", 2, first, last)]
        assert sorted(store.fetchall("SELECT related_ids, event_count FROM related_sets")) == [
            ([], 1),
            (["acme.line.a"], 1),
        ]
        assert_set_counts_exact(store)
        store.write_events(
            [
                ReceivedEvent(
                    occurred=last,
                    event="acme.widget.sold",
                    resource={"prefect.resource.id": "acme.widget.1"},  # type: ignore[arg-type]
                    id=uuid.uuid4(),
                )
            ]
        )
        assert store.fetchall("SELECT max(seq) FROM events") == [(2,)]
    finally:
        release(store)


def test_a_file_from_a_newer_localevents_is_refused_untouched(tmp_path: Path) -> None:
    """A newer schema version raises SchemaVersionError naming both versions and the fix,
    and the file keeps its version, its events and its (missing) views."""
    path = tmp_path / "newer.duckdb"
    open_and_release(path)
    newer = SCHEMA_VERSION + 1
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE localevents_meta SET value = ? WHERE key = 'schema_version'", [newer])
        con.execute("DROP VIEW events_flat")  # re-created by any open that writes
    with pytest.raises(SchemaVersionError) as raised:
        open_store(str(path))
    message = str(raised.value)
    assert f"schema version {newer}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "upgrade localevents" in message
    assert str(path) in message
    assert (raised.value.found, raised.value.supported) == (newer, SCHEMA_VERSION)
    assert isinstance(raised.value, StorageError)
    assert raw(path, "SELECT value FROM localevents_meta WHERE key = 'schema_version'") == [
        (str(newer),)
    ]
    assert "events_flat" not in objects(path)
    assert raw(path, "SELECT count(*) FROM localevents_schema_history") == [(SCHEMA_VERSION,)]


def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A v1 file with a table of the user's own named like a new view: the upgrade fails
    naming it, and the file is still a complete v1 file with the user's table."""
    path = tmp_path / "v1.duckdb"
    create_v1_file(path)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events_flat AS SELECT 42 AS answer")
    before = raw(path, EVENT_ROWS)
    with pytest.raises(StorageError, match="events_flat") as raised:
        open_store(str(path))
    assert "stays at version 1" in str(raised.value)
    assert raw(path, "SELECT value FROM localevents_meta WHERE key = 'schema_version'") == [("1",)]
    assert "localevents_schema_history" not in objects(path)
    assert raw(path, "SELECT answer FROM events_flat") == [(42,)]
    assert raw(path, EVENT_ROWS) == before


def test_a_foreign_events_table_is_not_taken_for_an_events_file(tmp_path: Path) -> None:
    """A database with its own ``events`` table and no localevents_meta is refused, untouched."""
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events AS SELECT 'click' AS kind")
    with pytest.raises(StorageError, match="not made by localevents"):
        open_store(str(path))
    assert raw(path, "SELECT * FROM events") == [("click",)]
    assert "localevents_meta" not in objects(path)


def test_a_read_only_connection_asks_for_one_read_write_open(tmp_path: Path) -> None:
    """Read-only, an older file cannot be upgraded and says how to; a current one opens."""
    old, current = tmp_path / "v1.duckdb", tmp_path / "v2.duckdb"
    create_v1_file(old)
    open_and_release(current)
    with (
        duckdb.connect(str(old), read_only=True) as con,
        pytest.raises(SchemaVersionError, match="open it once read-write"),
    ):
        ensure_schema(con, read_only=True)
    with duckdb.connect(str(current), read_only=True) as con:
        assert len(ensure_schema(con, read_only=True)) == 32


def test_views_and_macros_are_recreated_on_every_open(tmp_path: Path) -> None:
    """Analyst objects dropped by hand come back at the next open; opening again is harmless."""
    path = tmp_path / "events.duckdb"
    open_and_release(path)
    with duckdb.connect(str(path)) as con:
        for name in ("events_by_day", "events_by_hour", "events_flat", "events_follows"):
            con.execute(f"DROP VIEW {name}")
        con.execute("DROP MACRO TABLE events_per")
        con.execute("DROP MACRO bucket_start")
    open_and_release(path)
    open_and_release(path)
    assert set(ANALYST_OBJECTS) <= objects(path)
    assert raw(path, "SELECT count(*) FROM localevents_schema_history") == [(SCHEMA_VERSION,)]


_DROP = {"label_of": "MACRO", "bucket_start": "MACRO", "events_per": "MACRO TABLE"}


@pytest.mark.parametrize("name", ANALYST_OBJECTS)
def test_any_one_dropped_analyst_object_comes_back(tmp_path: Path, name: str) -> None:
    """An open that finds the file set up writes nothing, yet notices any one view or
    macro gone and re-creates it."""
    path = tmp_path / "events.duckdb"
    open_and_release(path)
    with duckdb.connect(str(path)) as con:
        con.execute(f"DROP {_DROP.get(name, 'VIEW')} {name}")
    assert name not in objects(path)
    open_and_release(path)
    assert set(ANALYST_OBJECTS) <= objects(path)


def test_a_view_redefined_by_hand_gets_its_definition_back(tmp_path: Path) -> None:
    """A view of ours replaced by another definition is re-created as documented."""
    path = tmp_path / "events.duckdb"
    open_and_release(path)
    columns = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'events_flat'"
    documented = raw(path, columns)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE OR REPLACE VIEW events_flat AS SELECT 1 AS mine")
    assert raw(path, columns) == [("mine",)]
    open_and_release(path)
    assert raw(path, columns) == documented


def test_a_file_set_up_by_this_version_opens_without_being_written(tmp_path: Path) -> None:
    """Opening and closing a current file changes not a byte of it (no transaction: the
    views are not re-created when they are as this version defines them)."""
    path = tmp_path / "events.duckdb"
    open_and_release(path)
    before = path.read_bytes()
    open_and_release(path)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".wal").exists()


# -- the views -------------------------------------------------------------------------------


def event(
    minute: float,
    name: str = "acme.widget.made",
    resource: dict[str, str] | None = None,
    related: list[dict[str, str]] | None = None,
    follows: uuid.UUID | None = None,
) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=START + timedelta(minutes=minute),
        event=name,
        resource=resource or {"prefect.resource.id": "acme.widget.1"},  # type: ignore[arg-type]
        related=related or [],  # type: ignore[arg-type]
        id=uuid.uuid4(),
        follows=follows,
    )


def test_events_flat_spreads_the_primary_labels_into_columns(store: EventStore) -> None:
    """Name, state and every label (literal keys, odd characters included) are reachable."""
    labels = {
        "prefect.resource.id": "prefect.flow-run.1",
        "prefect.resource.name": "calm-otter",
        "prefect.state-name": "Running",
        "prefect.state-type": "RUNNING",
        "a/b": "slash",
        "*": "star",
        "~x": "tilde",
    }
    store.write_events([event(1, resource=labels), event(2)])
    rows = store.fetchall(
        "SELECT resource_name, state_name, state_type, labels['a/b'], labels['*'], "
        "label_of(e.resource, '~x'), label_of(e.resource, 'missing') "
        "FROM events_flat JOIN events e USING (id) ORDER BY e.occurred"
    )
    assert rows == [
        ("calm-otter", "Running", "RUNNING", "slash", "star", "tilde", None),
        (None, None, None, None, None, None, None),
    ]
    assert store.fetchall("SELECT labels FROM events_flat ORDER BY occurred LIMIT 1") == [(labels,)]


def test_events_resources_has_one_row_per_involved_resource(store: EventStore) -> None:
    """The primary resource at position 0 with role '', then each related one in order."""
    related = [
        {"prefect.resource.id": "acme.line.a", "prefect.resource.role": "line"},
        {
            "prefect.resource.id": "acme.tag.x",
            "prefect.resource.role": "tag",
            "prefect.resource.name": "x",
        },
        {"prefect.resource.id": "acme.tag.y", "prefect.resource.role": "tag"},
    ]
    store.write_events([event(1, related=related), event(2)])
    rows = store.fetchall(
        "SELECT position, role, resource_id, resource_name, labels['prefect.resource.role'] "
        "FROM events_resources ORDER BY occurred, position"
    )
    assert rows == [
        (0, "", "acme.widget.1", None, None),
        (1, "line", "acme.line.a", None, "line"),
        (2, "tag", "acme.tag.x", "x", "tag"),
        (3, "tag", "acme.tag.y", None, "tag"),
        (0, "", "acme.widget.1", None, None),
    ]


def test_events_follows_pairs_events_with_the_stored_event_they_follow(
    store: EventStore,
) -> None:
    """Each pair has both names and the latency; a follows naming no stored event has no row."""
    first = event(0, "shop.cart.created")
    second = event(1.5, "shop.checkout.started", follows=first.id)
    orphan = event(2, "shop.order.paid", follows=uuid.uuid4())
    store.write_events([first, second, orphan])
    rows = store.fetchall(
        "SELECT id, follows_id, follows_event, event, latency_ms FROM events_follows"
    )
    assert rows == [(second.id, first.id, "shop.cart.created", "shop.checkout.started", 90_000.0)]


@pytest.mark.parametrize(
    ("unit", "n"),
    [(TimeUnit.hour, 1.0), (TimeUnit.minute, 45.0), (TimeUnit.day, 1.0), (TimeUnit.hour, 0.5)],
)
def test_time_buckets_agree_with_count_by(store: EventStore, unit: TimeUnit, n: float) -> None:
    """events_per and bucket_start give the buckets and counts of the count-by API, also
    for instants before the 2024-04-01 anchor and for fractional intervals."""
    minutes = [0, 1, 17, 59, 61, 95, 119, 121, 180, 181, 300, 301, 302, 1500]
    store.write_events([event(m) for m in minutes])
    since, until = START, START + timedelta(minutes=max(minutes))
    window = EventFilter(occurred=EventOccurredFilter(since=since, until=until))
    api = {
        int(c.start_time.timestamp() * 1_000_000): c.count
        for c in count_events(store, window, Countable.time, unit, n)
        if c.count
    }
    per = store.fetchall(
        "SELECT epoch_us(bucket_start), events FROM events_per(?, ?) WHERE events > 0",
        [unit.value, n],
    )
    grouped = store.fetchall(
        "SELECT epoch_us(bucket_start(occurred, ?, ?)) AS b, count(*) FROM events GROUP BY b",
        [unit.value, n],
    )
    assert dict(per) == api
    assert dict(grouped) == api


def test_events_per_fills_quiet_buckets_with_zero(store: EventStore) -> None:
    """Every bucket between the first and the last event appears, empty ones as 0; the
    pattern keeps only matching names; each bucket ends a microsecond before the next."""
    store.write_events([event(5, "shop.cart.created"), event(185, "shop.order.paid"), event(65)])
    rows = store.fetchall(
        "SELECT bucket_start::VARCHAR, epoch_us(bucket_end) - epoch_us(bucket_start), events "
        "FROM events_per('hour', pattern := 'shop.*')"
    )
    hour = 3_600_000_000 - 1
    assert rows == [
        ("2024-03-31 22:00:00+00", hour, 1),
        ("2024-03-31 23:00:00+00", hour, 0),
        ("2024-04-01 00:00:00+00", hour, 0),
        ("2024-04-01 01:00:00+00", hour, 1),
    ]
    assert store.fetchall("SELECT sum(events) FROM events_by_hour") == [(3,)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM events_per('year')", "unknown time unit year"),
        ("SELECT * FROM events_per('hour', 0)", "must be positive"),
        ("SELECT bucket_start(occurred, 'day', -2) FROM events", "must be positive"),
    ],
)
def test_bad_bucket_arguments_say_what_is_wrong(store: EventStore, sql: str, message: str) -> None:
    """A unknown unit or a non-positive interval is an error naming the problem."""
    store.write_events([event(1)])
    with pytest.raises(duckdb.InvalidInputException, match=message):
        store.fetchall(sql)


# -- the documentation -------------------------------------------------------------------------


def doc_statements() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    write_sample_database(path, 3000, seed=4)
    return path


def test_the_schema_doc_has_examples() -> None:
    """The examples below are found (a broken fence would silently test nothing)."""
    assert len(doc_statements()) >= 12


@pytest.mark.parametrize("statement", doc_statements())
def test_every_example_in_the_schema_doc_answers(sample_file: Path, statement: str) -> None:
    """Each SQL example of docs/schema.md runs on a sample file and returns rows."""
    with duckdb.connect(str(sample_file), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        answer = con.execute(statement).fetchnumpy()
    assert len(next(iter(answer.values()))) > 0


def test_the_schema_doc_names_every_view_and_macro() -> None:
    """Every analyst object has its own heading in docs/schema.md."""
    text = DOC.read_text()
    for name in ANALYST_OBJECTS:
        assert re.search(rf"^###.*`{name}[`(]", text, flags=re.MULTILINE), name


@pytest.mark.parametrize("name", ["export.ndjson", "export.json", "table.csv", "day.parquet"])
def test_a_data_file_given_as_the_events_file_is_refused_untouched(
    tmp_path: Path, name: str
) -> None:
    """DuckDB opens an existing JSON, CSV or Parquet file given as a database in memory:
    every event stored would vanish on close. The store refuses it, naming it, and the file
    keeps its bytes."""
    path = tmp_path / name
    if name.endswith(".parquet"):
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT 1 AS answer) TO '{path}' (FORMAT parquet)")
    else:
        path.write_text('{"answer": 1}\n' if "json" in name else "answer\n1\n")
    before = path.read_bytes()
    with pytest.raises(StorageError, match="is not a DuckDB events file") as raised:
        open_store(str(path))
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before
