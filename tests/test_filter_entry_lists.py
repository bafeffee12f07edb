"""Lists of ``related`` and ``any_resource`` entries: stored queries and counts agree with
``EventFilter.includes`` however many entries a list holds and however they combine ids,
roles and labels, and a filter with every list at its limit answers within a small memory
limit (``storage._sql``: the related entries share one key table; ``any_resource`` entries
are one bit each of a mask per kind of label set).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from _stored import check_within_memory, store_holding

from localevents.events._counting import Countable
from localevents.events._filters import MAXIMUM_RESOURCE_FILTERS, EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.samples import write_sample_database
from localevents.storage import count_events, query_events

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
NAME = "prefect.resource.name"
T0 = datetime(2026, 2, 1, tzinfo=UTC)
WINDOW = {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}

IDS = [f"acme.{kind}.{i}" for kind in ("thing", "part", "tool") for i in range(4)]
ROLES = ["part", "tool", "owner"]
TAGS = ["red", "green", "blue", "red-dark"]


def _resource(rng: random.Random) -> dict[str, str]:
    resource = {ID: rng.choice(IDS)}
    if rng.random() < 0.7:
        resource["tag"] = rng.choice(TAGS)
    return resource


def _events(rng: random.Random, count: int) -> list[ReceivedEvent]:
    events = []
    for i in range(count):
        related = []
        for _ in range(rng.randint(0, 3)):
            related.append({**_resource(rng), ROLE: rng.choice(ROLES)})
        body = {
            "occurred": T0 + timedelta(seconds=i),
            "event": rng.choice(["acme.seen", "acme.moved"]),
            "resource": _resource(rng),
            "related": related,
            "id": uuid.UUID(int=i + 1),
            "received": T0,
        }
        events.append(msgspec.convert(body, ReceivedEvent, from_attributes=True))
    return events


def _labels(rng: random.Random, *, role: bool) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    if rng.random() < 0.6:
        labels["tag"] = rng.sample([*TAGS, "red*", "*e*", "!red"], rng.randint(1, 2))
    if rng.random() < 0.3:
        labels[ID] = rng.choice(["acme.part.*", "acme.t*", "acme.thing.1"])
    if role and rng.random() < 0.3:
        labels[ROLE] = rng.choice(ROLES)
    return labels


def _any_entry(rng: random.Random) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if rng.random() < 0.4:
        entry["id"] = rng.sample(IDS, rng.randint(1, 3))
    if rng.random() < 0.3:
        entry["id_prefix"] = [rng.choice(["acme.part.", "acme.tool.", "acme.thing.3"])]
    labels = _labels(rng, role=True)
    if labels or not entry:
        entry["labels"] = labels or {"tag": "*"}
    return entry


def _related_entry(rng: random.Random) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if rng.random() < 0.3:
        entry["id"] = rng.sample(IDS, rng.randint(1, 3))
    if rng.random() < 0.3:
        entry["role"] = rng.sample(ROLES, rng.randint(1, 2))
    if rng.random() < 0.2:
        entry["resources_in_roles"] = [[rng.choice(IDS), rng.choice(ROLES)]]
    labels = _labels(rng, role=True)
    if labels or not entry:
        entry["labels"] = labels or {"tag": "*"}
    return entry


def _filters(rng: random.Random, count: int) -> Iterator[dict[str, Any]]:
    for _ in range(count):
        spec: dict[str, Any] = {"occurred": WINDOW}
        shape = rng.random()
        if shape < 0.8:
            spec["any_resource"] = [_any_entry(rng) for _ in range(rng.randint(1, 5))]
        if shape > 0.5:
            spec["related"] = [_related_entry(rng) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.2:
            spec["resource"] = {"labels": _labels(rng, role=False) or {"tag": "*"}}
        yield spec


@pytest.fixture(scope="module")
def dataset() -> tuple[list[ReceivedEvent], list[dict[str, Any]]]:
    rng = random.Random(1124)
    return _events(rng, 400), list(_filters(rng, 120))


@pytest.mark.parametrize("covered", [True, False], ids=["label-sets", "past-label-sets"])
def test_entry_lists_take_exactly_the_events_they_include(
    tmp_path: Path,
    dataset: tuple[list[ReceivedEvent], list[dict[str, Any]]],
    covered: bool,
) -> None:
    """Each of 120 random filters with 1-5 ``any_resource`` and 1-4 ``related`` entries
    (ids, id prefixes, roles, pairs, label patterns) takes the events ``includes`` accepts,
    and counts them by event name alike, whether the label sets hold the events or the
    query reads them past the sets."""
    events, filters = dataset
    with store_holding(tmp_path / "events.duckdb", events, covered=covered) as store:
        mismatches = []
        sizes = []
        for spec in filters:
            event_filter = msgspec.convert(spec, EventFilter)
            accepted = [e for e in events if event_filter.includes(e)]
            page = query_events(store, event_filter, 1000)
            got = {msgspec.json.decode(line)["id"] for line in page.events}
            by_name = {c.value: c.count for c in count_events(store, event_filter, Countable.event)}
            if got != {str(e.id) for e in accepted} or page.total != len(accepted):
                mismatches.append((spec, "events"))
            elif by_name != dict(Counter(e.event for e in accepted)):
                mismatches.append((spec, "counts"))
            sizes.append(len(accepted))
        assert not mismatches, mismatches[:3]
        assert sum(1 for size in sizes if 0 < size < len(events)) > len(filters) // 3


@pytest.mark.parametrize("lists", ["related", "any_resource", "both"])
def test_twenty_entries_with_labels_answer_within_a_small_memory_limit(
    tmp_path: Path, lists: str
) -> None:
    """20 entries that test labels, as many as a list may hold: each cost DuckDB hash
    joins of ~4.5 MB whatever the data, so 20 ``any_resource`` entries needed ~170 MB,
    20 ``related`` ones ~145 MB, and both lists at their limits ~250 MB, nearly all of the
    default limit; each now answers within 32 MB."""
    path = tmp_path / "events.duckdb"
    write_sample_database(path, 300, seed=5, start=T0, span=timedelta(hours=1))
    # distinct entries (one key table each), every one matching the names with a dash
    entries = [{"labels": {NAME: ["*-*", f"none-{i}"]}} for i in range(MAXIMUM_RESOURCE_FILTERS)]
    spec: dict[str, Any] = {"occurred": WINDOW}
    if lists in ("related", "both"):
        spec["related"] = entries
    if lists in ("any_resource", "both"):
        spec["any_resource"] = entries
        spec["resource"] = {"labels": {NAME: "*-*"}}
    event_filter = msgspec.convert(spec, EventFilter)
    check_within_memory(path, event_filter, "32MB")
