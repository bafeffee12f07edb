"""``resource_sets`` and ``related_sets``, the label sets of primary and related resources
that filters test instead of every event: when they are caught up, what they hold, and that
answers stay exact past them, after a deletion moves rows, and after a key collision
(``storage._label_sets``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec

from localevents.events import Countable, EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.storage import count_events, open_store, query_events, release
from localevents.storage._retention import delete_expired
from tests._set_counts import assert_set_counts_exact
from tests._statements import recorded_statements

if TYPE_CHECKING:
    from pathlib import Path

    from localevents.storage import EventStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = {"since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"}


def received(count: int, colour: str, start: datetime = T0) -> list[ReceivedEvent]:
    """``count`` events a second apart about five widgets of one colour, each made on one
    of two lines (a related resource)."""
    return [
        ReceivedEvent(
            occurred=start + timedelta(seconds=i),
            event="acme.widget.made",
            resource={"prefect.resource.id": f"acme.widget.{i % 5}", "colour": colour},  # type: ignore[arg-type]
            related=[
                {"prefect.resource.id": f"acme.line.{i % 2}", "prefect.resource.role": "line"}
            ],  # type: ignore[list-item]
            id=uuid.uuid4(),
            received=start,
        )
        for i in range(count)
    ]


def labelled(labels: dict[str, Any]) -> EventFilter:
    return msgspec.convert(
        {"occurred": WINDOW, "resource": {"labels": labels}}, EventFilter, strict=False
    )


def total(store: EventStore, labels: dict[str, Any]) -> int:
    return query_events(store, labelled(labels), 1).total


def on_line(line: str) -> EventFilter:
    return msgspec.convert(
        {"occurred": WINDOW, "related": {"id": [line], "role": ["line"]}}, EventFilter
    )


def through(store: EventStore) -> int:
    rows = store.fetchall(
        "SELECT value::BIGINT FROM localevents_meta WHERE key = 'label_sets_through'"
    )
    return int(rows[0][0])


def test_a_label_query_catches_up_once_enough_events_lie_past_the_table(
    store: EventStore,
) -> None:
    """Up to the threshold a label query reads the new events' JSON; past it, the query
    first records their label sets, one row per distinct set."""
    store.label_sets.catch_up_after = 30
    store.write_events(received(30, "red"))
    assert total(store, {"colour": "red"}) == 30
    assert store.label_sets.catch_ups == 0
    assert through(store) == 0

    store.write_events(received(10, "blue"))
    assert total(store, {"colour": "blue"}) == 10
    assert store.label_sets.catch_ups == 1
    assert through(store) == 40
    assert store.fetchall("SELECT count(*) FROM resource_sets") == [(10,)]  # 5 ids x 2 colours
    assert store.fetchall("SELECT count(*) FROM related_sets") == [(2,)]  # 2 lines
    assert total(store, {"colour": "red"}) == 30
    assert query_events(store, on_line("acme.line.1"), 1).total == 20
    counts = count_events(store, labelled({"colour": "blu*"}), Countable.event)
    assert [(c.value, c.count) for c in counts] == [("acme.widget.made", 10)]
    assert store.label_sets.catch_ups == 1  # nothing new to add


class _RecordingCursor:
    """A store cursor that notes each statement run through it (each still runs)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.statements: list[str] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append(sql)
        return self.cursor.execute(sql) if params is None else self.cursor.execute(sql, params)


def test_deciding_not_to_catch_up_reads_nothing_when_few_events_can_lie_past(
    store: EventStore,
) -> None:
    """Every label query first asks whether to catch the tables up. When the store's own
    count shows that no more than the threshold can lie past them, the answer costs no
    statement (it cost four, about 2 ms of every query); past it, the file decides."""
    store.label_sets.catch_up_after = 30
    store.write_events(received(30, "red"))
    cursor = _RecordingCursor(store.cursor())
    assert store.label_sets.catch_up(cast("Any", cursor), stored=store.next_seq)
    assert cursor.statements == []

    store.write_events(received(10, "blue"))
    assert store.label_sets.catch_up(cast("Any", cursor), stored=store.next_seq)
    assert cursor.statements  # 40 past: it looked, and caught up
    assert through(store) == 40

    cursor.statements.clear()
    store.write_events(received(10, "green", T0 + timedelta(days=1)))  # 10 past the new reach
    assert store.label_sets.catch_up(cast("Any", cursor), stored=store.next_seq)
    assert cursor.statements == []
    assert total(store, {"colour": "green"}) == 10


def test_a_label_query_reads_the_label_sets_once_for_all_of_its_statements(
    store: EventStore,
) -> None:
    """The count and every page read of one query use the keys found once; nothing of
    them is left behind."""
    store.write_events(received(40, "red") + received(40, "blue", T0 + timedelta(days=1)))
    store.label_sets.catch_up(store.cursor(), after=0)
    with recorded_statements(store) as statements:
        page = query_events(store, labelled({"colour": "red"}), 3)
        on_line_0 = query_events(store, on_line("acme.line.0"), 3)
    assert (page.total, len(page.events)) == (40, 3)
    assert (on_line_0.total, len(on_line_0.events)) == (40, 3)
    assert len(statements) >= 4  # the count, then at least one read of rows, twice
    # No statement tests the labels again: the count reads the sets' counts by key.
    assert not [sql for sql in statements if "colour" in sql or "list_contains" in sql]
    assert all("label_keys_0" in sql for sql in statements if "_sets" in sql)
    temporary = "SELECT count(*) FROM duckdb_tables() WHERE temporary"
    assert store.cursor().execute(temporary).fetchall() == [(0,)]


