"""Events built in Python: every field's type is checked at construction, by ``Event`` and by
``emit_event`` alike, with an error naming the field; Prefect's string forms are accepted; and
the constructor takes plain dicts in its type signature (SPEC B §1, §5.8)."""

from __future__ import annotations

import enum
import re
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec
import pytest

from localevents import (
    Event,
    EventTooLarge,
    InvalidEventError,
    ReceivedEvent,
    RelatedResource,
    Resource,
    emit_event,
)
from localevents.testing import record_emitted_events

ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
WIDGET = {ID: "acme.widget.1"}
TAG = {ID: "acme.tag.a", ROLE: "tag"}
EVENT_ID = uuid.UUID("0192f3c4-5b6a-7c8d-9e0f-112233445566")
ROOT = Path(__file__).parent.parent


class Colour(enum.StrEnum):
    RED = "red"


# Fields of the wrong type (or a string that does not parse), each with the exact message.
BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"event": 123}, "event must be a string, got int 123"),
    (
        {"occurred": "yesterday"},
        "occurred must be a datetime or an ISO 8601 string such as '2024-01-01T12:00:00Z', "
        "got str 'yesterday'",
    ),
    (
        {"occurred": 1700000000},
        "occurred must be a datetime or an ISO 8601 string such as '2024-01-01T12:00:00Z', "
        "got int 1700000000",
    ),
    (
        {"occurred": date(2024, 1, 1)},
        "occurred must be a datetime or an ISO 8601 string such as '2024-01-01T12:00:00Z', "
        "got date datetime.date(2024, 1, 1)",
    ),
    ({"id": "order-42"}, "id must be a UUID, got str 'order-42'"),
    ({"id": 42}, "id must be a UUID, got int 42"),
    (
        {"resource": "acme.widget.1"},
        "resource must be a mapping of label names to strings, got str 'acme.widget.1'",
    ),
    ({"resource": None}, "resource must be a mapping of label names to strings, got NoneType None"),
    ({"resource": {ID: "r", "size": 3}}, "resource label 'size' must be a string, got int 3"),
    ({"resource": {ID: "r", 7: "x"}}, "resource label names must be strings, got int 7"),
    (  # a long value is cut short in the message
        {"related": TAG},
        "related must be a list of resources (label mappings), "
        "got dict {'prefect.resource.id': 'acme.tag.a', 'prefect.resource.r...",
    ),
    (
        {"related": [TAG, "acme.tag.b"]},
        "related[1] must be a mapping of label names to strings, got str 'acme.tag.b'",
    ),
    ({"related": [{**TAG, "n": None}]}, "related[0] label 'n' must be a string, got NoneType None"),
    ({"payload": [1, 2]}, "payload must be a dict with string keys, got list [1, 2]"),
    ({"payload": {1: "one"}}, "payload keys must be strings, got int 1"),
    (
        {"payload": {"fine": 1, "widget": object()}},
        "payload['widget'] cannot be encoded as JSON: Encoding objects of type object is "
        "unsupported",
    ),
]


# To Event, None is no list and no payload (emit_event takes it for "the default").
NOT_EMPTY: list[tuple[dict[str, Any], str]] = [
    ({"related": None}, "related must be a list of resources (label mappings), got NoneType None"),
    ({"payload": None}, "payload must be a dict with string keys, got NoneType None"),
]


def ids(cases: list[tuple[dict[str, Any], str]]) -> list[str]:
    return [f"{next(iter(fields))}-{n}" for n, (fields, _) in enumerate(cases)]


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("fields", "message"), BAD_FIELDS + NOT_EMPTY, ids=ids(BAD_FIELDS + NOT_EMPTY)
)
def test_a_field_of_the_wrong_type_is_refused_at_construction(
    fields: dict[str, Any], message: str
) -> None:
    """Event(...) raises InvalidEventError (a ValueError) naming the field and the bad value,
    instead of building an event that fails later, far from the mistake."""
    given: dict[str, Any] = {"event": "acme.widget.made", "resource": WIDGET, **fields}
    with pytest.raises(InvalidEventError, match=exactly(message)):
        Event(**given)


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS, ids=ids(BAD_FIELDS))
def test_emit_event_refuses_the_same_fields_with_the_same_message(
    fields: dict[str, Any], message: str
) -> None:
    """emit_event raises the constructor's InvalidEventError, after the event's name, in the
    caller; nothing reaches the background worker."""
    given: dict[str, Any] = {"event": "acme.widget.made", "resource": WIDGET, **fields}
    with record_emitted_events() as recorded:
        with pytest.raises(InvalidEventError) as caught:
            emit_event(**given)
        assert recorded.events == []
    assert str(caught.value) == f"cannot emit {given['event']!r}: {message}"


