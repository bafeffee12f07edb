"""Long lists of label patterns: stored queries agree with ``EventFilter.includes`` on values
full of regular-expression, ``LIKE`` and JSON specials, and a filter at its size limits
answers within a small memory limit (``storage._sql``: one regular expression for a label's
exact values and prefixes, each label's value evaluated once).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from _stored import check_within_memory, store_holding

from localevents.events._filters import EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.samples import write_sample_database
from localevents.storage import open_store, query_events, release

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localevents.storage import EventStore

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
T0 = datetime(2026, 2, 1, tzinfo=UTC)
WINDOW = {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}

# Values that a regular expression, a LIKE or the stored JSON text would read as more than
# themselves, and plain ones that are prefixes of each other.
SPECIAL = [
    *".*+?()[]{}|^$\\",
    "%",
    "_",
    '"',
    "'",
    "\n",
    "\t",
    "\x01",
    "\x7f",
    "/",
    "~",
    "-",
    " ",
    "é",
    "€",
    "😀",
    "\\z",
    "\\A",
    "(?:",
]
PLAIN = ["a", "ab", "abc", "b", "ba", "x1", "x10", "z"]


def _value(rng: random.Random) -> str:
    pieces = SPECIAL + PLAIN
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))


def _events(rng: random.Random, count: int) -> list[ReceivedEvent]:
    events = []
    for i in range(count):
        resource = {ID: f"acme.thing.{i}", "tag": _value(rng)}
        if rng.random() < 0.2:
            del resource["tag"]  # a missing label never matches, negated or not
        related = [
            {ID: f"acme.part.{i}.{j}", ROLE: rng.choice(["part", "tool"]), "tag": _value(rng)}
            for j in range(rng.randint(0, 2))
        ]
        events.append(
            msgspec.convert(
                {
                    "occurred": T0 + timedelta(seconds=i),
                    "event": "acme.thing.seen",
                    "resource": resource,
                    "related": related,
                    "id": uuid.UUID(int=i + 1),
                    "received": T0,
                },
                ReceivedEvent,
                from_attributes=True,
            )
        )
    return events


def _pattern(rng: random.Random, values: list[str]) -> str:
    """An exact value, a prefix, a pattern with inner wildcards, or a negated one, mostly
    cut from values that occur."""
    value = rng.choice(values) if rng.random() < 0.8 else _value(rng)
    cut = rng.randint(0, len(value))
    kind = rng.random()
    if kind < 0.3:
        pattern = value
    elif kind < 0.6:
        pattern = value[:cut] + "*"
    elif kind < 0.85:
        pattern = value[:cut] + rng.choice(["*", "?", "*?"]) + value[cut + 1 :]
    else:
        pattern = value[:cut] + "*" + value[cut:] + "*"
    return ("!" + pattern) if rng.random() < 0.1 else pattern


def _filters(rng: random.Random, values: list[str], count: int) -> Iterator[dict[str, Any]]:
    for _ in range(count):
        patterns = [_pattern(rng, values) for _ in range(rng.randint(2, 30))]
        where = rng.choice(["resource", "related", "any_resource"])
        labels: dict[str, Any] = {"tag": patterns}
        if where == "related" and rng.random() < 0.5:
            labels[ROLE] = "part"
        yield {"occurred": WINDOW, where: {"labels": labels}}


@pytest.fixture(scope="module")
def dataset() -> tuple[list[ReceivedEvent], list[dict[str, Any]]]:
    rng = random.Random(2026)
    events = _events(rng, 400)
    values = sorted(
        {e.resource.get("tag", "") for e in events}
        | {r.get("tag", "") for e in events for r in e.related}
    )
    return events, list(_filters(rng, values, 150))


def _stored_ids(store: EventStore, spec: dict[str, Any]) -> set[str]:
    event_filter = msgspec.convert(spec, EventFilter)
    page = query_events(store, event_filter, 1000)
    assert page.total == len(page.events)
    return {msgspec.json.decode(line)["id"] for line in page.events}


@pytest.mark.parametrize("covered", [True, False], ids=["label-sets", "past-label-sets"])
def test_pattern_lists_take_exactly_the_events_they_include(
    tmp_path: Path,
    dataset: tuple[list[ReceivedEvent], list[dict[str, Any]]],
    covered: bool,
) -> None:
    """Each of 150 random lists of 2-30 patterns (exact, prefix, inner wildcard, negated)
    takes the events ``includes`` accepts, whether the label sets hold the events or the
    query reads them past the sets."""
    events, filters = dataset
    with store_holding(tmp_path / "events.duckdb", events, covered=covered) as store:
        mismatches = []
        taking = 0
        for spec in filters:
            event_filter = msgspec.convert(spec, EventFilter)
            expected = {str(e.id) for e in events if event_filter.includes(e)}
            got = _stored_ids(store, spec)
            if got != expected:
                mismatches.append((spec, sorted(got ^ expected)[:3]))
            taking += bool(got)
        assert not mismatches, mismatches[:3]
        assert taking > len(filters) // 3


def test_values_too_long_for_one_regular_expression_are_still_found(tmp_path: Path) -> None:
    """100 exact values of 10,000 bytes (regular-expression specials, then characters of
    four bytes each) make a regular expression DuckDB refuses to compile ("pattern too
    large"); the values are then tested one by one."""
    long_values = [f"{i:03d}" + "(.)|" * 250 + "😀" * 2250 for i in range(100)]
    events = [
        msgspec.convert(
            {
                "occurred": T0 + timedelta(seconds=i),
                "event": "acme.thing.seen",
                "resource": {ID: f"acme.thing.{i}", "tag": value},
                "id": uuid.UUID(int=i + 1),
                "received": T0,
            },
            ReceivedEvent,
            from_attributes=True,
        )
        for i, value in enumerate([long_values[7], long_values[42] + "x", "007"])
    ]
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        store.write_events(events)
        spec = {"occurred": WINDOW, "any_resource": {"labels": {"tag": long_values}}}
        assert _stored_ids(store, spec) == {str(uuid.UUID(int=1))}
    finally:
        release(store)


@pytest.mark.parametrize("where", ["resource", "related", "any_resource"])
def test_a_label_of_a_thousand_patterns_answers_within_the_memory_limit(
    tmp_path: Path, where: str
) -> None:
    """One label of 1000 patterns, as many as a list may hold: ORed tests parsed each label
    set's JSON once per pattern and ran out of the default 256 MB memory limit over only
    300 events; its value is now parsed once, well within 64 MB."""
    path = tmp_path / "events.duckdb"
    write_sample_database(path, 300, seed=5, start=T0, span=timedelta(hours=1))
    patterns = [f"*{i}*{i % 10}" for i in range(999)] + ["*-*"]
    entry = {"labels": {"prefect.resource.name": patterns}}
    spec = {"occurred": WINDOW, where: entry if where == "resource" else [entry]}
    event_filter = msgspec.convert(spec, EventFilter)
    check_within_memory(path, event_filter, "64MB")
