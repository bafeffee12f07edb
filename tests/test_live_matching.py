"""Live matching: each subscriber's share of a commit, found by lookups, is exactly what its
filter includes, and subscribers that pin down a resource cost a lookup, not a pass over the
commit (``localevents.server._live_match``)."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest

from localevents._settings import get_settings
from localevents.events._filters import EventFilter
from localevents.events._samples import generate_events
from localevents.events._schemas import ReceivedEvent
from localevents.server._hub import LiveHub
from localevents.server._ingest import decode_events
from localevents.server._live_match import Axis, CommitMatcher, route_of, untimed
from localevents.storage import open_store, query_events, release
from localevents.storage._rows import EncodedEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _event(index: int, name: str, resource: str, *related: tuple[str, str]) -> dict[str, Any]:
    return {
        "occurred": (NOW + timedelta(seconds=index)).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": resource, "tier": "gold" if index % 2 else "blue"},
        "related": [
            {"prefect.resource.id": rid, "prefect.resource.role": role} for rid, role in related
        ],
        "payload": {"step": index, "note": "one" if index % 3 else "two"},
        "id": str(uuid.UUID(int=index + 1)),
    }


# Crafted so that ids recur across axes: ``f1`` is a related flow of several events and the
# primary resource of one; ``r2`` is a primary resource and a related parent; one event
# lists ``f1`` twice, in two roles.
CRAFTED = [
    _event(0, "a.one", "r1", ("f1", "flow"), ("d1", "deployment")),
    _event(1, "a.two", "r2", ("f1", "flow")),
    _event(2, "b.one", "r1"),
    _event(3, "b.two", "f1", ("r2", "parent")),
    _event(4, "a.one", "r3", ("d1", "flow")),
    _event(5, "a.%_", "r4", ("f1", "flow"), ("f1", "owner")),
]


def _sampled() -> list[dict[str, Any]]:
    """Varied events from the sample generator, after the crafted ones."""
    events = generate_events(300, seed=3, start=NOW + timedelta(minutes=1))
    return [msgspec.to_builtins(event) for event in events]


EVENTS = CRAFTED + _sampled()
SAMPLED = EVENTS[len(CRAFTED) :]


def _id(index: int) -> str:
    return str(EVENTS[index]["id"])


def _resource(index: int) -> str:
    return str(EVENTS[index]["resource"]["prefect.resource.id"])


def _first_related(index: int) -> str:
    return str(
        next(e for e in SAMPLED[index:] if e["related"])["related"][0]["prefect.resource.id"]
    )


# (filter, the axis its route takes, whether the route is exact)
CASES: list[tuple[dict[str, Any], Axis, bool]] = [
    ({}, Axis.ALL, True),
    ({"text": {"query": "one -two"}}, Axis.ALL, False),
    ({"resource": {"id_prefix": ["r"]}}, Axis.ALL, False),
    ({"resource": {"id": []}}, Axis.ALL, False),
    ({"related": {"role": ["flow"]}}, Axis.ALL, False),
    ({"event": {"name": ["a.one"]}}, Axis.NAME, True),
    ({"event": {"name": []}}, Axis.NAME, True),
    ({"event": {"prefix": ["a."], "exclude_name": ["a.two"]}}, Axis.NAME, True),
    ({"event": {"prefix": ["a.%"]}}, Axis.NAME, True),
    ({"event": {"exclude_prefix": ["b."]}, "text": {"query": "one"}}, Axis.NAME, False),
    ({"resource": {"id": ["r1", "r3"]}}, Axis.RESOURCE, True),
    ({"resource": {"id": ["r1"], "distinct": True}}, Axis.RESOURCE, True),
    ({"resource": {"id": ["r1"], "labels": {"tier": "gold"}}}, Axis.RESOURCE, False),
    ({"resource": {"id": ["r1", "f1"]}, "event": {"name": ["b.one"]}}, Axis.RESOURCE, False),
    ({"resource": {"id": ["nowhere"]}}, Axis.RESOURCE, True),
    ({"related": {"id": ["f1"]}}, Axis.RELATED, True),
    ({"related": [{"id": ["f1", "r2"]}]}, Axis.RELATED, True),
    ({"related": {"id": ["f1"], "role": ["owner"]}}, Axis.RELATED, False),
    ({"related": {"resources_in_roles": [["d1", "flow"]]}}, Axis.RELATED, False),
    ({"related": [{"role": ["deployment"]}, {"id": ["f1"]}]}, Axis.RELATED, False),
    ({"related": {"id": ["f1"]}, "event": {"prefix": ["a."]}}, Axis.RELATED, False),
    ({"any_resource": {"id": ["f1"]}}, Axis.ANY_RESOURCE, True),
    ({"any_resource": [{"id": ["r2"]}, {"id": ["f1"]}]}, Axis.ANY_RESOURCE, False),
    ({"any_resource": {"id": ["r2"], "labels": {"tier": "gold"}}}, Axis.ANY_RESOURCE, False),
    ({"id": {"id": [_id(2), str(uuid.UUID(int=10**9))]}}, Axis.ID, True),
    ({"id": {"id": [_id(0), _id(2)]}, "event": {"name": ["b.one"]}}, Axis.ID, False),
    ({"id": {"id": []}, "resource": {"id": ["r1"]}}, Axis.RESOURCE, False),
    ({"resource": {"id": [_resource(20), _resource(100)]}}, Axis.RESOURCE, True),
    ({"related": {"id": [_first_related(40)]}}, Axis.RELATED, True),
    ({"any_resource": {"id": [_first_related(7), _resource(9)]}}, Axis.ANY_RESOURCE, True),
    ({"event": {"name": [str(SAMPLED[5]["event"])]}}, Axis.NAME, True),
]


def _filter(spec: dict[str, Any]) -> EventFilter:
    """The filter of ``spec``, its window open since long before the events."""
    spec = {"occurred": {"since": "2000-01-01T00:00:00Z"}, **spec}
    return msgspec.json.decode(msgspec.json.encode(spec), type=EventFilter)


def _received(events: Sequence[dict[str, Any]]) -> list[ReceivedEvent]:
    return msgspec.json.decode(msgspec.json.encode(events), type=list[ReceivedEvent])


def _as_received(events: Sequence[dict[str, Any]]) -> list[EncodedEvents]:
    """A commit of two batches of ReceivedEvents (what ``store.write_events`` hands on)."""
    half = len(events) // 2
    return [EncodedEvents.of(_received(events[:half])), EncodedEvents.of(_received(events[half:]))]


def _as_posted(events: Sequence[dict[str, Any]]) -> list[EncodedEvents]:
    """A commit of three batches as the server decodes request bodies."""
    thirds = [events[i::3] for i in range(3)]
    settings = get_settings()
    return [decode_events(msgspec.json.encode(part), settings) for part in thirds]


def _in_commit_order(batches: Sequence[EncodedEvents]) -> list[ReceivedEvent]:
    lines = b"".join(batch.lines for batch in batches)
    return msgspec.json.Decoder(ReceivedEvent).decode_lines(lines)


@pytest.mark.parametrize("commit", [_as_received, _as_posted], ids=["received", "posted"])
@pytest.mark.parametrize(
    ("spec", "axis", "exact"), CASES, ids=[f"{i}-{c[1].value}" for i, c in enumerate(CASES)]
)
def test_a_filter_takes_exactly_the_events_it_includes(
    commit: Callable[[Sequence[dict[str, Any]]], list[EncodedEvents]],
    spec: dict[str, Any],
    axis: Axis,
    exact: bool,
) -> None:
    """Whatever route a filter takes, its share of a commit is the events ``includes``
    accepts, in commit order, across batches of either kind."""
    unwindowed = untimed(_filter(spec))
    route = route_of(unwindowed)
    assert (route.axis, route.exact) == (axis, exact)
    batches = commit(EVENTS)
    events = _in_commit_order(batches)
    expected = [i for i, event in enumerate(events) if unwindowed.includes(event, live=True)]
    assert CommitMatcher(batches).matching(unwindowed, route) == expected


def test_the_crafted_cases_match_what_they_were_crafted_for() -> None:
    """The crafted events do hit the tricky cases (else the agreement above proves less)."""
    batches = _as_received(CRAFTED)
    matcher = CommitMatcher(batches)

    def matching(spec: dict[str, Any]) -> list[int]:
        unwindowed = untimed(_filter(spec))
        return matcher.matching(unwindowed, route_of(unwindowed))

    assert matching({"any_resource": {"id": ["f1"]}}) == [0, 1, 3, 5]
    assert matching({"related": {"id": ["f1"]}}) == [0, 1, 5]
    assert matching({"related": {"id": ["f1"], "role": ["owner"]}}) == [5]
    assert matching({"related": {"resources_in_roles": [["d1", "flow"]]}}) == [4]
    assert matching({"any_resource": [{"id": ["r2"]}, {"id": ["f1"]}]}) == [1, 3]
    assert matching({"event": {"prefix": ["a.%"]}}) == [5]


class _CountingIncludes:
    """Counts the calls of ``EventFilter.includes`` (the full test of one event)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = EventFilter.includes

        def counted(self_: EventFilter, event: Any, *, live: bool = False) -> bool:
            self.calls += 1
            return original(self_, event, live=live)

        monkeypatch.setattr(EventFilter, "includes", counted)


