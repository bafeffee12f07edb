"""Stored queries and in-memory ``includes`` agree on every filter (SPEC A.2 D4, D5, D6; B §2).

One fixed dataset is written to a real DuckDB file; each filter of the table is checked three
ways: the ids the stored query returns, the events ``EventFilter.includes`` accepts, and a set
written out by hand from the dataset below.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from localevents.events._filters import EventFilter
from localevents.events._patterns import compile_pattern
from localevents.events._schemas import ReceivedEvent
from localevents.storage import open_store, query_events, release

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents.storage import EventStore

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
NAME = "prefect.resource.name"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
WINDOW = {"since": "2024-12-31T00:00:00Z", "until": "2025-01-02T00:00:00Z"}

# -- the dataset ---------------------------------------------------------------------------
# Primary resources.
W1 = {
    ID: "acme.widget.1",
    NAME: "Widget 1",
    "color": "red",
    "env.tier": "prod",
    "zebrakey": "quokka",
}
W2 = {ID: "acme.widget.2", "color": "blue", "env.tier": "staging"}
W10 = {ID: "acme.widget.10", "color": "Red", "env.tier": "prod"}
G7 = {ID: "acme.gadget.7", "color": "green", "klass": "[abc]"}
PCT = {ID: "acme%widget", "klass": "a"}
UND = {ID: "acme_widget.x", "klass": "b"}
XW = {ID: "acmeXwidget.3"}
STAR = {ID: "star*.thing"}
STARRY = {ID: "starry.thing", "*": "twinkle", "": "blank", "a/b~c": "slash"}
FR1 = {ID: "prefect.flow-run.fr1", NAME: "brave-otter"}
FR2 = {ID: "prefect.flow-run.fr2", "prefect.name": "legacy-name"}
F1 = {ID: "prefect.flow.f1", NAME: "etl"}
LOG = {ID: "prefect.log.l1"}
UNI = {ID: "café.ressource", "lieu": "Zürich", "ville": "İSTANBUL"}
# Related resources.
R_F1 = {ID: "prefect.flow.f1", ROLE: "flow", NAME: "etl"}
R_F1_DEV = {ID: "prefect.flow.f1", ROLE: "flow", "env.tier": "dev"}
R_F2 = {ID: "prefect.flow.f2", ROLE: "flow"}
R_D1 = {ID: "prefect.deployment.d1", ROLE: "deployment", "env.tier": "prod"}
R_D2 = {ID: "prefect.deployment.d2", ROLE: "deployment", "env.tier": "staging"}
R_TAG_A = {ID: "prefect.tag.alpha", ROLE: "tag"}
R_TAG_B = {ID: "prefect.tag.beta", ROLE: "tag"}
R_Q = {ID: "prefect.work-queue.q_1", ROLE: "work-queue"}
R_W1 = {ID: "acme.widget.1", ROLE: "widget", "color": "red"}

# key, minute after T0, event name, resource, related, payload
ROWS: list[tuple[str, float, str, dict[str, str], list[dict[str, str]], dict[str, Any]]] = [
    ("w1_created", 0, "acme.widget.created", W1, [R_F1, R_TAG_A, R_TAG_B],
     {"outer": {"inner_key": "needle"}}),
    ("w1_updated", 1, "acme.widget.updated", W1, [R_D1], {"message": "Ünïcode 日本語 ok"}),
    ("w2_created", 2, "acme.widget.created", W2, [R_F2, R_TAG_A], {"error": "connection timeout"}),
    ("w10_created", 3, "acme.widget.created", W10, [], {}),
    ("g7_created", 4, "acme.gadget.created", G7, [R_D2], {"count": 3}),
    ("pct_done", 5, "100%.done", PCT, [R_Q], {}),
    ("pctx_done", 6, "100x.done", XW, [], {"error": "connection refused"}),
    ("snake", 7, "snake_case.event", UND, [R_TAG_B], {}),
    ("snakex", 8, "snakeXcase.event", XW, [], {}),
    ("star", 9, "star*.event", STAR, [], {}),
    ("starry", 10, "starry.event", STARRY, [], {}),
    ("mix", 11, "prefect.flow-run.Running", FR1, [R_F1_DEV, R_D1], {}),
    ("fr1_done", 12, "prefect.flow-run.Completed", FR1, [R_F1, R_D2, R_W1],
     {"state": {"type": "COMPLETED", "name": "Completed"}}),
    ("fr2_fail", 13, "prefect.flow-run.Failed", FR2, [R_F2],
     {"state": {"type": "FAILED", "message": "Crash: KeyError 'x'"}}),
    ("flow_prim", 14, "prefect.flow.updated", F1, [], {}),
    ("log1", 15, "prefect.log.write", LOG, [R_F1], {"level": "DEBUG", "msg": "debug output"}),
    ("log2", 16, "prefect.log.write", LOG, [R_F2], {"level": "ERROR", "msg": "an error happened"}),
    ("cafe", 17, "café.ouvert", UNI, [],
     {"texte": "Crème brûlée", "rue": "ΟΔΟΣ ΕΡΜΟΥ", "nested": {"deep": {"key": "Ωmega"}}}),  # noqa: RUF001
    ("tie_a", 20, "acme.widget.updated", W2, [], {"seq": 1}),
    ("tie_b", 20, "acme.widget.updated", W2, [], {"seq": 2}),
    ("tie_c", 20, "acme.widget.updated", W2, [], {"seq": 3}),
    ("w2_deleted", 21, "acme.widget.deleted", W2, [R_D2], {}),
    ("w10_updated", 22, "acme.widget.updated", W10, [R_TAG_A], {}),
    ("w1_deleted", 23, "acme.widget.deleted", W1, [], {}),
    ("gadget_upd", 24, "acme.gadget.updated", G7, [R_F1], {}),
    ("log3", 25, "prefect.log.write", LOG, [], {"msg": "plain text with 50% off"}),
    ("fr2_retry", 26, "prefect.flow-run.Retrying", FR2, [R_F2, R_TAG_B], {}),
    *[
        (f"hb{n}", 29 + n, "acme.heartbeat", {ID: f"acme.sensor.{n}", "kind": "thermo"}, [],
         {"reading": n})
        for n in range(1, 11)
    ],
]  # fmt: skip

# Three events share one instant; by id they sort tie_b < tie_c < tie_a, unlike their keys.
_TIE_IDS = {
    "tie_a": uuid.UUID("01940000-0000-7000-8000-00000000000c"),
    "tie_b": uuid.UUID("01940000-0000-7000-8000-00000000000a"),
    "tie_c": uuid.UUID("01940000-0000-7000-8000-00000000000b"),
}


def _ids() -> dict[str, uuid.UUID]:
    rng = random.Random(20261122)
    ids = {key: uuid.UUID(int=rng.getrandbits(128), version=4) for key, *_ in ROWS}
    return ids | _TIE_IDS


IDS = _ids()
KEY_OF = {value: key for key, value in IDS.items()}


def _event(
    row: tuple[str, float, str, dict[str, str], list[dict[str, str]], dict[str, Any]],
) -> ReceivedEvent:
    key, minute, name, resource, related, payload = row
    return ReceivedEvent(
        occurred=T0 + timedelta(minutes=minute),
        event=name,
        resource=resource,  # type: ignore[arg-type]
        related=related,  # type: ignore[arg-type]
        payload=payload,
        id=IDS[key],
        received=T0 + timedelta(days=1),
    )


EVENTS = {row[0]: _event(row) for row in ROWS}
ALL = frozenset(EVENTS)
HB = frozenset(f"hb{n}" for n in range(1, 11))


def k(keys: str) -> frozenset[str]:
    """A hand-written expected set, as space-separated dataset keys."""
    found = frozenset(keys.split())
    assert found <= ALL, found - ALL
    return found


W1_EVENTS = k("w1_created w1_updated w1_deleted")
W2_EVENTS = k("w2_created tie_a tie_b tie_c w2_deleted")
W10_EVENTS = k("w10_created w10_updated")
G7_EVENTS = k("g7_created gadget_upd")
WIDGET_EVENTS = W1_EVENTS | W2_EVENTS | W10_EVENTS
RELATED_F1 = k("w1_created mix fr1_done log1 gadget_upd")
RELATED_FLOW = RELATED_F1 | k("w2_created fr2_fail log2 fr2_retry")
RELATED_TAG = k("w1_created w2_created snake w10_updated fr2_retry")
RELATED_DEPLOYMENT = k("w1_updated mix g7_created fr1_done w2_deleted")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    """The dataset, stored in a real events file for the whole module."""
    opened = open_store(str(tmp_path_factory.mktemp("semantics") / "events.duckdb"))
    try:
        assert len(opened.write_events(list(EVENTS.values()))) == len(EVENTS)
        yield opened
    finally:
        release(opened)


@pytest.fixture(scope="module", params=["none", "half", "all", "inexact"])
def label_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EventStore]:
    """The dataset with the label set tables (``resource_sets`` and ``related_sets``, see
    ``storage._label_sets``) covering none of it, its first half (the rest tested on each
    event's own columns), all of it; or marked inexact, as after a hash collision, so that
    filters test every event."""
    reach = request.param
    opened = open_store(str(tmp_path_factory.mktemp(f"labels-{reach}") / "events.duckdb"))
    events = list(EVENTS.values())
    middle = len(events) // 2 if reach == "half" else len(events)
    try:
        opened.write_events(events[:middle])
        if reach in ("half", "all"):
            opened.label_sets.catch_up(opened.cursor(), after=0)
            assert opened.fetchall("SELECT count(*) FROM resource_sets")[0][0] > 0
            assert opened.fetchall("SELECT count(*) FROM related_sets")[0][0] > 0
        opened.write_events(events[middle:])
        if reach == "inexact":
            opened.label_sets.exact = False
        yield opened
    finally:
        release(opened)


class _Row(msgspec.Struct):
    id: uuid.UUID
    occurred: datetime


_row_decoder = msgspec.json.Decoder(_Row)


def keys_of(events: list[str]) -> list[str]:
    """Dataset keys of a page's events, in page order."""
    return [KEY_OF[_row_decoder.decode(e).id] for e in events]


def decode_filter(body: dict[str, Any]) -> EventFilter:
    """The filter of a JSON body; a body without ``occurred`` gets the dataset's window."""
    body = {"occurred": WINDOW, **body}
    return msgspec.json.decode(msgspec.json.encode(body), type=EventFilter)


def check(store: EventStore, body: dict[str, Any], expected: frozenset[str]) -> None:
    """Stored path == in-memory path == the hand-written set."""
    event_filter = decode_filter(body)
    page = query_events(store, event_filter, 1000)
    stored = keys_of(page.events)
    assert len(stored) == len(set(stored)), "an event was returned twice"
    in_memory = {key for key, event in EVENTS.items() if event_filter.includes(event)}
    assert set(stored) == expected, "stored path"
    assert in_memory == expected, "in-memory path"
    assert page.total == len(expected)
    assert page.next_token is None


def case(name: str, body: dict[str, Any], expected: frozenset[str]) -> Any:
    """One row of a filter table (a ``pytest.param`` named ``name``)."""
    return pytest.param(body, expected, id=name)


# -- occurred, event names, ids ------------------------------------------------------------

OCCURRED_CASES = [
    case("window-all", {}, ALL),
    case(
        "since-until-inclusive",
        {"occurred": {"since": "2025-01-01T00:04:00Z", "until": "2025-01-01T00:06:00Z"}},
        k("g7_created pct_done pctx_done"),
    ),
    case(
        "one-microsecond-inside-both-bounds",
        {
            "occurred": {
                "since": "2025-01-01T00:04:00.000001Z",
                "until": "2025-01-01T00:05:59.999999Z",
            }
        },
        k("pct_done"),
    ),
    case(
        "since-equals-until",
        {"occurred": {"since": "2025-01-01T00:20:00Z", "until": "2025-01-01T00:20:00Z"}},
        k("tie_a tie_b tie_c"),
    ),
    case(
        "other-offset",
        {"occurred": {"since": "2025-01-01T01:00:00+01:00", "until": "2025-01-01T01:01:00+01:00"}},
        k("w1_created w1_updated"),
    ),
    case(
        "before-everything",
        {"occurred": {"since": "2024-01-01T00:00:00Z", "until": "2024-12-31T23:59:59.999999Z"}},
        k(""),
    ),
]

NAME_CASES = [
    case("prefix", {"event": {"prefix": ["acme.widget."]}}, WIDGET_EVENTS),
    case("prefix-broad", {"event": {"prefix": ["acme."]}}, WIDGET_EVENTS | G7_EVENTS | HB),
    case(
        "prefixes-ored",
        {"event": {"prefix": ["acme.widget.", "acme.gadget."]}},
        WIDGET_EVENTS | G7_EVENTS,
    ),
    case(
        "exclude-prefix",
        {"event": {"exclude_prefix": ["acme.", "prefect."]}},
        k("pct_done pctx_done snake snakex star starry cafe"),
    ),
    case(
        "prefix-and-exclude-prefix",
        {"event": {"prefix": ["acme."], "exclude_prefix": ["acme.widget.", "acme.heartbeat"]}},
        G7_EVENTS,
    ),
    case(
        "name", {"event": {"name": ["acme.widget.created"]}}, k("w1_created w2_created w10_created")
    ),
    case(
        "exclude-name",
        {"event": {"exclude_name": ["prefect.log.write", "acme.heartbeat"]}},
        ALL - HB - k("log1 log2 log3"),
    ),
    case(
        "prefix-and-exclude-name",
        {"event": {"prefix": ["acme.widget."], "exclude_name": ["acme.widget.updated"]}},
        k("w1_created w2_created w10_created w2_deleted w1_deleted"),
    ),
    case(
        "name-and-exclude-name",
        {
            "event": {
                "name": ["acme.widget.created", "acme.widget.updated"],
                "exclude_name": ["acme.widget.updated"],
            }
        },
        k("w1_created w2_created w10_created"),
    ),
    case("prefix-percent-is-literal", {"event": {"prefix": ["100%"]}}, k("pct_done")),
    case("prefix-digits", {"event": {"prefix": ["100"]}}, k("pct_done pctx_done")),
    case("prefix-underscore-is-literal", {"event": {"prefix": ["snake_"]}}, k("snake")),
    case("prefix-star-is-literal", {"event": {"prefix": ["star*"]}}, k("star")),
    case("prefix-lone-percent", {"event": {"prefix": ["%"]}}, k("")),
    case("prefix-lone-underscore", {"event": {"prefix": ["_"]}}, k("")),
    case("prefix-lone-star", {"event": {"prefix": ["*"]}}, k("")),
    case(
        "exclude-prefix-wildcard-chars-are-literal",
        {"event": {"exclude_prefix": ["100%", "snake_", "star*"]}},
        ALL - k("pct_done snake star"),
    ),
    case("name-with-star-is-exact", {"event": {"name": ["star*.event"]}}, k("star")),
    case("name-is-case-sensitive", {"event": {"name": ["ACME.WIDGET.CREATED"]}}, k("")),
    case("unicode-prefix", {"event": {"prefix": ["café."]}}, k("cafe")),
    case(
        "empty-lists-no-constraint", {"event": {"prefix": [], "name": [], "exclude_name": []}}, ALL
    ),
]

ID_CASES = [
    case("ids", {"id": {"id": [str(IDS["w1_created"]), str(IDS["cafe"])]}}, k("w1_created cafe")),
    case("unknown-id", {"id": {"id": [str(uuid.UUID(int=1))]}}, k("")),
    case("empty-id-list", {"id": {"id": []}}, ALL),
    case("null-id-list", {"id": {"id": None}}, ALL),
]

# -- the primary resource ------------------------------------------------------------------

RESOURCE_CASES = [
    case("id", {"resource": {"id": ["acme.widget.1"]}}, W1_EVENTS),
    case("id-case-sensitive", {"resource": {"id": ["ACME.WIDGET.1"]}}, k("")),
    case(
        "ids-ored", {"resource": {"id": ["acme.widget.1", "acme.gadget.7"]}}, W1_EVENTS | G7_EVENTS
    ),
    case(
        "id-prefix-full-id", {"resource": {"id_prefix": ["acme.widget.1"]}}, W1_EVENTS | W10_EVENTS
    ),
    case("id-prefix-underscore-literal", {"resource": {"id_prefix": ["acme_"]}}, k("snake")),
    case("id-prefix-percent-literal", {"resource": {"id_prefix": ["acme%"]}}, k("pct_done")),
    case("id-prefix-star-literal", {"resource": {"id_prefix": ["star*"]}}, k("star")),
    case("id-prefixes-ored", {"resource": {"id_prefix": ["acme_w", "star*"]}}, k("snake star")),
    case(
        "id-and-id-prefix-anded",
        {"resource": {"id": ["acme.widget.1", "acme.widget.2"], "id_prefix": ["acme.widget.2"]}},
        W2_EVENTS,
    ),
    case("label-exact", {"resource": {"labels": {"color": "red"}}}, W1_EVENTS),
    case("label-case-sensitive", {"resource": {"labels": {"color": "Red"}}}, W10_EVENTS),
    case("label-question-mark", {"resource": {"labels": {"color": "?ed"}}}, W1_EVENTS | W10_EVENTS),
    case("label-star-suffix", {"resource": {"labels": {"color": "r*"}}}, W1_EVENTS),
    case(
        "label-star-any",
        {"resource": {"labels": {"color": "*"}}},
        W1_EVENTS | W2_EVENTS | W10_EVENTS | G7_EVENTS,
    ),
    case(
        "label-this-or-not-that",
        {"resource": {"labels": {"color": ["red", "!blue"]}}},
        W1_EVENTS | W10_EVENTS | G7_EVENTS,
    ),
    case(
        "negation-needs-the-label",
        {"resource": {"labels": {"color": "!nah"}}},
        W1_EVENTS | W2_EVENTS | W10_EVENTS | G7_EVENTS,
    ),
    case("negated-star", {"resource": {"labels": {"color": "!*"}}}, k("")),
    case("missing-label-negated", {"resource": {"labels": {"nope": "!x"}}}, k("")),
    case("brackets-are-literal", {"resource": {"labels": {"klass": "[abc]"}}}, G7_EVENTS),
    case("brackets-in-glob-are-literal", {"resource": {"labels": {"klass": "[ab]*"}}}, k("")),
    case("question-mark-one-char", {"resource": {"labels": {"klass": "?"}}}, k("pct_done snake")),
    case("empty-pattern-list", {"resource": {"labels": {"color": []}}}, k("")),
    case("empty-id-pattern-list", {"resource": {"labels": {ID: []}}}, k("")),
    case("empty-labels", {"resource": {"labels": {}}}, ALL),
    case("empty-resource-filter", {"resource": {}}, ALL),
    case("dotted-label", {"resource": {"labels": {"env.tier": "prod"}}}, W1_EVENTS | W10_EVENTS),
    case("dotted-label-glob", {"resource": {"labels": {"env.tier": "*g"}}}, W2_EVENTS),
    case(
        "labels-anded",
        {"resource": {"labels": {"color": "*", "env.tier": "prod"}}},
        W1_EVENTS | W10_EVENTS,
    ),
    case(
        "id-label-glob",
        {"resource": {"labels": {ID: "acme.widget.*"}}},
        W1_EVENTS | W2_EVENTS | W10_EVENTS,
    ),
    case(
        "id-label-question", {"resource": {"labels": {ID: "acme.widget.?"}}}, W1_EVENTS | W2_EVENTS
    ),
    case(
        "id-label-question-any-char",
        {"resource": {"labels": {ID: "acme?widget*"}}},
        WIDGET_EVENTS | k("pct_done snake pctx_done snakex"),
    ),
    case("id-label-percent-literal", {"resource": {"labels": {ID: "acme%widget"}}}, k("pct_done")),
    case("id-label-underscore-literal", {"resource": {"labels": {ID: "acme_widget*"}}}, k("snake")),
    case("id-label-star-glob", {"resource": {"labels": {ID: "star*.*"}}}, k("star starry")),
    case("name-label-glob", {"resource": {"labels": {NAME: "Widget*"}}}, W1_EVENTS),
    case(
        "name-label-negated",
        {"resource": {"labels": {NAME: "!Widget 1"}}},
        k("mix fr1_done flow_prim"),
    ),
    case("unicode-label", {"resource": {"labels": {"lieu": "Zürich"}}}, k("cafe")),
    case("unicode-label-question", {"resource": {"labels": {"lieu": "Z?rich"}}}, k("cafe")),
    case("unicode-label-case", {"resource": {"labels": {"lieu": "z*"}}}, k("")),
    case("role-label-on-primary", {"resource": {"labels": {ROLE: "*"}}}, k("")),
    case("label-named-star", {"resource": {"labels": {"*": "twinkle"}}}, k("starry")),
    case("label-named-star-is-no-wildcard", {"resource": {"labels": {"*": "red"}}}, k("")),
    case("label-with-empty-name", {"resource": {"labels": {"": "bl*"}}}, k("starry")),
    case("label-name-with-slash-tilde", {"resource": {"labels": {"a/b~c": "slash"}}}, k("starry")),
]

# -- related resources ---------------------------------------------------------------------

RELATED_CASES = [
    case("id", {"related": {"id": ["prefect.flow.f1"]}}, RELATED_F1),
    case("role", {"related": {"role": ["tag"]}}, RELATED_TAG),
    case(
        "id-and-role-second-of-a-role",
        {"related": {"id": ["prefect.tag.beta"], "role": ["tag"]}},
        k("w1_created snake fr2_retry"),
    ),
    case(
        "id-and-role-on-different-resources",
        {"related": {"id": ["prefect.flow.f1"], "role": ["deployment"]}},
        k(""),
    ),
    case(
        "resources-in-roles-ored",
        {
            "related": {
                "resources_in_roles": [
                    ["prefect.flow.f1", "flow"],
                    ["prefect.deployment.d2", "deployment"],
                ]
            }
        },
        RELATED_F1 | k("g7_created w2_deleted"),
    ),
    case(
        "resources-in-roles-same-resource",
        {"related": {"resources_in_roles": [["prefect.flow.f1", "deployment"]]}},
        k(""),
    ),
    case(
        "resources-in-roles-and-role",
        {
            "related": {
                "resources_in_roles": [["prefect.deployment.d1", "deployment"]],
                "role": ["flow"],
            }
        },
        k(""),
    ),
    case("labels", {"related": {"labels": {"env.tier": "prod"}}}, k("w1_updated mix")),
    case(
        "id-and-labels-on-different-resources",
        {"related": {"id": ["prefect.flow.f1"], "labels": {"env.tier": "prod"}}},
        k(""),
    ),
    case(
        "id-and-labels-same-resource",
        {"related": {"id": ["prefect.flow.f1"], "labels": {"env.tier": "dev"}}},
        k("mix"),
    ),
    case(
        "role-and-labels-same-resource",
        {"related": {"role": ["flow"], "labels": {"env.tier": "*"}}},
        k("mix"),
    ),
    case("role-label-exact", {"related": {"labels": {ROLE: "flow"}}}, RELATED_FLOW),
    case("role-label-no-glob", {"related": {"labels": {ROLE: "fl*"}}}, k("")),
    case("role-label-no-negation", {"related": {"labels": {ROLE: "!flow"}}}, k("")),
    case("role-label-list", {"related": {"labels": {ROLE: ["flow", "widget"]}}}, RELATED_FLOW),
    case("role-label-empty-list", {"related": {"labels": {ROLE: []}}}, k("")),
    case("id-label-glob", {"related": {"labels": {ID: "prefect.tag.*"}}}, RELATED_TAG),
    case(
        "id-label-question", {"related": {"labels": {ID: "prefect.work-queue.q_?"}}}, k("pct_done")
    ),
    case("id-label-percent-literal", {"related": {"labels": {ID: "prefect.work-queue.q%"}}}, k("")),
    case("label-empty-list", {"related": {"labels": {"env.tier": []}}}, k("")),
    case("primary-never-matches", {"related": {"id": ["acme.widget.1"]}}, k("fr1_done")),
    case("primary-labels-never-match", {"related": {"labels": {"color": "red"}}}, k("fr1_done")),
    case("empty-filter", {"related": {}}, ALL),
    case("empty-lists", {"related": {"id": [], "role": [], "labels": {}}}, ALL),
    case("list-of-empty", {"related": [{}]}, ALL),
    case(
        "list-anded",
        {"related": [{"id": ["prefect.tag.alpha"]}, {"id": ["prefect.tag.beta"]}]},
        k("w1_created"),
    ),
    case(
        "list-anded-roles",
        {"related": [{"role": ["flow"]}, {"role": ["deployment"]}]},
        k("mix fr1_done"),
    ),
    case("list-with-empty", {"related": [{"role": ["flow"]}, {}]}, RELATED_FLOW),
]

ANY_RESOURCE_CASES = [
    case(
        "id-primary-or-related",
        {"any_resource": {"id": ["prefect.flow.f1"]}},
        RELATED_F1 | k("flow_prim"),
    ),
    case("id-widget", {"any_resource": {"id": ["acme.widget.1"]}}, W1_EVENTS | k("fr1_done")),
    case(
        "id-prefix",
        {"any_resource": {"id_prefix": ["prefect.deployment."]}},
        RELATED_DEPLOYMENT,
    ),
    case("id-prefix-literal", {"any_resource": {"id_prefix": ["acme_"]}}, k("snake")),
    case(
        "role-label-selects-related",
        {"any_resource": {"labels": {ROLE: "deployment"}}},
        RELATED_DEPLOYMENT,
    ),
    case("role-label-no-glob", {"any_resource": {"labels": {ROLE: "deploy*"}}}, k("")),
    case("label", {"any_resource": {"labels": {"color": "red"}}}, W1_EVENTS | k("fr1_done")),
    case(
        "dotted-label-primary-or-related",
        {"any_resource": {"labels": {"env.tier": "prod"}}},
        W1_EVENTS | W10_EVENTS | k("mix"),
    ),
    case(
        "criteria-on-one-resource",
        {"any_resource": {"id": ["prefect.flow.f1"], "labels": {"env.tier": "prod"}}},
        k(""),
    ),
    case(
        "id-label-glob",
        {"any_resource": {"labels": {ID: "prefect.flow.*"}}},
        RELATED_FLOW | k("flow_prim"),
    ),
    case(
        "list-anded",
        {"any_resource": [{"id": ["prefect.flow.f1"]}, {"labels": {ROLE: "deployment"}}]},
        k("mix fr1_done"),
    ),
    case(
        "list-anded-primary-and-related",
        {"any_resource": [{"id": ["acme.widget.1"]}, {"id": ["prefect.tag.beta"]}]},
        k("w1_created"),
    ),
    case("empty", {"any_resource": {}}, ALL),
    case("label-named-star", {"any_resource": {"labels": {"*": "*"}}}, k("starry")),
    case("empty-pattern-list", {"any_resource": {"labels": {"color": []}}}, k("")),
]

# -- text search (D6) ----------------------------------------------------------------------

TEXT_CASES = [
    case("payload-value", {"text": {"query": "needle"}}, k("w1_created")),
    case("case-insensitive", {"text": {"query": "NEEDLE"}}, k("w1_created")),
    case("payload-key", {"text": {"query": "inner_key"}}, k("w1_created")),
    case("nested-payload-key", {"text": {"query": "deep"}}, k("cafe")),
    case("label-key-not-searched", {"text": {"query": ID}}, k("")),
    case("role-key-not-searched", {"text": {"query": ROLE}}, k("")),
    case("dotted-key-not-searched", {"text": {"query": "env.tier"}}, k("")),
    case("custom-key-not-searched", {"text": {"query": "zebrakey"}}, k("")),
    case("label-value", {"text": {"query": "quokka"}}, W1_EVENTS),
    case(
        "label-value-primary-and-related",
        {"text": {"query": "staging"}},
        W2_EVENTS | k("g7_created fr1_done"),
    ),
    case("role-value", {"text": {"query": "work-queue"}}, k("pct_done")),
    case("odd-label-names-values", {"text": {"query": "twinkle slash"}}, k("starry")),
    case(
        "related-name-value",
        {"text": {"query": "ETL"}},
        k("w1_created fr1_done log1 gadget_upd flow_prim"),
    ),
    case("event-name", {"text": {"query": "gadget"}}, G7_EVENTS),
    case("phrase", {"text": {"query": '"connection timeout"'}}, k("w2_created")),
    case("terms-ored", {"text": {"query": "timeout refused"}}, k("w2_created pctx_done")),
    case("exclude", {"text": {"query": "connection -timeout"}}, k("pctx_done")),
    case("exclude-bang", {"text": {"query": "connection !timeout"}}, k("pctx_done")),
    case("required", {"text": {"query": "+connection +refused"}}, k("pctx_done")),
    case("include-and-required", {"text": {"query": "flow +completed"}}, k("fr1_done")),
    case(
        "include-and-exclude",
        {"text": {"query": "error -debug"}},
        k("w2_created pctx_done fr2_fail log2"),
    ),
    case(
        "exclude-only",
        {"text": {"query": "-acme"}},
        k("star starry mix fr2_fail flow_prim log1 log2 log3 cafe fr2_retry"),
    ),
    case("percent-is-literal", {"text": {"query": "50%"}}, k("log3")),
    case("percent-in-name", {"text": {"query": "100%"}}, k("pct_done")),
    case("underscore-is-literal", {"text": {"query": "snake_case"}}, k("snake")),
    case("quoted-phrase-with-quote", {"text": {"query": '"Crash: KeyError"'}}, k("fr2_fail")),
    case("unicode-cjk", {"text": {"query": "日本語"}}, k("w1_updated")),
    case("unicode-lower", {"text": {"query": "ünïcode"}}, k("w1_updated")),
    case("unicode-upper", {"text": {"query": "ÜNÏCODE"}}, k("w1_updated")),
    case("unicode-accents", {"text": {"query": "CRÈME brûlée"}}, k("cafe")),
    case("unicode-greek", {"text": {"query": "ωMEGA"}}, k("cafe")),
    case("unicode-label-value", {"text": {"query": "zürich"}}, k("cafe")),
    case("unicode-name", {"text": {"query": "CAFÉ.OUV"}}, k("cafe")),
    case("dotted-capital-i", {"text": {"query": "İstanbul"}}, k("cafe")),
    case("dotted-capital-i-upper", {"text": {"query": "+İSTANBUL"}}, k("cafe")),
    case("final-sigma", {"text": {"query": "οδος"}}, k("cafe")),
    case("medial-sigma-at-the-end", {"text": {"query": "οδοσ"}}, k("cafe")),
    case("capital-sigma", {"text": {"query": '"ΟΔΟΣ ερμου"'}}, k("cafe")),
    case("exclude-final-sigma", {"text": {"query": "+ερμου -ΟΔΟΣ"}}, k("")),
    case("empty-query", {"text": {"query": ""}}, ALL),
    case("blank-query", {"text": {"query": "  - "}}, ALL),
    case("payload-json-text", {"text": {"query": '+heartbeat +"reading":1'}}, k("hb1 hb10")),
]

COMBINED_CASES = [
    case(
        "every-sub-filter-anded",
        {
            "occurred": {"since": "2025-01-01T00:00:00Z", "until": "2025-01-01T00:12:00Z"},
            "event": {"exclude_name": ["acme.widget.updated"]},
            "resource": {"id_prefix": ["acme.", "prefect."]},
            "related": {"role": ["flow"]},
            "any_resource": {"labels": {"env.tier": "*"}},
            "text": {"query": "-timeout"},
        },
        k("w1_created mix fr1_done"),
    ),
]


@pytest.mark.parametrize(("body", "expected"), OCCURRED_CASES + ID_CASES)
def test_occurred_and_id_filters_agree(
    store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """occurred bounds are inclusive and ids select exactly, in both paths."""
    check(store, body, expected)


@pytest.mark.parametrize(("body", "expected"), NAME_CASES)
def test_event_name_filters_agree(
    store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """Event prefixes are literal (``%``, ``_``, ``*`` plain) and names exact, in both paths."""
    check(store, body, expected)


@pytest.mark.parametrize(("body", "expected"), RESOURCE_CASES)
def test_resource_filters_agree(
    label_store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """Primary-resource ids, literal id prefixes and label globs match alike in both paths."""
    check(label_store, body, expected)


@pytest.mark.parametrize(("body", "expected"), RELATED_CASES)
def test_related_filters_agree(
    label_store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """Every criterion of a related filter holds on one related resource, in both paths."""
    check(label_store, body, expected)


@pytest.mark.parametrize(("body", "expected"), ANY_RESOURCE_CASES)
def test_any_resource_filters_agree(
    label_store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """any_resource matches the primary or a related resource on all criteria, in both paths."""
    check(label_store, body, expected)


@pytest.mark.parametrize(("body", "expected"), TEXT_CASES)
def test_text_search_agrees(
    store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """Text search looks in names, label values (not keys) and payload JSON, in both paths."""
    check(store, body, expected)


@pytest.mark.parametrize(("body", "expected"), COMBINED_CASES)
def test_sub_filters_are_anded(
    label_store: EventStore, body: dict[str, Any], expected: frozenset[str]
) -> None:
    """All top-level sub-filters are ANDed, in both paths."""
    check(label_store, body, expected)


# -- order and distinct --------------------------------------------------------------------


def _sorted_keys(keys: frozenset[str], *, descending: bool) -> list[str]:
    ordered = sorted(keys, key=lambda key: (EVENTS[key].occurred, IDS[key]))
    return ordered[::-1] if descending else ordered


@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_events_come_in_occurred_order_with_ties_broken_by_id(
    store: EventStore, order: str
) -> None:
    """Events are sorted by occurred, then id, in the requested direction."""
    page = query_events(store, decode_filter({"order": order}), 1000)
    assert keys_of(page.events) == _sorted_keys(ALL, descending=order == "DESC")


@pytest.mark.parametrize(
    ("order", "expected"),
    [("ASC", ["tie_b", "tie_c", "tie_a"]), ("DESC", ["tie_a", "tie_c", "tie_b"])],
)
def test_events_at_the_same_instant_follow_their_ids(
    store: EventStore, order: str, expected: list[str]
) -> None:
    """Three events at one instant come in id order (ASC) or reverse id order (DESC)."""
    body = {"occurred": {"since": "2025-01-01T00:20:00Z", "until": "2025-01-01T00:20:00Z"}}
    page = query_events(store, decode_filter({**body, "order": order}), 1000)
    assert keys_of(page.events) == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (
            "DESC",
            k("w1_deleted w2_deleted w10_updated gadget_upd pct_done snakex snake star starry "
              "fr1_done fr2_retry flow_prim log3 cafe") | HB,
        ),
        (
            "ASC",
            k("w1_created w2_created w10_created g7_created pct_done pctx_done snake star "
              "starry mix fr2_fail flow_prim log1 cafe") | HB,
        ),
    ],
)  # fmt: skip
def test_distinct_keeps_one_event_per_resource(
    store: EventStore, order: str, expected: frozenset[str]
) -> None:
    """distinct returns the latest (DESC) or earliest (ASC) event of each primary resource."""
    event_filter = decode_filter({"resource": {"distinct": True}, "order": order})
    page = query_events(store, event_filter, 1000)
    assert keys_of(page.events) == _sorted_keys(expected, descending=order == "DESC")
    assert page.total == 24


def test_distinct_applies_after_the_filter(store: EventStore) -> None:
    """distinct picks per resource among the matching events, and counts matching resources."""
    body = {"resource": {"distinct": True}, "event": {"name": ["acme.widget.created"]}}
    page = query_events(store, decode_filter(body), 1000)
    assert keys_of(page.events) == ["w10_created", "w2_created", "w1_created"]
    assert page.total == 3


def _glob_by_backtracking(glob: str, value: str) -> bool:
    """What a glob means, spelt as the obvious regex (exponential on some inputs)."""
    pieces = ("." if char == "?" else ".*" if char == "*" else re.escape(char) for char in glob)
    return re.fullmatch("".join(pieces), value, re.DOTALL) is not None


def test_label_globs_match_what_the_obvious_regex_means() -> None:
    """The in-memory glob matcher (pieces between stars, each at its earliest place) agrees
    with the backtracking regex on 50,000 random globs and values over a small alphabet
    holding the wildcards, a newline and a regex metacharacter."""
    chooser = random.Random(5)
    for _ in range(50_000):
        glob = "".join(chooser.choice("ab*?\n.") for _ in range(chooser.randint(0, 7)))
        value = "".join(chooser.choice("ab\n.") for _ in range(chooser.randint(0, 8)))
        assert compile_pattern(glob).matches(value) == _glob_by_backtracking(glob, value), (
            glob,
            value,
        )


def test_a_glob_of_many_stars_is_answered_at_once_in_memory() -> None:
    """A pattern with many stars against a long value that it does not match: a backtracking
    regex would take hours (it doubled the time about eight times per star), stalling the
    live hub's one fan-out thread for every subscriber. Run in a process of its own, so a
    regression fails at the deadline instead of holding the suite."""
    code = (
        "from localevents.events._patterns import compile_pattern;"
        "print(compile_pattern('*a' * 12 + '*b').matches('a' * 60))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert finished.stdout.strip() == "False"
