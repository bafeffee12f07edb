"""The event model: every rule of SPEC B §1, checked whether built in Python or decoded."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from localevents import Event, ReceivedEvent, RelatedResource, Resource, temporary_settings
from localevents._settings import Settings
from localevents.events._rules import event_problem, first_breaking
from localevents.events._schemas import decode_hook

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"

decoder = msgspec.json.Decoder(ReceivedEvent, dec_hook=decode_hook)


def wire(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "occurred": "2026-11-22T02:16:30.106011Z",
        "event": "acme.widget.made",
        "resource": {ID: "acme.widget.1", "prefect.resource.name": "Widget 1"},
        "related": [{ID: "acme.factory.a", ROLE: "factory"}],
        "payload": {"n": 1},
        "id": "0192f3c4-5b6a-7c8d-9e0f-112233445566",
        "follows": None,
    }
    body.update(overrides)
    return msgspec.json.encode({k: v for k, v in body.items() if v is not ...})


def test_example_event_round_trips_in_wire_key_order() -> None:
    """The SPEC §1.5 example decodes and re-encodes with the protocol's key order and Z times."""
    event = decoder.decode(wire(received="2026-11-22T02:17:00.401374Z"))
    encoded = msgspec.json.encode(event).decode()
    keys = list(msgspec.json.decode(encoded))
    assert keys == [
        "occurred",
        "event",
        "resource",
        "related",
        "payload",
        "id",
        "follows",
        "received",
    ]
    assert '"occurred":"2026-11-22T02:16:30.106011Z"' in encoded
    assert event.resource.id == "acme.widget.1"
    assert event.resource.name == "Widget 1"
    assert event.related[0].role == "factory"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ...}, "missing required field `id`"),
        ({"occurred": ...}, "missing required field `occurred`"),
        ({"resource": ...}, "missing required field `resource`"),
        ({"resource": {"a": "b"}}, "Resources must include the prefect.resource.id label"),
        ({"resource": {ID: ""}}, "The prefect.resource.id label must be non-empty"),
        ({"resource": None}, "Expected `object`, got `null` - at `$.resource`"),
        ({"resource": {ID: "x", "other": None}}, "Expected `str`, got `null`"),
        ({"related": [{ID: "x"}]}, "Related Resources must include the prefect.resource.role"),
        ({"related": [{ID: "x", ROLE: ""}]}, "The prefect.resource.role label must be non-empty"),
        ({"occurred": "2024-01-01T00:00:00"}, "Expected `datetime` with a timezone"),
        ({"occurred": "yesterday"}, "Invalid RFC3339 encoded datetime"),
        ({"occurred": "2024-13-01T00:00:00Z"}, "Invalid RFC3339 encoded datetime"),
        ({"id": "not-a-uuid"}, "Invalid UUID"),
    ],
)
def test_invalid_events_are_refused_with_a_message_naming_the_problem(
    overrides: dict[str, object], message: str
) -> None:
    """Each broken rule is a validation error whose text says what is wrong."""
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        decoder.decode(wire(**overrides))


def test_label_and_related_limits_allow_exactly_the_maximum() -> None:
    """Limits are 'more than N is an error': N labels and N related resources are fine."""
    with temporary_settings(
        events_maximum_labels_per_resource=3, events_maximum_related_resources=2
    ):
        resource = {ID: "r", "a": "1", "b": "2"}
        related = [{ID: "x", ROLE: "r"}, {ID: "y", ROLE: "r"}]
        decoder.decode(wire(resource=resource, related=related))
        with pytest.raises(
            msgspec.ValidationError, match=r"maximum number of labels per resource is 3"
        ):
            decoder.decode(wire(resource={**resource, "c": "3"}))
        with pytest.raises(
            msgspec.ValidationError, match=r"maximum number of related resources is 2"
        ):
            decoder.decode(wire(related=[*related, {ID: "z", ROLE: "r"}]))


def test_event_name_length_is_limited() -> None:
    """An event name longer than the configured maximum is refused, at the maximum it is not."""
    with temporary_settings(events_maximum_event_name_length=10):
        decoder.decode(wire(event="x" * 10))
        with pytest.raises(msgspec.ValidationError, match="at most 10 characters"):
            decoder.decode(wire(event="x" * 11))


def test_unknown_keys_are_ignored() -> None:
    """Extra keys on an event are ignored, as producers of newer versions may send them."""
    event = decoder.decode(wire(surprise=1))
    assert event.event == "acme.widget.made"


def test_python_construction_validates_and_defaults() -> None:
    """Events built in Python get a time-ordered id and now, and obey the same rules."""
    before = datetime.now(UTC)
    event = Event(event="a", resource={ID: "r"}, related=[{ID: "x", ROLE: "role"}])
    assert isinstance(event.resource, Resource)
    assert isinstance(event.related[0], RelatedResource)
    assert event.id.version == 7
    assert before <= event.occurred <= datetime.now(UTC)
    with pytest.raises(ValueError, match=r"must include the prefect\.resource\.id"):
        Event(event="a", resource={"x": "y"})
    with pytest.raises(ValueError, match=r"prefect\.resource\.role"):
        Event(event="a", resource={ID: "r"}, related=[{ID: "x"}])