def test_emit_event_shows_a_long_name_cut_short() -> None:
    """A name over the length limit is shown as its first 80 characters and its length:
    the message held the whole name (100,058 characters for a name of 100,000)."""
    name = "acme." + "x" * 99_995
    with pytest.raises(InvalidEventError) as caught:
        emit_event(event=name, resource=WIDGET)
    assert str(caught.value) == (
        f"cannot emit {name[:80]!r}... (100000 characters): "
        "Event name must be at most 1024 characters"
    )


def test_event_follows_must_be_a_uuid() -> None:
    """Event(follows=...) takes the earlier event's id; a bad string or the event itself is
    named."""
    earlier = Event(event="acme.widget.started", resource=WIDGET)
    with pytest.raises(InvalidEventError, match=exactly("follows must be a UUID, got str 'abc'")):
        Event(event="acme.widget.made", resource=WIDGET, follows="abc")
    with pytest.raises(InvalidEventError, match=r"^follows must be a UUID \(the earlier event's"):
        Event(event="acme.widget.made", resource=WIDGET, follows=earlier)  # type: ignore[arg-type]


def test_emit_event_follows_must_be_an_event() -> None:
    """emit_event(follows=...) takes the earlier event itself (it reads its time too)."""
    with record_emitted_events() as recorded:
        with pytest.raises(InvalidEventError, match="follows must be the earlier event"):
            emit_event("acme.widget.made", WIDGET, follows={"id": "x"})  # type: ignore[arg-type]
        assert recorded.events == []


def test_rule_breaks_are_invalid_event_errors() -> None:
    """A broken protocol rule is an InvalidEventError from Event and Resource alike (still a
    ValueError, as before), with the protocol's message; Resource(...) on its own keeps its
    TypeError for a non-mapping or a non-string label, like the dict it is."""
    with pytest.raises(
        InvalidEventError, match=r"^Resources must include the prefect\.resource\.id"
    ):
        Event(event="acme.widget.made", resource={"name": "no id"})
    with pytest.raises(InvalidEventError, match=r"^Related Resources must include"):
        Event(event="acme.widget.made", resource=WIDGET, related=[{ID: "acme.tag.a"}])
    with pytest.raises(InvalidEventError, match=r"^The prefect\.resource\.id label must be"):
        Resource({ID: ""})
    with pytest.raises(TypeError, match="Input should be a valid dictionary"):
        Resource(42)
    with pytest.raises(TypeError, match="label 'n' should be a valid string"):
        Resource({ID: "r", "n": 1})


def test_prefect_string_forms_are_converted() -> None:
    """As Prefect's models do, an id or follows may be a UUID string (hyphenated or 32 hex
    digits) and occurred an RFC 3339 string; the event is as if built from the typed values."""
    follows = uuid.uuid4()
    from_strings = Event(
        event="acme.widget.made",
        resource=WIDGET,
        occurred="2024-01-01T14:00:00.5+02:00",
        id=str(EVENT_ID).upper(),
        follows=follows.hex,
    )
    typed = Event(
        event="acme.widget.made",
        resource=WIDGET,
        occurred=datetime(2024, 1, 1, 14, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2))),
        id=EVENT_ID,
        follows=follows,
    )
    assert from_strings == typed
    assert msgspec.json.encode(from_strings) == msgspec.json.encode(typed)
    assert from_strings.occurred.utcoffset() == timedelta(hours=2)


def test_naive_times_are_utc_whether_datetime_or_string() -> None:
    """A naive time is read as UTC wall-clock time, as a naive datetime always was; a naive
    string the same way."""
    as_datetime = Event(event="a", resource=WIDGET, occurred=datetime(2024, 1, 1, 12))
    as_string = Event(event="a", resource=WIDGET, occurred="2024-01-01T12:00:00")
    at_noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert as_datetime.occurred == as_string.occurred == at_noon
    assert as_string.occurred.tzinfo is UTC


