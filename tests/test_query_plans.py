"""The fast query paths answer exactly what the plain definitions answer.

First pages probe time windows from the newest (or oldest) event before sorting every match;
related-id filters test the id and role list columns before the related JSON; label patterns
and text search test the raw JSON text before parsing it; count-by resource reads names from
the latest row of each group only. Each test builds data where the shortcut alone would give
a wrong answer, and checks the stored answer against ``EventFilter.includes``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec
import pytest

from localevents import ConfigurationError
from localevents._settings import settings_from_environ, temporary_settings
from localevents.events._counting import Countable
from localevents.events._filters import EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.storage import (
    count_events,
    open_store,
    query_events,
    query_next_page,
    release,
)
from tests._statements import recorded_statements

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localevents.storage import EventStore

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
NAME = "prefect.resource.name"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = {"since": "2025-01-01T00:00:00Z", "until": "2025-04-01T00:00:00Z"}


def _event(
    minute: float,
    name: str,
    resource: dict[str, str],
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=T0 + timedelta(minutes=minute),
        event=name,
        resource=resource,  # type: ignore[arg-type]
        related=related or [],  # type: ignore[arg-type]
        payload=payload or {},
        id=uuid.uuid4(),
        received=T0,
    )


def _dataset() -> list[ReceivedEvent]:
    events = []
    # 600 events over ten days; "rare" ones only in the first hour, "late" ones only in the
    # last hour, "split" ones mostly in the first quarter and two near the end (a window
    # sized for evenly spread matches misses from the newest end and must widen).
    for n in range(600):
        minute = n * 24.0
        split = 3 <= n < 150 or n in (595, 596)
        kind = "rare" if n < 3 else "late" if n >= 597 else "split" if split else "common"
        events.append(
            _event(minute, f"acme.{kind}.seen", {ID: f"acme.thing.{n % 7}", NAME: f"thing {n % 7}"})
        )
    flow_a = {ID: "prefect.flow.a", ROLE: "flow", NAME: "alpha"}
    flow_b_as_tag = {ID: "prefect.flow.b", ROLE: "tag"}
    tag_a = {ID: "prefect.flow.a", ROLE: "tag"}
    events += [
        # prefect.flow.a and the role flow are both there, but on different resources here
        _event(5, "rel.split", {ID: "r.1"}, [flow_b_as_tag, {ID: "prefect.x", ROLE: "flow"}]),
        _event(6, "rel.crossed", {ID: "r.2"}, [tag_a, {ID: "prefect.flow.b", ROLE: "flow"}]),
        _event(7, "rel.match", {ID: "r.3"}, [flow_a]),
        # "alpha" occurs in the related JSON, but as a key, not as the name's value
        _event(8, "rel.key", {ID: "r.4"}, [{ID: "prefect.y", ROLE: "flow", "alpha": "x"}]),
        # label values with characters the JSON text escapes, and a dotted capital I
        _event(9, "lbl.quote", {ID: "q.1", NAME: 'say "hi" \\ there'}),
        _event(10, "lbl.key", {ID: "q.2", "say hi": "no"}),
        _event(11, "txt.dotted", {ID: "t.1", "city": "İSTANBUL"}),
        _event(12, "txt.keyonly", {ID: "t.2", "needlekey": "value"}),
        _event(13, "txt.value", {ID: "t.3", "x": "a NeedleKey b"}),
    ]
    return events


EVENTS = _dataset()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    opened = open_store(str(tmp_path_factory.mktemp("plans") / "events.duckdb"))
    try:
        opened.write_events(EVENTS)
        yield opened
    finally:
        release(opened)


def _filter(body: dict[str, Any]) -> EventFilter:
    return msgspec.json.decode(msgspec.json.encode({"occurred": WINDOW, **body}), type=EventFilter)


def _ids(events: list[str]) -> list[uuid.UUID]:
    return [uuid.UUID(msgspec.json.decode(e)["id"]) for e in events]


def _expected(event_filter: EventFilter) -> list[uuid.UUID]:
    found = [e for e in EVENTS if event_filter.includes(e)]
    found.sort(key=lambda e: (e.occurred, e.id), reverse=event_filter.order == "DESC")
    return [e.id for e in found]


def _all_pages(store: EventStore, event_filter: EventFilter, limit: int) -> tuple[list[Any], int]:
    page = query_events(store, event_filter, limit)
    ids, total = _ids(page.events), page.total
    while page.next_token is not None:
        page = query_next_page(store, page.next_token)
        ids += _ids(page.events)
    return ids, total


@pytest.mark.parametrize("order", ["DESC", "ASC"])
@pytest.mark.parametrize("kind", ["rare", "late", "split", "common"])
@pytest.mark.parametrize("limit", [2, 5])
def test_first_page_is_the_true_first_page_wherever_the_matches_lie(
    store: EventStore, order: str, kind: str, limit: int
) -> None:
    event_filter = _filter({"event": {"prefix": [f"acme.{kind}."]}, "order": order})
    expected = _expected(event_filter)
    page = query_events(store, event_filter, limit)
    assert _ids(page.events) == expected[:limit]
    assert page.total == len(expected)
    assert _all_pages(store, event_filter, limit) == (expected, len(expected))


def _page_reads(store: EventStore, event_filter: EventFilter, limit: int) -> int:
    """How many statements reading rows (not counting them) a first page takes."""
    with recorded_statements(store) as statements:
        query_events(store, event_filter, limit)
    return len([sql for sql in statements if "count(" not in sql])


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_a_first_page_starts_at_the_first_match_not_at_the_window_edge(
    store: EventStore, order: str
) -> None:
    # The matches lie a year inside the filter's window: a first window anchored at
    # its edge would miss and widen (several reads); one anchored at the first match holds
    # the page at once.
    event_filter = _filter(
        {
            "occurred": {"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            "event": {"prefix": ["acme.common."]},
            "order": order,
        }
    )
    assert _page_reads(store, event_filter, 3) == 1
    assert _ids(query_events(store, event_filter, 3).events) == _expected(event_filter)[:3]


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_distinct_first_page_probes_windows_without_losing_resources(
    store: EventStore, order: str
) -> None:
    event_filter = _filter({"resource": {"distinct": True, "id_prefix": ["acme."]}, "order": order})
    page = query_events(store, event_filter, 3)
    newest: dict[str, ReceivedEvent] = {}
    matching = [e for e in EVENTS if event_filter.includes(e)]
    matching.sort(key=lambda e: (e.occurred, e.id), reverse=order == "DESC")
    for e in matching:
        newest.setdefault(e.resource.id, e)
    expected = sorted(newest.values(), key=lambda e: (e.occurred, e.id), reverse=order == "DESC")
    assert _ids(page.events) == [e.id for e in expected[:3]]
    assert page.total == 7
    # later pages, each read through windows from its keyset, repeat no resource
    assert _all_pages(store, event_filter, 2) == ([e.id for e in expected], 7)


RELATED_CASES = [
    {"related": {"id": ["prefect.flow.a"], "role": ["flow"]}},
    {"related": {"id": ["prefect.flow.b"], "role": ["tag"]}},
    {"related": {"id": ["prefect.nothing", "prefect.flow.a", "prefect.x"], "role": ["x", "flow"]}},
    {"related": {"resources_in_roles": [["prefect.flow.a", "flow"]]}},
    {"related": {"resources_in_roles": [["prefect.flow.b", "flow"], ["prefect.x", "tag"]]}},
    {"related": {"labels": {NAME: "alph*", ROLE: "flow"}}},
    {"related": {"id": ["prefect.flow.a"], "labels": {ROLE: "tag"}}},
    {"related": {"labels": {ID: "prefect.flow.*", ROLE: ["flow"]}}},
    {"any_resource": {"id": ["prefect.flow.a"], "labels": {ROLE: "flow"}}},
    {"any_resource": {"labels": {NAME: "alph?"}}},
]


@pytest.mark.parametrize("body", RELATED_CASES)
def test_related_filters_keep_every_criterion_on_one_resource(
    store: EventStore, body: dict[str, Any]
) -> None:
    event_filter = _filter(body)
    expected = _expected(event_filter)
    page = query_events(store, event_filter, 100)
    assert _ids(page.events) == expected
    assert page.total == len(expected)


def test_role_constraints_hold_on_the_resource_with_the_id(store: EventStore) -> None:
    page = query_events(
        store, _filter({"related": {"id": ["prefect.flow.a"], "role": ["flow"]}}), 9
    )
    assert [msgspec.json.decode(e)["event"] for e in page.events] == ["rel.match"]


LABEL_CASES = [
    ({"resource": {"labels": {NAME: 'say "hi"*'}}}, ["lbl.quote"]),
    ({"resource": {"labels": {NAME: "*\\ there"}}}, ["lbl.quote"]),
    ({"resource": {"labels": {NAME: "say hi*"}}}, []),
    ({"resource": {"labels": {NAME: ["thing 3", "say*"]}}}, None),
    ({"resource": {"labels": {NAME: "!thing*"}}}, None),
]


@pytest.mark.parametrize(("body", "names"), LABEL_CASES)
def test_label_patterns_match_values_not_json_text(
    store: EventStore, body: dict[str, Any], names: list[str] | None
) -> None:
    event_filter = _filter(body)
    expected = _expected(event_filter)
    page = query_events(store, event_filter, 1000)
    assert _ids(page.events) == expected
    if names is not None:
        assert sorted({msgspec.json.decode(e)["event"] for e in page.events}) == names


TEXT_CASES = [
    ("needlekey", ["txt.value"]),  # the key "needlekey" is not searchable text
    ("alpha", ["rel.match"]),  # a related name; the key "alpha" is not
    ("stanbul", ["txt.dotted"]),
    ("istanbul", []),  # İ folds to i + U+0307, as in Python
    ("rel.key prefect.y", ["rel.key"]),  # a term spanning two parts (it has a space)
    ("-acme +rel", ["rel.crossed", "rel.key", "rel.match", "rel.split"]),
]


@pytest.mark.parametrize(("query", "names"), TEXT_CASES)
def test_text_search_looks_in_values_only(store: EventStore, query: str, names: list[str]) -> None:
    event_filter = _filter({"text": {"query": query}})
    page = query_events(store, event_filter, 1000)
    assert sorted(msgspec.json.decode(e)["event"] for e in page.events) == names
    assert _ids(page.events) == _expected(event_filter)


def test_count_by_resource_takes_the_latest_name(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        store.write_events(
            [
                _event(1, "a", {ID: "r.1", NAME: "old"}),
                _event(3, "a", {ID: "r.1", NAME: "new"}),
                _event(2, "a", {ID: "r.1", NAME: "middle"}),
                _event(1, "a", {ID: "r.2", "prefect.name": "legacy"}),
                _event(2, "a", {ID: "r.3"}),
            ]
        )
        counts = count_events(store, _filter({}), Countable.resource)
    finally:
        release(store)
    assert [(c.value, c.label, c.count) for c in counts] == [
        ("r.1", "new", 3),
        ("r.2", "legacy", 1),
        ("r.3", "r.3", 1),
    ]
    assert counts[0].start_time == T0 + timedelta(minutes=1)
    assert counts[0].end_time == T0 + timedelta(minutes=3)


def test_no_progress_bar_is_drawn_on_the_callers_output(tmp_path: Path) -> None:
    """DuckDB draws a progress bar on stdout during statements over ~2 s on a database's
    first connection (where a store upgrades the file and commits), which would land in
    the server's log; the store's connection turns it off. Checked in a process of its
    own: under pytest's captured output DuckDB leaves the bar off anyway."""
    script = (
        "import sys; from localevents.storage._engine import _connect; "
        "con = _connect(sys.argv[1], '256MB'); "
        "print(con.execute(\"SELECT current_setting('enable_progress_bar')\").fetchall())"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "a.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert finished.stdout.strip() == "[(False,)]"


def test_memory_limit_setting_applies_and_bad_values_are_refused(tmp_path: Path) -> None:
    with temporary_settings(database_memory_limit="100MB"):
        store = open_store(str(tmp_path / "a.duckdb"))
        try:
            limit = store.fetchall("SELECT current_setting('memory_limit')")[0][0]
        finally:
            release(store)
    assert limit.startswith("95.3")  # 100 MB in MiB, as DuckDB spells it
    with (
        temporary_settings(database_memory_limit="lots"),
        pytest.raises(ConfigurationError, match="LOCALEVENTS_DATABASE_MEMORY_LIMIT"),
    ):
        open_store(str(tmp_path / "b.duckdb"))


def test_threads_setting_applies_and_defaults_to_duckdbs(tmp_path: Path) -> None:
    with temporary_settings(database_threads=1):
        store = open_store(str(tmp_path / "a.duckdb"))
        try:
            threads = store.fetchall("SELECT current_setting('threads')")[0][0]
        finally:
            release(store)
    assert threads == 1
    store = open_store(str(tmp_path / "b.duckdb"))
    try:
        default = store.fetchall("SELECT current_setting('threads')")[0][0]
    finally:
        release(store)
    with duckdb.connect(":memory:") as plain:  # DuckDB's own default: a thread per core
        assert default == plain.execute("SELECT current_setting('threads')").fetchall()[0][0]
    with pytest.raises(ConfigurationError, match="LOCALEVENTS_DATABASE_THREADS must be > 0"):
        settings_from_environ({"LOCALEVENTS_DATABASE_THREADS": "0"})
    assert settings_from_environ({"LOCALEVENTS_DATABASE_THREADS": "3"}).database_threads == 3