async def test_subscribers_of_one_resource_each_cost_a_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100 subscribers, each following its own resource, get exactly their events from a
    1000-event commit without one filter being tested on an event; with a name beside the
    resource only the resource's own events are tested."""
    sample = [msgspec.to_builtins(e) for e in generate_events(1000, seed=5, start=NOW)]
    batches = _as_received(sample)
    events = _in_commit_order(batches)
    resources = list(dict.fromkeys(event.resource.id for event in events))[:100]
    assert len(resources) == 100
    counting = _CountingIncludes(monkeypatch)
    hub = LiveHub(maximum=10_000)
    with contextlib.ExitStack() as stack:
        subscriptions = [
            stack.enter_context(hub.open_subscription(_filter({"resource": {"id": [rid]}})))
            for rid in resources
        ]
        name = events[0].event
        named = _filter({"resource": {"id": [resources[0]]}, "event": {"name": [name]}})
        narrowed = stack.enter_context(hub.open_subscription(named))
        hub.fan_out(batches)
        of_first = [event for event in events if event.resource.id == resources[0]]
        assert counting.calls == len(of_first)  # the named one's candidates, and no more
        with anyio.fail_after(10):
            for rid, subscription in zip(resources, subscriptions, strict=True):
                got = [live.id for live in await subscription.receive()]
                assert got == [event.id for event in events if event.resource.id == rid]
            got = [live.id for live in await narrowed.receive()]
    assert got == [event.id for event in of_first if event.event == name]