def test_received_events_convert_their_times_too() -> None:
    """ReceivedEvent built in Python takes the same string forms, received included."""
    received = ReceivedEvent(
        event="a",
        resource=WIDGET,
        occurred="2024-01-01T12:00:00Z",
        id=str(EVENT_ID),
        received="2024-01-01T12:00:01Z",
    )
    assert received.id == EVENT_ID
    assert received.received - received.occurred == timedelta(seconds=1)
    with pytest.raises(InvalidEventError, match=r"^received must be a datetime"):
        ReceivedEvent(
            event="a",
            resource=WIDGET,
            occurred="2024-01-01T12:00:00Z",
            id=EVENT_ID,
            received="soon",
        )


def test_any_mapping_or_iterable_is_adopted() -> None:
    """Mappings that are not dicts and related resources in a tuple or a generator are
    adopted as the event's own dicts, Resources and list; a str subclass label value (a
    StrEnum) is a string."""
    event = Event(
        event="acme.widget.made",
        resource=MappingProxyType({**WIDGET, "colour": Colour.RED}),
        related=(labels for labels in [TAG]),
        payload=MappingProxyType({"n": 1}),
    )
    assert type(event.resource) is Resource
    assert [type(r) for r in event.related] == [RelatedResource]
    assert event.related[0].role == "tag"
    assert event.payload == {"n": 1}
    assert type(event.payload) is dict
    assert b'"colour":"red"' in msgspec.json.encode(event)
    assert Resource({**WIDGET, "colour": Colour.RED})["colour"] == "red"


def test_emit_event_converts_strings_like_the_constructor() -> None:
    """emit_event takes the same string forms as Event and emits the converted event."""
    with record_emitted_events() as recorded:
        emitted = emit_event(
            "acme.widget.made", WIDGET, occurred="2024-01-01T12:00:00Z", id=str(EVENT_ID)
        )
        assert emitted is not None
        assert (emitted.occurred, emitted.id) == (datetime(2024, 1, 1, 12, tzinfo=UTC), EVENT_ID)
        assert recorded.events == [emitted]


def test_event_too_large_names_the_setting() -> None:
    """The size error says which setting sets the limit, as the server's message does."""
    assert str(EventTooLarge(2000187, 1500000)) == (
        "Event is too large to emit (2000187 > 1500000 bytes, the limit set by "
        "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES)"
    )


# A user's script in the README's shapes: only the lines marked "wrong" may fail mypy.
USER_SCRIPT = """\
    from __future__ import annotations

    from localevents import Event, ReceivedEvent, RelatedResource, Resource, emit_event

    made = Event(
        event="acme.widget.made",
        resource={"prefect.resource.id": "acme.widget.1"},
        related=[{"prefect.resource.id": "acme.tag.a", "prefect.resource.role": "tag"}],
        payload={"size": 3},
        occurred="2024-01-01T00:00:00Z",
        id="0192f3c4-5b6a-7c8d-9e0f-112233445566",
    )
    typed = Event(
        event="acme.widget.made",
        resource=Resource({"prefect.resource.id": "acme.widget.1"}),
        related=[RelatedResource({"prefect.resource.id": "t", "prefect.resource.role": "tag"})],
        follows=made.id,
    )
    received = ReceivedEvent(
        event="x", resource={"prefect.resource.id": "r"}, occurred=made.occurred, id=made.id
    )
    resource_id: str = made.resource.id
    role: str = made.related[0].role
    name: str | None = received.resource.name
    emit_event("acme.widget.made", {"prefect.resource.id": "acme.widget.1"}, id=str(made.id))
    Event(event="x", resource=42)  # wrong
    Event(event="x", resource={"prefect.resource.id": 1})  # wrong
    Event(event="x", resource={"prefect.resource.id": "r"}, id=42)  # wrong
"""


def test_the_readme_shapes_type_check(tmp_path: Path) -> None:
    """mypy --strict (the repo's settings) accepts plain dicts and strings in Event(...),
    types .resource.id and .related[0].role as str, and still refuses resource=42.

    Uses the repo's mypy cache, which ``just lint`` (run before the tests) keeps warm."""
    script = tmp_path / "readme_event_shapes.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache"), str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=110,
    )
    lines = script.read_text().splitlines()
    wrong = {n for n, line in enumerate(lines, start=1) if line.endswith("# wrong")}
    failing = {int(m) for m in re.findall(rf"{re.escape(script.name)}:(\d+): error", result.stdout)}
    assert failing == wrong, result.stdout
