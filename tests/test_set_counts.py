"""Totals and counts by resource read from the label sets' event counts
(``storage._set_counts``): the same answers as testing every event, whatever the window
cuts through, however far the tables reach, and after deletions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from localevents.events import Countable, EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.storage import count_events, open_store, query_events, release
from tests._set_counts import assert_set_counts_exact

if TYPE_CHECKING:
    from pathlib import Path

    from localevents.storage import EventStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def made(count: int, start: int = 0) -> list[ReceivedEvent]:
    """Events a minute apart from ``T0 + start`` minutes about six pumps; each pump's
    colour (a label) and name change halfway through the 240 minutes, so each has two label
    sets; each event names one of three lines as a related resource."""
    events = []
    for i in range(start, start + count):
        later = i >= 120
        resource = {
            "prefect.resource.id": f"acme.pump.{i % 6}",
            "prefect.resource.name": f"Pump {i % 6}{' (renamed)' if later else ''}",
            "colour": "blue" if later else "red",
        }
        events.append(
            ReceivedEvent(
                occurred=T0 + i * MINUTE,
                event="acme.pump.ran",
                resource=resource,  # type: ignore[arg-type]
                related=[
                    {"prefect.resource.id": f"acme.line.{i % 3}", "prefect.resource.role": "line"}
                ],  # type: ignore[list-item]
                id=uuid.uuid4(),
                received=T0,
            )
        )
    return events


def at(minute: float) -> str:
    return (T0 + minute * MINUTE).isoformat()


WINDOWS = {
    "all of it": (at(-60), at(300)),
    "cut at both ends": (at(50), at(170)),
    "the first half": (at(-60), at(119)),
    "one instant": (at(100), at(100)),
    "ends on events": (at(0), at(239)),
    "before every event": (at(-60), at(-1)),
}

TESTS: dict[str, dict[str, Any]] = {
    "time only": {},
    "a label": {"resource": {"labels": {"colour": "red"}}},
    "a negated label": {"resource": {"labels": {"colour": "!red"}}},
    "a name pattern": {"resource": {"labels": {"prefect.resource.name": "Pump 1*"}}},
    "an id prefix": {"resource": {"id_prefix": ["acme.pump.2"]}},
    "an id and a label": {"resource": {"id": ["acme.pump.3"], "labels": {"colour": "blue"}}},
    "a related id": {"related": {"id": ["acme.line.1"]}},
    "a related role and id": {"related": {"id": ["acme.line.2"], "role": ["line"]}},
    "two related tests": {"related": [{"id": ["acme.line.0"]}, {"role": ["line"]}]},
}


def a_filter(window: tuple[str, str], test: dict[str, Any]) -> EventFilter:
    body = {"occurred": {"since": window[0], "until": window[1]}, **test}
    return msgspec.convert(body, EventFilter, strict=False)


def expected_by_resource(events: list[ReceivedEvent], event_filter: EventFilter) -> list[Any]:
    """What a count by resource answers, computed from the events in memory."""
    groups: dict[str, list[ReceivedEvent]] = {}
    for e in events:
        if event_filter.includes(e):
            groups.setdefault(e.resource.id, []).append(e)
    rows = []
    for rid, members in groups.items():
        latest = max(members, key=lambda e: e.occurred)
        first = min(e.occurred for e in members)
        rows.append((rid, latest.resource.get("prefect.resource.name"), len(members), first))
    return sorted(rows, key=lambda r: (-r[2], r[1], r[0]))


def write(store: EventStore, reach: str) -> list[ReceivedEvent]:
    """The 240 events, with the label set tables reaching none, half or all of them;
    "deleted": all, then the first 30 minutes and every event of pump 5 before the
    renaming deleted (the sets they were in count less, or go)."""
    events = made(240)
    middle = 120 if reach == "half" else 240
    store.write_events(events[:middle])
    if reach != "none":
        store.label_sets.catch_up(store.cursor(), after=0)
    store.write_events(events[middle:])
    if reach == "deleted":
        doomed = "occurred < ? OR (resource_id = 'acme.pump.5' AND occurred < ?)"
        store.delete_events(doomed, [T0 + 30 * MINUTE, T0 + 120 * MINUTE])
        events = [
            e
            for e in events
            if not (
                e.occurred < T0 + 30 * MINUTE
                or (e.resource.id == "acme.pump.5" and e.occurred < T0 + 120 * MINUTE)
            )
        ]
    return events


@pytest.mark.parametrize("reach", ["none", "half", "all", "deleted"])
def test_totals_and_resource_counts_match_the_events(store: EventStore, reach: str) -> None:
    events = write(store, reach)
    store.label_sets.catch_up_after = 10**9  # the queries count what the write left
    assert_set_counts_exact(store)
    for window_name, window in WINDOWS.items():
        for test_name, test in TESTS.items():
            case = f"{window_name}, {test_name}"
            event_filter = a_filter(window, test)
            matches = [e for e in events if event_filter.includes(e)]
            for order in ("DESC", "ASC"):
                ordered = msgspec.structs.replace(event_filter, order=order)
                page = query_events(store, ordered, 5)
                assert page.total == len(matches), f"{case}, {order}"
                first = sorted(matches, key=lambda e: e.occurred, reverse=order == "DESC")[:5]
                returned = [msgspec.json.decode(text)["id"] for text in page.events]
                assert returned == [str(e.id) for e in first], f"{case}, {order}"
            counts = count_events(store, event_filter, Countable.resource)
            assert [(c.value, c.label, c.count, c.start_time) for c in counts] == (
                expected_by_resource(events, event_filter)
            ), case


def test_a_total_on_time_and_labels_is_read_from_the_set_counts(store: EventStore) -> None:
    """With the tables caught up, a filter on time and labels sums the sets' counts
    instead of reading the events (a recorded count, altered here, shows in the answer);
    a filter on anything else still reads the events."""
    store.write_events(made(240))
    store.label_sets.catch_up(store.cursor(), after=0)
    store.cursor().execute(
        "UPDATE resource_sets SET event_count = event_count + 1000 "
        "WHERE resource_id = 'acme.pump.1' AND resource ->> 'colour' = 'red'"
    )
    window = (at(-60), at(300))
    red = a_filter(window, {"resource": {"labels": {"colour": "red"}}})
    assert query_events(store, red, 1).total == 1120
    by_resource = {c.value: c.count for c in count_events(store, red, Countable.resource)}
    assert by_resource["acme.pump.1"] == 1020
    named = a_filter(window, {"event": {"name": ["acme.pump.ran"]}, "resource": red.resource})
    assert query_events(store, named, 1).total == 120


def test_events_stored_after_the_newest_were_deleted_are_counted(tmp_path: Path) -> None:
    """Deleting the newest events does not hand their ``seq`` numbers out again after a
    restart: the next events are numbered past the tables' reach, so they are counted."""
    path = str(tmp_path / "events.duckdb")
    store = open_store(path)
    try:
        store.write_events(made(30))
        store.label_sets.catch_up(store.cursor(), after=0)
        store.delete_events("occurred >= ?", [T0 + 20 * MINUTE])
    finally:
        release(store)
    store = open_store(path)
    try:
        store.write_events(made(10, start=100))
        everything = a_filter((at(-60), at(300)), {})
        assert query_events(store, everything, 1).total == 30
        assert sum(c.count for c in count_events(store, everything, Countable.resource)) == 30
        store.label_sets.catch_up(store.cursor(), after=0)
        assert_set_counts_exact(store)
        assert query_events(store, everything, 1).total == 30
    finally:
        release(store)


def test_each_commit_numbers_its_events_after_the_last(store: EventStore) -> None:
    store.write_events(made(5))
    store.write_events(made(3, start=5))
    seqs = store.fetchall("SELECT seq FROM events ORDER BY occurred")
    assert sorted(s for (s,) in seqs[:5]) == [0, 1, 2, 3, 4]
    assert sorted(s for (s,) in seqs[5:]) == [5, 6, 7]