# Payloads whose text the store spells differently from msgspec: a repeated key (both
# kept), floats written without an exponent, escapes resolved.
_SPELT = [
    '{"k":"alpha","k":"beta"}',
    '{"n":1e16}',
    '{"n":2.5e17,"m":[1.5e-6]}',
    '{"n":1e5,"m":1.50}',
    '{"s":"caf\\u00e9 \\/ \\u00c9T\\u00c9"}',
    '{"deep":{"k":"gamma","k":"delta"}}',
]
_SPELT_QUERIES = [
    "alpha",
    "-alpha",
    "beta",
    "gamma",
    "10000000000000000",
    "1e16",
    "250000000000000000.0",
    "0.0000015",
    "100000.0",
    '"n":1e5',
    "café /",
    "été",
    '"k":"alpha","k":"beta"',
]


@pytest.mark.parametrize("query", _SPELT_QUERIES)
def test_live_text_search_reads_the_payload_as_the_store_keeps_it(
    tmp_path: Path, query: str
) -> None:
    """Text search takes the same events live as from storage (D6), payloads the store
    respells included: a live match on msgspec's spelling missed the first of repeated keys
    and found ``1e16`` where a query finds ``10000000000000000.0``."""
    lines = [
        '{"occurred":"2026-01-01T00:00:00Z","event":"spelt","resource":{"prefect.resource.id":'
        f'"r.{index}"}},"payload":{payload},"id":"{uuid.UUID(int=index + 1)}"}}'
        for index, payload in enumerate(_SPELT)
    ]
    batch = decode_events(f"[{','.join(lines)}]".encode(), get_settings())
    store = open_store(str(tmp_path / "events.duckdb"))
    try:
        store.write_batch(batch)
        event_filter = _filter({"text": {"query": query}})
        page = query_events(store, msgspec.structs.replace(event_filter, order="ASC"), 50)
    finally:
        release(store)
    unwindowed = untimed(event_filter)
    live = CommitMatcher([batch]).matching(unwindowed, route_of(unwindowed))
    stored = [json.loads(event)["id"] for event in page.events]
    assert [str(uuid.UUID(int=index + 1)) for index in live] == stored


def test_live_text_search_falls_back_to_the_payload_as_sent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should spelling the payloads as stored ever fail, the commit still reaches its text
    subscribers (searched as sent), and the failure is logged."""
    import localevents.server._live_match as live_match

    def broken(payloads: Sequence[bytes]) -> list[str]:
        raise RuntimeError("no spelling today")

    monkeypatch.setattr(live_match, "stored_payload_texts", broken)
    unwindowed = untimed(_filter({"text": {"query": "one -two"}}))
    batches = _as_posted(EVENTS)
    events = _in_commit_order(batches)
    expected = [i for i, event in enumerate(events) if unwindowed.includes(event, live=True)]
    assert expected
    assert CommitMatcher(batches).matching(unwindowed, route_of(unwindowed)) == expected
    assert "could not spell payloads as stored" in caplog.text