def test_a_count_by_resource_groups_the_covered_events_by_label_set(store: EventStore) -> None:
    """Events the tables cover are grouped by their integer key and named from the label
    sets; events past the tables' reach are added one by one, whatever the filter."""
    store.write_events(received(40, "red"))
    store.label_sets.catch_up(store.cursor(), after=0)
    store.write_events(received(10, "blue", T0 + timedelta(days=1)))
    window = msgspec.convert({"occurred": WINDOW}, EventFilter, strict=False)
    with recorded_statements(store) as statements:
        counts = count_events(store, window, Countable.resource)
    assert [(c.value, c.count) for c in counts] == [(f"acme.widget.{i}", 10) for i in range(5)]
    assert [c.end_time for c in counts[:1]] == [T0 + timedelta(days=1, seconds=5)]
    assert len(statements) == 1
    assert "GROUP BY resource_key" in statements[0]
    assert "resource_sets" in statements[0]
    assert through(store) == 40  # 10 events past the tables: not worth catching up


def test_a_filter_the_tables_cannot_answer_never_writes_them(store: EventStore) -> None:
    """A filter on event names is tested on every event: catching the tables up would
    not help it, so it does not."""
    store.label_sets.catch_up_after = 0
    store.write_events(received(20, "red"))
    by_name = msgspec.convert(
        {"occurred": WINDOW, "event": {"prefix": ["acme.widget."]}}, EventFilter, strict=False
    )
    assert query_events(store, by_name, 1).total == 20
    assert [c.count for c in count_events(store, by_name, Countable.event)] == [20]
    assert store.label_sets.catch_ups == 0
    assert store.fetchall("SELECT count(*) FROM resource_sets") == [(0,)]
    assert store.fetchall("SELECT count(*) FROM related_sets") == [(0,)]


def test_a_key_shared_by_two_label_sets_turns_the_table_off_for_good(tmp_path: Path) -> None:
    """A (simulated) hash collision: the table holds another label set under the key of
    stored events. Catching up notices, and label filters go back to each event's JSON."""
    path = str(tmp_path / "events.duckdb")
    store = open_store(path)
    try:
        store.write_events(received(5, "red"))
        key = store.fetchall("SELECT resource_key FROM events LIMIT 1")[0][0]
        store.cursor().execute(
            "INSERT INTO resource_sets (key, resource_id, resource) VALUES (?, 'acme.other', "
            '\'{"prefect.resource.id":'
            '"acme.other","colour":"blue"}\')',
            [key],
        )
        store.label_sets.catch_up(store.cursor(), after=0)
        assert store.label_sets.exact is False
        assert total(store, {"colour": "blue"}) == 0
        assert total(store, {"colour": "red"}) == 5
    finally:
        release(store)
    reopened = open_store(path)
    try:
        assert reopened.label_sets.exact is False
        assert total(reopened, {"colour": "red"}) == 5
    finally:
        release(reopened)


def _bulk_old(store: EventStore, count: int, expired_in_ten: int) -> None:
    """``count`` events written with SQL alone (fast): ``expired_in_ten`` in ten of them
    years before T0 (expired), the others the day before it, interleaved. They take the
    next ``seq`` numbers as the store's writer would."""
    first = store._next_seq
    store.cursor().execute(
        """
        INSERT INTO events (id, occurred, event, resource_id, resource, related, related_ids,
                            related_roles, payload, follows, received, resource_key,
                            related_key, seq)
        SELECT uuid(), occurred, 'acme.old', rid, resource, '[]', [], [], '{}', NULL,
               occurred, hash(resource), hash('[]'::JSON), ? + i
        FROM (
            SELECT i, CASE WHEN i % 10 < ? THEN make_timestamptz(1_600_000_000_000_000 + i)
                        ELSE ?::TIMESTAMPTZ END AS occurred,
                   'acme.old.' || (i % 100) AS rid,
                   json_object('prefect.resource.id', rid, 'colour', 'grey') AS resource
            FROM range(?) AS t(i)
        )
        """,
        [first, expired_in_ten, T0 - timedelta(days=1), count],
    )
    store._next_seq = first + count


def test_events_moved_down_by_a_deletion_are_counted_once(store: EventStore) -> None:
    """Retention deletes most rows of the first row groups and its checkpoint vacuums
    them, merging the groups: the rows after them move to lower rowids. The tables' reach
    is a ``seq``, which does not move: the events past it are still found, none is
    counted twice, and the deleted ones are no longer counted."""
    _bulk_old(store, 250_000, 5)
    store.label_sets.catch_up(store.cursor(), after=0)
    assert through(store) == 250_000
    store.write_events(received(10, "blue"))
    _bulk_old(store, 150_000, 5)
    deleted = delete_expired(store, datetime(2021, 1, 1, tzinfo=UTC))
    assert deleted == 200_000
    assert through(store) == 250_000
    moved = store.fetchall("SELECT min(rowid) FROM events WHERE resource ->> 'colour' = 'blue'")
    assert moved[0][0] < 250_000  # the new events moved below the old reach of the table
    assert total(store, {"colour": "blue"}) == 10
    assert total(store, {"colour": "grey"}) == 200_000
    assert_set_counts_exact(store)
    store.label_sets.catch_up(store.cursor(), after=0)
    assert total(store, {"colour": "grey"}) == 200_000
    assert_set_counts_exact(store)