def test_uuid7_ids_sort_by_creation_time() -> None:
    """Ids made later sort after ids made earlier (at millisecond resolution)."""
    from localevents import uuid7

    first = uuid7()
    import time

    time.sleep(0.002)
    assert uuid7() > first
    assert first.variant == uuid.RFC_4122


def test_naive_datetimes_built_in_python_are_utc() -> None:
    """A naive datetime given in Python is read as UTC wall-clock time (no local shift)."""
    event = Event(event="a", resource={ID: "r"}, occurred=datetime(2024, 1, 1, 12))
    assert event.occurred == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_offsets_are_kept_in_memory_and_compare_as_instants() -> None:
    """An aware time with an offset keeps it; comparisons use the instant."""
    plus_two = timezone(timedelta(hours=2))
    event = decoder.decode(wire(occurred="2024-01-01T02:00:00+02:00"))
    assert event.occurred.utcoffset() == timedelta(hours=2)
    assert event.occurred == datetime(2024, 1, 1, 0, tzinfo=UTC)
    assert event.occurred.tzinfo == plus_two


def test_resource_helpers() -> None:
    """The accessors SDK users rely on: roles, labels, object ids, label arrays."""
    flow_run = uuid.uuid4()
    event = Event(
        event="a",
        resource={ID: f"prefect.flow-run.{flow_run}", "x": "1"},
        related=[
            {ID: "t1", ROLE: "tag", "prefect.resource.name": "first"},
            {ID: "t2", ROLE: "tag"},
            {ID: "f", ROLE: "flow"},
        ],
    )
    assert event.resource.prefect_object_id("prefect.flow-run") == flow_run
    assert event.resource.prefect_object_id("prefect.flow-run.") == flow_run
    with pytest.raises(ValueError, match=r"does not start with prefect\.flow\."):
        event.resource.prefect_object_id("prefect.flow")
    assert [r.id for r in event.resources_in_role["tag"]] == ["t1", "t2"]
    assert event.resource_in_role["tag"].id == "t1"
    assert event.find_resource_label("related:tag:prefect.resource.name") == "first"
    assert event.find_resource_label("related:nope:x") is None
    assert event.find_resource_label("x") == "1"
    assert event.resource.as_label_value_array()[1] == {"label": "x", "value": "1"}
    assert event.resource.has_all_labels({"x": "1"})
    assert not event.resource.has_all_labels({"x": "2"})
    assert [r.id for r in event.involved_resources] == [event.resource.id, "t1", "t2", "f"]


def test_size_bytes_is_the_compact_json_length() -> None:
    """size_bytes counts the UTF-8 bytes of the compact JSON encoding."""
    event = Event(event="é", resource={ID: "r"})
    assert event.size_bytes == len(msgspec.json.encode(event))
    assert b" " not in msgspec.json.encode(event)


class _Rules(msgspec.Struct):
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = []


_OK = {ID: "acme.widget.1"}
_RELATED = {ID: "acme.factory.a", ROLE: "factory"}
_EACH_RULE = [
    _Rules("acme.widget.made", _OK, [_RELATED]),
    _Rules("x" * 21, _OK),
    _Rules("acme.widget.made", {"name": "no id"}),
    _Rules("acme.widget.made", {ID: ""}),
    _Rules("acme.widget.made", {ID: "acme.widget.1", "a": "1", "b": "2"}),
    _Rules("acme.widget.made", _OK, [_RELATED, _RELATED]),
    _Rules("acme.widget.made", _OK, [{ID: "acme.factory.a"}]),
    _Rules("acme.widget.made", _OK, [{ID: "", ROLE: "factory"}]),
    _Rules("acme.widget.made", _OK, [{ID: "acme.factory.a", ROLE: ""}]),
    _Rules("acme.widget.made", _OK, [_RELATED | {"extra": "1"}]),
]


def test_the_batch_check_and_the_explanation_agree_on_every_rule() -> None:
    """The server finds a batch's first bad event with ``first_breaking`` and explains it
    with ``event_problem``: for each rule, both refuse the same events."""
    settings = Settings(
        events_maximum_event_name_length=20,
        events_maximum_labels_per_resource=2,
        events_maximum_related_resources=1,
    )
    explained = [
        event_problem(e.event, e.resource, e.related, settings) is not None for e in _EACH_RULE
    ]
    found = [first_breaking([e], settings) == 0 for e in _EACH_RULE]

    assert found == explained == [False] + [True] * (len(_EACH_RULE) - 1)
    assert first_breaking(_EACH_RULE[:1] * 3 + _EACH_RULE[1:], settings) == 3
