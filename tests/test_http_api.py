"""The HTTP API in-process (SPEC B §3 with D1-D3, D10-D13): shapes, durability, bad input, keys.

Every test runs the real app (its lifespan holds a real DuckDB file in ``tmp_path``) through
``httpx.ASGITransport``, on asyncio and on trio.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from localevents._settings import Settings, temporary_settings
from localevents.server import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

BASE_URL = "http://test/api/"
WIDE = {"occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}}
"""A filter window holding every event these tests write."""

WIRE_KEYS = ["occurred", "event", "resource", "related", "payload", "id", "follows", "received"]


@pytest.fixture(autouse=True)
def _default_settings() -> Iterator[None]:
    """Run against the default settings, whatever ``LOCALEVENTS_*`` the developer has set."""
    with temporary_settings(Settings()):
        yield


def make_event(**changes: Any) -> dict[str, Any]:
    """A valid event as JSON, with ``changes`` applied."""
    event: dict[str, Any] = {
        "occurred": "2024-06-01T12:00:00Z",
        "event": "acme.widget.made",
        "resource": {"prefect.resource.id": "acme.widget.1"},
        "id": str(uuid.uuid4()),
    }
    event.update(changes)
    return event


def without(key: str) -> dict[str, Any]:
    """A valid event lacking ``key``."""
    event = make_event()
    del event[key]
    return event


def related(count: int) -> list[dict[str, str]]:
    """``count`` valid related resources."""
    return [
        {"prefect.resource.id": f"acme.part.{n}", "prefect.resource.role": "part"}
        for n in range(count)
    ]


@contextlib.asynccontextmanager
async def open_api(
    tmp_path: Path, settings: Settings | None = None, *, base_url: str = BASE_URL
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app over ``tmp_path/events.duckdb``, its lifespan running."""
    app = create_app(settings, database=str(tmp_path / "events.duckdb"))
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client,
    ):
        yield client


async def stored(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every stored event (oldest first), read back through the API."""
    response = await client.post("events/filter", json={"filter": WIDE | {"order": "ASC"}})
    response.raise_for_status()
    page = response.json()
    events: list[dict[str, Any]] = page["events"]
    while page["next_page"]:
        page = (await client.get(page["next_page"])).json()
        events += page["events"]
    return events


async def stored_count(client: httpx.AsyncClient) -> int:
    """How many events are stored."""
    response = await client.post("events/filter", json={"filter": WIDE, "limit": 0})
    response.raise_for_status()
    total: int = response.json()["total"]
    return total


async def post_events(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    """POST a batch that must be accepted."""
    response = await client.post("events", json=events)
    assert response.status_code == 204, response.text


def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    """The answer is an error of ``status`` whose ``detail`` names every fragment."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str)
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


# -- shapes (B §3) ------------------------------------------------------------------------


async def test_posting_a_batch_answers_204_with_an_empty_body(tmp_path: Path) -> None:
    """POST /api/events answers 204 No Content with nothing in the body."""
    async with open_api(tmp_path) as client:
        response = await client.post("events", json=[make_event(), make_event()])

    assert response.status_code == 204
    assert response.content == b""


async def test_events_come_back_in_wire_key_order_with_utc_times(tmp_path: Path) -> None:
    """Stored events are answered with the protocol's key order and times ending in Z."""
    event = make_event(
        occurred="2024-06-01T14:00:00.000007+02:00",
        related=related(1),
        payload={"n": 1},
        follows=str(uuid.uuid4()),
    )
    async with open_api(tmp_path) as client:
        await post_events(client, [event])
        response = await client.post("events/filter", json={"filter": WIDE})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    page = response.json()
    assert list(page) == ["events", "total", "next_page"]
    (answer,) = page["events"]
    assert list(answer) == WIRE_KEYS
    assert answer["occurred"] == "2024-06-01T12:00:00.000007Z"
    assert answer["received"].endswith("Z")
    assert {k: answer[k] for k in ("event", "resource", "related", "payload", "id", "follows")} == {
        k: event[k] for k in ("event", "resource", "related", "payload", "id", "follows")
    }
    assert (page["total"], page["next_page"]) == (1, None)


async def test_a_payload_is_stored_as_the_json_it_was_sent(tmp_path: Path) -> None:
    """Nested values, unicode, numbers and spacing in a payload come back meaning the same."""
    payload = {
        "nested": {"list": [1, 2.5, -3e-7, None, True], "empty": {}},
        "text": 'naïve \u2603 "quoted" {not: json}',
        "big": 12345678901234567890,
    }
    event = make_event(payload=payload)
    spaced = json.dumps([event], indent=2).encode()  # whitespace everywhere
    async with open_api(tmp_path) as client:
        response = await client.post(
            "events", content=spaced, headers={"content-type": "application/json"}
        )
        found = (await client.post("events/filter", json={"filter": WIDE})).json()["events"]

    assert response.status_code == 204
    assert [e["payload"] for e in found] == [payload]


async def test_a_payload_spaced_between_tokens_among_compact_ones_is_stored(
    tmp_path: Path,
) -> None:
    """A compact batch whose strings hold blanks, and one payload written over several
    lines: every payload comes back meaning what was sent, the blanks in strings kept."""
    payloads = [{"message": f"state {n}\tis  now Running", "n": n} for n in range(3)]
    events = [make_event(payload=p) for p in payloads]
    body = _compact(events)
    spread = json.dumps(payloads[1], indent=1)  # blanks and newlines between tokens
    body = body.replace(_compact(payloads[1]), spread.encode())
    assert spread.encode() in body
    async with open_api(tmp_path) as client:
        response = await client.post(
            "events", content=body, headers={"content-type": "application/json"}
        )
        found = (await client.post("events/filter", json={"filter": WIDE})).json()["events"]

    assert response.status_code == 204, response.text
    assert sorted(e["payload"]["n"] for e in found) == [0, 1, 2]
    assert {e["payload"]["message"] for e in found} == {p["message"] for p in payloads}


@pytest.mark.parametrize(
    "base_url", [BASE_URL, "http://events.example:8080/api/"], ids=["test", "other-host"]
)
async def test_next_page_is_an_absolute_url_that_serves_the_following_page(
    tmp_path: Path, base_url: str
) -> None:
    """next_page is an absolute URL under the request's /api; GETting it gives the next page."""
    events = [make_event(occurred=f"2024-06-01T12:00:0{n}Z") for n in range(5)]
    async with open_api(tmp_path, base_url=base_url) as client:
        await post_events(client, events)
        page = (await client.post("events/filter", json={"filter": WIDE, "limit": 2})).json()
        pages = [page]
        while page["next_page"]:
            assert page["next_page"].startswith(f"{base_url}events/filter/next?page-token=")
            response = await client.get(page["next_page"])
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)

    assert [len(p["events"]) for p in pages] == [2, 2, 1]
    assert {p["total"] for p in pages} == {5}
    served = [e["id"] for p in pages for e in p["events"]]
    assert served == [e["id"] for e in reversed(events)]  # newest first, no gaps or repeats


@pytest.mark.parametrize(
    "body",
    [b"", b" \r\n", b"{}", b'{"filter": null}'],
    ids=["empty", "blank", "empty-object", "null-filter"],
)
async def test_a_query_without_a_filter_uses_the_default_window(
    tmp_path: Path, body: bytes
) -> None:
    """An empty body, {} and {"filter": null} all query recent events (default filter)."""
    recent = make_event(occurred=datetime.now(UTC).isoformat())
    ancient = make_event(occurred="2001-01-01T00:00:00Z")
    async with open_api(tmp_path) as client:
        await post_events(client, [recent, ancient])
        response = await client.post("events/filter", content=body)

    assert response.status_code == 200, response.text
    page = response.json()
    assert [e["id"] for e in page["events"]] == [recent["id"]]
    assert (page["total"], page["next_page"]) == (1, None)


async def test_limit_zero_answers_the_total_without_events_or_next_page(tmp_path: Path) -> None:
    """limit 0 counts the matches but serves no events and no next_page (D10)."""
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event() for _ in range(3)])
        response = await client.post("events/filter", json={"filter": WIDE, "limit": 0})

    assert response.json() == {"events": [], "total": 3, "next_page": None}


async def test_a_page_holds_up_to_1000_events(tmp_path: Path) -> None:
    """limit may go up to 1000 on localevents (D10)."""
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event() for _ in range(1001)])
        response = await client.post("events/filter", json={"filter": WIDE, "limit": 1000})

    page = response.json()
    assert (len(page["events"]), page["total"]) == (1000, 1001)
    assert page["next_page"] is not None


async def test_count_by_event_answers_one_count_per_name(tmp_path: Path) -> None:
    """count-by/event answers a JSON array of {value, label, count, start_time, end_time}."""
    events = [
        make_event(event="acme.a", occurred="2024-06-01T12:00:00Z"),
        make_event(event="acme.b", occurred="2024-06-01T12:00:01Z"),
        make_event(event="acme.a", occurred="2024-06-01T12:00:02Z"),
    ]
    async with open_api(tmp_path) as client:
        await post_events(client, events)
        response = await client.post("events/count-by/event", json={"filter": WIDE})

    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "value": "acme.a",
            "label": "acme.a",
            "count": 2,
            "start_time": "2024-06-01T12:00:00Z",
            "end_time": "2024-06-01T12:00:02Z",
        },
        {
            "value": "acme.b",
            "label": "acme.b",
            "count": 1,
            "start_time": "2024-06-01T12:00:01Z",
            "end_time": "2024-06-01T12:00:01Z",
        },
    ]


async def test_count_by_time_answers_every_bucket_of_the_window(tmp_path: Path) -> None:
    """count-by/time answers one gap-filled count per bucket, in time order."""
    events = [
        make_event(occurred="2024-06-01T00:10:00Z"),
        make_event(occurred="2024-06-01T02:20:00Z"),
        make_event(occurred="2024-06-01T02:30:00Z"),
    ]
    window = {"occurred": {"since": "2024-06-01T00:00:00Z", "until": "2024-06-01T02:59:59Z"}}
    async with open_api(tmp_path) as client:
        await post_events(client, events)
        response = await client.post(
            "events/count-by/time", json={"filter": window, "time_unit": "hour"}
        )

    assert response.status_code == 200, response.text
    counts = response.json()
    assert [(c["value"], c["count"]) for c in counts] == [("0", 1), ("1", 0), ("2", 2)]
    assert all(list(c) == ["value", "label", "count", "start_time", "end_time"] for c in counts)
    assert counts[1]["start_time"] == "2024-06-01T01:00:00Z"
    assert counts[1]["end_time"] == "2024-06-01T01:59:59.999999Z"


async def test_health_answers_true(tmp_path: Path) -> None:
    """GET /api/health answers the JSON literal true."""
    async with open_api(tmp_path) as client:
        response = await client.get("health")

    assert (response.status_code, response.content) == (200, b"true")


async def test_ready_answers_ok(tmp_path: Path) -> None:
    """GET /api/ready answers {"message": "OK"} once the events file answers."""
    async with open_api(tmp_path) as client:
        response = await client.get("ready")

    assert (response.status_code, response.json()) == (200, {"message": "OK"})


async def test_the_openapi_document_lists_every_route(tmp_path: Path) -> None:
    """/api/docs/openapi.json documents every route of the API with its method."""
    async with open_api(tmp_path) as client:
        response = await client.get("docs/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {path: sorted(operations) for path, operations in paths.items()} == {
        "/api/events": ["post"],
        "/api/events/filter": ["post"],
        "/api/events/filter/next": ["get"],
        "/api/events/count-by/{countable}": ["post"],
        "/api/events/export": ["post"],
        "/api/health": ["get"],
        "/api/metrics": ["get"],  # with prometheus-client (a dev dependency)
        "/api/ready": ["get"],
    }


async def test_the_openapi_document_describes_the_bodies(tmp_path: Path) -> None:
    """Request bodies are documented: an array of events, the filter and the count request."""
    async with open_api(tmp_path) as client:
        document = (await client.get("docs/openapi.json")).json()

    def body_schema(path: str) -> object:
        return document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]

    assert body_schema("/api/events") == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ReceivedEvent"},
    }
    assert body_schema("/api/events/filter") == {"$ref": "#/components/schemas/FilterRequest"}
    schemas = document["components"]["schemas"]
    assert {"ReceivedEvent", "EventFilter", "CountRequest", "EventTextFilter"} <= set(schemas)
    assert schemas["ReceivedEvent"]["required"] == ["occurred", "event", "resource", "id"]


async def test_the_docs_page_is_html(tmp_path: Path) -> None:
    """/api/docs serves a human-readable HTML page."""
    async with open_api(tmp_path) as client:
        response = await client.get("docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


# -- durable and idempotent (D1, D2) ------------------------------------------------------


async def test_acknowledged_events_are_queryable_at_once(tmp_path: Path) -> None:
    """Once POST answers 204 every event of the batch is found by the next query (D1)."""
    events = [make_event() for _ in range(200)]
    async with open_api(tmp_path) as client:
        await post_events(client, events)
        found = await stored(client)

    assert sorted(e["id"] for e in found) == sorted(e["id"] for e in events)


async def test_reposting_a_known_id_keeps_the_first_event(tmp_path: Path) -> None:
    """An event whose id is already stored is ignored, even with another name (D2)."""
    first = make_event(event="acme.first")
    again = first | {"event": "acme.second", "payload": {"n": 2}}
    async with open_api(tmp_path) as client:
        await post_events(client, [first])
        await post_events(client, [again])
        found = await stored(client)

    assert [(e["id"], e["event"], e["payload"]) for e in found] == [(first["id"], "acme.first", {})]


async def test_duplicates_inside_one_batch_collapse_to_the_first(tmp_path: Path) -> None:
    """Events sharing an id in one batch are stored once, as the first of them (D2)."""
    first = make_event(event="acme.first")
    other = make_event()
    batch = [first, other, first | {"event": "acme.second"}, first]
    async with open_api(tmp_path) as client:
        await post_events(client, batch)
        found = await stored(client)

    assert sorted((e["id"], e["event"]) for e in found) == sorted(
        [(first["id"], "acme.first"), (other["id"], other["event"])]
    )


async def test_concurrent_posts_of_one_batch_store_it_once(tmp_path: Path) -> None:
    """The same batch posted by several requests at once is stored once (D2, group commit)."""
    batch = [make_event() for _ in range(50)]
    async with open_api(tmp_path) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(post_events, client, batch)
        found = await stored(client)

    assert sorted(e["id"] for e in found) == sorted(e["id"] for e in batch)


# -- bad input (D3, D13) ------------------------------------------------------------------


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _compact(value: Any) -> bytes:
    """A body without blanks between tokens, as most clients send it (the payloads' fast
    check applies only then)."""
    return json.dumps(value, separators=(",", ":")).encode()


BAD_BATCHES = [
    pytest.param(b'[{"id": ', "not valid JSON", id="malformed-json"),
    pytest.param(b"{not json", "not valid JSON", id="malformed-json-object"),
    pytest.param(_body(make_event()), "must be a JSON array of events", id="not-an-array"),
    pytest.param(_body([without("id")]), "index 0: Object missing required field `id`", id="no-id"),
    pytest.param(
        _body([without("occurred")]),
        "index 0: Object missing required field `occurred`",
        id="no-occurred",
    ),
    pytest.param(
        _body([without("resource")]),
        "index 0: Object missing required field `resource`",
        id="no-resource",
    ),
    pytest.param(
        _body([make_event(resource={"name": "widget"})]),
        "must include the prefect.resource.id label",
        id="no-resource-id",
    ),
    pytest.param(
        _body([make_event(resource={"prefect.resource.id": ""})]),
        "prefect.resource.id label must be non-empty",
        id="empty-resource-id",
    ),
    pytest.param(
        _body([make_event(related=[{"prefect.resource.id": "acme.part.1"}])]),
        "must include the prefect.resource.role label",
        id="related-without-role",
    ),
    pytest.param(
        _body(
            [
                make_event(
                    related=[{"prefect.resource.id": "acme.part.1", "prefect.resource.role": ""}]
                )
            ]
        ),
        "prefect.resource.role label must be non-empty",
        id="related-with-empty-role",
    ),
    pytest.param(
        _body([make_event(resource={"prefect.resource.id": "acme.widget.1", "color": None})]),
        "'color' should be a valid string",
        id="null-label-value",
    ),
    pytest.param(
        _body([make_event(), make_event(payload=[1, 2])]),
        "index 1: Expected `object`, got `array` (at $[1].payload)",
        id="payload-not-an-object",
    ),
    pytest.param(
        _body([make_event(payload="text")]),
        "index 0: Expected `object`, got `str` (at $[0].payload)",
        id="payload-a-string",
    ),
    pytest.param(
        _compact([make_event(), make_event(), make_event(payload=[1, {}])]),
        "index 2: Expected `object`, got `array` (at $[2].payload)",
        id="payload-not-an-object-compact",
    ),
    pytest.param(
        _compact([make_event(payload={"n": 1}), make_event(payload=7)]),
        "index 1: Expected `object`, got `number` (at $[1].payload)",
        id="payload-a-number-compact",
    ),
    pytest.param(
        _body([make_event(related=related(101))]),
        "maximum number of related resources is 100",
        id="too-many-related",
    ),
    pytest.param(
        _body([make_event(event="x" * 1025)]),
        "Event name must be at most 1024 characters",
        id="name-too-long",
    ),
    pytest.param(
        _body([make_event(occurred="2024-01-01T00:00:00")]), "timezone", id="naive-datetime"
    ),
    pytest.param(_body([make_event(occurred="yesterday")]), "RFC3339", id="word-datetime"),
    pytest.param(
        _body([make_event(occurred="2024-13-01T00:00:00Z")]), "RFC3339", id="month-13-datetime"
    ),
    pytest.param(
        _body([make_event(), make_event(occurred="9999-12-31T23:00:00-05:00")]),
        "index 1: the instant is outside years 1-9999 in UTC (at $[1].occurred)",
        id="occurred-past-the-calendar-in-utc",
    ),
    pytest.param(
        _compact([make_event(), make_event(occurred="9999-12-31T23:00:00-05:00")]),
        "index 1: the instant is outside years 1-9999 in UTC (at $[1].occurred)",
        id="occurred-past-the-calendar-in-utc-compact",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BATCHES)
async def test_a_bad_batch_is_refused_with_422_naming_the_problem(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    """Invalid input answers 422 with a message naming the problem, and stores nothing (D3)."""
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event()])
        response = await client.post(
            "events", content=body, headers={"content-type": "application/json"}
        )
        after = await stored_count(client)

    body_json = assert_error(response, 422, reason)
    assert body_json["error"] == "InvalidEventError"
    assert body_json["exception_message"] == "Invalid request received."
    assert after == 1


async def test_one_bad_event_rejects_its_whole_batch(tmp_path: Path) -> None:
    """A batch of 5 whose event 3 is invalid answers 422 naming index 3; none is stored."""
    batch = [make_event() for _ in range(5)]
    batch[3]["resource"] = {"prefect.resource.id": ""}
    async with open_api(tmp_path) as client:
        response = await client.post("events", json=batch)
        after = await stored_count(client)

    assert_error(response, 422, "index 3", "prefect.resource.id")
    assert after == 0


async def test_too_many_labels_are_refused_and_the_limit_itself_is_allowed(tmp_path: Path) -> None:
    """More labels than LOCALEVENTS_EVENTS_MAXIMUM_LABELS_PER_RESOURCE is 422; exactly it is OK."""
    at_limit = {"prefect.resource.id": "acme.widget.1", "a": "1", "b": "2"}
    with temporary_settings(events_maximum_labels_per_resource=3):
        async with open_api(tmp_path) as client:
            over = await client.post("events", json=[make_event(resource=at_limit | {"c": "3"})])
            ok = await client.post("events", json=[make_event(resource=at_limit)])
            after = await stored_count(client)

    assert_error(over, 422, "index 0", "maximum number of labels per resource is 3")
    assert ok.status_code == 204, ok.text
    assert after == 1


async def test_the_apps_own_settings_set_the_event_limits(tmp_path: Path) -> None:
    """Limits in the Settings given to create_app apply, with no override active."""
    settings = Settings(
        events_maximum_labels_per_resource=2,
        events_maximum_related_resources=1,
        events_maximum_event_name_length=20,
    )
    labels = {"prefect.resource.id": "acme.widget.1", "a": "1", "b": "2"}
    async with open_api(tmp_path, settings) as client:
        answers = [
            await client.post("events", json=[event])
            for event in (
                make_event(resource=labels),
                make_event(related=related(2)),
                make_event(event="acme." + "x" * 16),
                make_event(related=[related(1)[0] | {"colour": "red"}]),
            )
        ]
        after = await stored_count(client)

    assert_error(answers[0], 422, "maximum number of labels per resource is 2")
    assert_error(answers[1], 422, "maximum number of related resources is 1")
    assert_error(answers[2], 422, "at most 20 characters")
    assert_error(answers[3], 422, "maximum number of labels per resource is 2 (at $[0].related[0])")
    assert after == 0


async def test_an_event_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    """An event whose JSON is over LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES is refused (D3)."""
    with temporary_settings(events_maximum_size_bytes=1000):
        async with open_api(tmp_path) as client:
            small = await client.post("events", json=[make_event(payload={"x": "y" * 100})])
            large = await client.post(
                "events", json=[make_event(), make_event(payload={"x": "y" * 1000})]
            )
            after = await stored_count(client)

    assert small.status_code == 204, small.text
    body = assert_error(large, 422, "index 1", "over the limit of 1000")
    assert body["error"] == "EventTooLarge"  # the SDK raises localevents.EventTooLarge
    assert after == 1


async def test_the_first_bad_event_of_a_batch_is_the_one_named(tmp_path: Path) -> None:
    """A batch with a too-big event before one that breaks a rule names the too-big one."""
    with temporary_settings(events_maximum_size_bytes=1000):
        async with open_api(tmp_path) as client:
            too_big = make_event(payload={"x": "y" * 1000})
            unnamed = make_event(resource={"app.name": "no id"})
            answer = await client.post("events", json=[make_event(), too_big, unnamed])

    assert assert_error(answer, 422, "index 1", "over the limit of 1000")["error"] == (
        "EventTooLarge"
    )


async def test_a_body_over_the_maximum_is_refused_with_413(tmp_path: Path) -> None:
    """A body larger than LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES answers 413, storing nothing."""
    with temporary_settings(server_maximum_body_bytes=10_000):
        async with open_api(tmp_path) as client:
            response = await client.post("events", json=[make_event() for _ in range(100)])
            after = await stored_count(client)

    body = assert_error(response, 413, "larger than the limit of 10000 bytes")
    assert body["error"] == "RequestTooLarge"
    assert after == 0


@pytest.mark.parametrize("path", ["events/filter", "events/count-by/event", "events/export"])
async def test_a_query_body_over_four_mebibytes_is_refused_with_413(
    tmp_path: Path, path: str
) -> None:
    """A query's body may have 4 MiB, not the 64 MiB of a batch of events: a filter of a
    million values was decoded whole (hundreds of megabytes) before its limits could say
    no."""
    names = [f"acme.{n:07d}" for n in range(400_000)]  # about 5.6 MB of JSON
    async with open_api(tmp_path) as client:
        response = await client.post(path, json={"filter": {"event": {"name": names}}})

    body = assert_error(response, 413, f"larger than the limit of {4 * 1024 * 1024} bytes")
    assert body["detail"].endswith("for a query")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        pytest.param({"filter": WIDE, "bogus": 1}, "`bogus`", id="top-level"),
        pytest.param({"filter": {"event": {"bogus": ["x"]}}}, "`bogus`", id="nested"),
        pytest.param({"limit": -1}, "limit", id="limit-negative"),
        pytest.param({"limit": 1001}, "limit", id="limit-over-1000"),
        pytest.param({"filter": {"occurred": {"since": "yesterday"}}}, "since", id="bad-since"),
    ],
)
async def test_a_bad_query_is_refused_with_422(
    tmp_path: Path, query: dict[str, Any], named: str
) -> None:
    """Unknown filter keys (anywhere) and limits outside 0-1000 answer 422 naming them."""
    async with open_api(tmp_path) as client:
        response = await client.post("events/filter", json=query)

    body = assert_error(response, 422, named)
    assert body["error"] == "InvalidRequestError"


async def test_malformed_query_json_is_refused_with_422(tmp_path: Path) -> None:
    """A query body that is not JSON answers 422 saying so."""
    async with open_api(tmp_path) as client:
        response = await client.post("events/filter", content=b'{"filter": {"event"')

    assert_error(response, 422, "not valid JSON")


async def _page_token(client: httpx.AsyncClient) -> str:
    await post_events(client, [make_event() for _ in range(3)])
    page = (await client.post("events/filter", json={"filter": WIDE, "limit": 1})).json()
    url = httpx.URL(page["next_page"])
    return url.params["page-token"]


def _tampered(token: str) -> str:
    """The token with one character of its signed part changed."""
    index = 5
    replacement = "A" if token[index] != "A" else "B"
    return f"{token[:index]}{replacement}{token[index + 1 :]}"


def _resigned_with_a_bigger_page(token: str) -> str:
    """A token whose signed content is edited (page size 1 -> 999) and re-encoded."""
    body, _, mac = token.partition(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["page_size"] = 999
    edited = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    return f"{edited}.{mac}"


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda _: "just-bad", id="garbled"),
        pytest.param(lambda _: "", id="empty"),
        pytest.param(lambda t: t + "x", id="extended"),
        pytest.param(_tampered, id="one-character-changed"),
        pytest.param(_resigned_with_a_bigger_page, id="content-edited"),
    ],
)
async def test_a_bad_page_token_answers_403(tmp_path: Path, spoil: Any) -> None:
    """A garbled or tampered page token answers 403, never 500 (D10)."""
    async with open_api(tmp_path) as client:
        token = await _page_token(client)
        response = await client.get("events/filter/next", params={"page-token": spoil(token)})

    body = assert_error(response, 403)
    assert body["error"] == "InvalidPageToken"


async def test_a_missing_page_token_is_refused_with_422(tmp_path: Path) -> None:
    """GET /api/events/filter/next without page-token answers 422 naming the parameter."""
    async with open_api(tmp_path) as client:
        response = await client.get("events/filter/next")

    body = assert_error(response, 422, "page-token")
    assert body["error"] == "InvalidRequestError"


async def test_a_page_token_of_another_events_file_answers_403(tmp_path: Path) -> None:
    """A token issued over one events file is refused by a server over another (D10)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with open_api(tmp_path / "a") as client:
        token = await _page_token(client)
    async with open_api(tmp_path / "b") as client:
        response = await client.get("events/filter/next", params={"page-token": token})

    assert_error(response, 403)


DEEP = "[" * 20_000 + "]" * 20_000
"""JSON nested deeper than the decoder reads (it raised RecursionError: a 500): about
1000 levels on Python 3.11 and 3.12, 9999 on 3.13."""


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("events", DEEP, id="batch"),
        pytest.param("events", f'[{{"payload": {{"a": {DEEP}}}}}]', id="payload"),
        pytest.param("events/filter", f'{{"filter": {DEEP}}}', id="filter"),
        pytest.param("events/count-by/event", f'{{"filter": {DEEP}}}', id="count"),
        pytest.param("events/export", f'{{"filter": {DEEP}}}', id="export"),
    ],
)
async def test_json_nested_too_deeply_is_refused_with_422(
    tmp_path: Path, path: str, body: str
) -> None:
    """A body nested thousands of levels deep is refused as JSON the server cannot read (422
    saying so), not answered 500 with a traceback in the log."""
    async with open_api(tmp_path) as client:
        response = await client.post(path, content=body)

    assert_error(response, 422, "nested too deeply to read")


NOT_UTF8 = b'{"filter": {"event": {"prefix": ["caf\xe9"]}}}'
"""A query whose text is Latin-1, not UTF-8 (it raised UnicodeDecodeError: a 500)."""


@pytest.mark.parametrize("path", ["events/filter", "events/count-by/event", "events/export"])
async def test_a_query_that_is_not_utf8_is_refused_with_422(tmp_path: Path, path: str) -> None:
    """A query's body holding bytes that are not UTF-8 is refused as JSON the server cannot
    read, naming the byte and where it is."""
    async with open_api(tmp_path) as client:
        response = await client.post(path, content=NOT_UTF8)

    at = NOT_UTF8.index(b"\xe9")
    assert_error(
        response,
        422,
        f"not valid JSON: JSON is malformed: invalid UTF-8 (byte {at})",
    )


async def test_a_batch_that_is_not_utf8_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    """A batch whose second event's name is Latin-1 is refused with 422 naming the bad byte
    (it answered 500 with a traceback in the log); its first event is not stored either."""
    first, second = make_event(), make_event(event="acme.caf-PLACEHOLDER")
    body = json.dumps([first, second]).replace("-PLACEHOLDER", "\xe9").encode("latin-1")
    async with open_api(tmp_path) as client:
        response = await client.post("events", content=body)
        kept = await stored(client)

    assert_error(response, 422, "The body is not valid JSON: JSON is malformed: invalid UTF-8")
    at = body.index(b"\xe9")
    assert f"(byte {at})" in response.json()["detail"]
    assert kept == []


async def test_a_payload_that_is_not_utf8_is_refused_before_any_commit(tmp_path: Path) -> None:
    """A payload string holding Latin-1 bytes is refused with 422 naming its event and the
    byte: the payload is kept raw, unread by msgspec, and DuckDB refused it at the commit
    (a 500, which would fail every batch committed with it)."""
    first, second = make_event(), make_event(payload={"note": "caf-PLACEHOLDER"})
    body = json.dumps([first, second]).replace("-PLACEHOLDER", "\xe9").encode("latin-1")
    async with open_api(tmp_path) as client:
        response = await client.post("events", content=body)
        kept = await stored(client)

    assert_error(
        response,
        422,
        # the payload as sent: {"note": "caf\xe9"}
        "Invalid event at index 1: JSON is malformed: invalid UTF-8 (byte 13 of the payload) "
        "(at $[1].payload)",
    )
    assert kept == []


async def test_a_label_that_is_no_string_beside_text_that_is_not_utf8_is_a_422(
    tmp_path: Path,
) -> None:
    """An event whose label is a number and whose payload holds Latin-1 bytes is refused
    with 422 for its label (naming the label took a second, untyped decode, which the bytes
    broke: a 500)."""
    bad = make_event(payload={"note": "caf-PLACEHOLDER"})
    bad["resource"]["acme.count"] = 1
    body = json.dumps([bad]).replace("-PLACEHOLDER", "\xe9").encode("latin-1")
    async with open_api(tmp_path) as client:
        response = await client.post("events", content=body)
        kept = await stored(client)

    assert_error(response, 422, "Invalid event at index 0: Expected `str`, got `int`")
    assert kept == []


async def test_a_host_header_that_cannot_be_read_is_no_server_error(tmp_path: Path) -> None:
    """A Host header whose port is no number (sent by anyone, before any key is asked
    for on a 404) gets the answer its request would get, or 422 where the answer must
    name the server (a page's next link): it was 500, with a traceback per request."""
    bad_host = {"host": "events.example:not-a-port"}
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event(), make_event()])
        outside = await client.get("http://test/nowhere", headers=bad_host)
        query = {"filter": WIDE, "limit": 1}
        paged = await client.post("events/filter", json=query, headers=bad_host)

    assert outside.status_code == 404
    assert "nothing is served at /nowhere" in outside.json()["detail"]
    assert_error(paged, 422, "the Host header cannot be read")


@pytest.mark.parametrize(
    ("countable", "query", "status", "named"),
    [
        pytest.param("event", {"filter": {}, "time_interval": 0.009}, 422, "0.01", id="interval"),
        pytest.param("bogus", {"filter": {}}, 422, "'bogus'", id="unknown-countable"),
        pytest.param("event", {}, 422, "`filter`", id="no-filter"),
        pytest.param(
            "time",
            {
                "filter": {
                    "occurred": {"since": "2024-01-01T00:00:00Z", "until": "2024-01-02T00:00:00Z"}
                },
                "time_unit": "second",
            },
            422,
            "86400 buckets",
            id="too-many-buckets",
        ),
        pytest.param(
            "time", {"filter": {}, "time_interval": 1e308}, 422, "years 1-9999", id="endless"
        ),
        pytest.param(
            "time",
            {"filter": {}, "time_unit": "week", "time_interval": 1e12},
            422,
            "1e+12 weeks is longer than years 1-9999",
            id="longer-than-the-calendar",
        ),
        pytest.param(
            "time",
            {
                "filter": {"occurred": {"since": "0001-01-01T00:00:00Z"}},
                "time_unit": "week",
                "time_interval": 1000,
            },
            422,
            "would reach outside years 1-9999",
            id="before-year-1",
        ),
        pytest.param(
            "day",
            {
                "filter": {
                    "occurred": {
                        "since": "2026-01-02T00:00:00Z",
                        "until": "2026-01-01T00:00:00Z",
                    }
                },
            },
            422,
            "occurred.since (2026-01-02T00:00:00+00:00) is after occurred.until "
            "(2026-01-01T00:00:00+00:00)",
            id="since-after-until",
        ),
        pytest.param(
            "time",
            {"filter": {"occurred": {"since": "9000-01-01T00:00:00Z"}}},
            422,
            "occurred.since (9000-01-01T00:00:00+00:00) is in the future and occurred.until "
            "is not given",
            id="since-ahead-of-an-implicit-until",
        ),
    ],
)
async def test_a_bad_count_is_refused_with_422(
    tmp_path: Path, countable: str, query: dict[str, Any], status: int, named: str
) -> None:
    """count-by refuses a tiny interval, an unknown countable, a missing filter, > 1000
    buckets, buckets outside the calendar (they were 500s) and a range that ends before it
    starts, each with a message naming the problem (and an until the caller did not give
    as such)."""
    async with open_api(tmp_path) as client:
        response = await client.post(f"events/count-by/{countable}", json=query)

    assert_error(response, status, named)


@pytest.mark.parametrize("countable", ["event", "resource"])
async def test_the_bucket_limit_applies_only_to_time_counts(tmp_path: Path, countable: str) -> None:
    """Counting by name or resource over a range of > 1000 buckets is fine (D11)."""
    window = {"since": "2024-01-01T00:00:00Z", "until": "2024-01-02T00:00:00Z"}
    query = {"filter": {"occurred": window}, "time_unit": "second"}
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event(occurred="2024-01-01T12:00:00Z")])
        response = await client.post(f"events/count-by/{countable}", json=query)

    assert response.status_code == 200, response.text
    assert [c["count"] for c in response.json()] == [1]


# -- API key (D12) ------------------------------------------------------------------------

KEY = "s3cret"


def basic(credential: str) -> str:
    """An HTTP Basic Authorization header value whose decoded credential is ``credential``."""
    return "Basic " + base64.b64encode(credential.encode()).decode()


@contextlib.asynccontextmanager
async def open_keyed_api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client (sending no key by itself) of an app that requires the key ``s3cret``."""
    async with open_api(tmp_path, Settings(api_key=KEY)) as client:
        yield client


async def test_a_request_without_the_key_is_refused_with_401(tmp_path: Path) -> None:
    """With a key configured, a request without one answers 401 and a WWW-Authenticate."""
    async with open_keyed_api(tmp_path) as client:
        response = await client.post("events/filter", json={})

    body = assert_error(response, 401, "no API key")
    assert body["error"] == "AuthenticationError"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}x", "Bearer ", basic("wrong"), "Basic !!!", b"Basic \xc3\xa9\xc3\xa9", KEY],
    ids=["wrong-bearer", "empty-bearer", "wrong-basic", "garbled-basic", "non-ascii-basic",
         "no-scheme"],
)  # fmt: skip
async def test_a_wrong_key_is_refused_with_401(tmp_path: Path, authorization: str | bytes) -> None:
    """A wrong key, in either scheme or in none, answers 401 (non-ASCII text in place of
    Basic's base64 was a 500)."""
    async with open_keyed_api(tmp_path) as client:
        response = await client.post(
            "events/filter", json={}, headers={"authorization": authorization}
        )

    assert_error(response, 401)
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}", f"bearer {KEY}", basic(KEY)],
    ids=["bearer", "lower", "basic"],
)
async def test_the_right_key_is_accepted(tmp_path: Path, authorization: str) -> None:
    """Bearer <key>, or HTTP Basic whose decoded credential is the key, is let through."""
    async with open_keyed_api(tmp_path) as client:
        client.headers["authorization"] = authorization
        written = await client.post("events", json=[make_event()])
        count = await stored_count(client)

    assert written.status_code == 204, written.text
    assert count == 1


async def test_a_web_page_of_another_site_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """A POST a browser sends from another site's page (it carries that page's Origin;
    text/plain needs no preflight) is refused with 403 naming the origin and the setting,
    and nothing is stored: a server without a key stored whatever any page sent it."""
    event = make_event()
    async with open_api(tmp_path) as client:
        refused = await client.post(
            "events",
            content=json.dumps([event]),
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        left = await stored(client)

    assert_error(refused, 403, "https://evil.example", "LOCALEVENTS_SERVER_ALLOWED_ORIGINS")
    assert left == []


@pytest.mark.parametrize(
    ("allowed", "origin"),
    [
        pytest.param(frozenset(), "http://test", id="the-servers-own"),
        pytest.param(frozenset({"http://localhost:3000"}), "http://LOCALHOST:3000", id="named"),
        pytest.param(frozenset({"*"}), "https://anywhere.example", id="any"),
    ],
)
async def test_pages_of_the_servers_own_origin_or_allowed_ones_are_served(
    tmp_path: Path, allowed: frozenset[str], origin: str
) -> None:
    """The server's own pages (its API docs), the origins the setting names (compared
    without case) and, with ``*``, any origin may use the API from a browser."""
    event = make_event()
    settings = Settings(server_allowed_origins=allowed)
    async with open_api(tmp_path, settings) as client:
        response = await client.post("events", json=[event], headers={"Origin": origin})
        left = await stored(client)

    assert response.status_code == 204, response.text
    assert [e["id"] for e in left] == [event["id"]]


@pytest.mark.parametrize(("path", "answer"), [("health", True), ("ready", {"message": "OK"})])
async def test_probes_need_no_key(tmp_path: Path, path: str, answer: Any) -> None:
    """GET /api/health and /api/ready answer without a key even when one is configured."""
    async with open_keyed_api(tmp_path) as client:
        response = await client.get(path)

    assert (response.status_code, response.json()) == (200, answer)


async def test_a_refused_write_stores_nothing(tmp_path: Path) -> None:
    """A POST refused for its key leaves the events file unchanged."""
    async with open_keyed_api(tmp_path) as client:
        refused = await client.post("events", json=[make_event()])
        client.headers["authorization"] = f"Bearer {KEY}"
        count = await stored_count(client)

    assert refused.status_code == 401
    assert count == 0


async def test_received_is_stamped_by_the_server_in_utc(tmp_path: Path) -> None:
    """``received`` is stamped by the server at ingest, in UTC."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with open_api(tmp_path) as client:
        await post_events(client, [make_event()])
        (event,) = await stored(client)
    after = datetime.now(UTC) + timedelta(seconds=1)

    assert before <= datetime.fromisoformat(event["received"]) <= after


async def test_a_store_shutting_down_answers_503_with_retry_after(tmp_path: Path) -> None:
    """Requests that reach a closed store get 503 and Retry-After (retryable), not 500."""
    app = create_app(database=str(tmp_path / "events.duckdb"))
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        app.state.store.close()
        write = await client.post("events", json=[make_event()])
        read = await client.post("events/filter", json={})
    for response in (write, read):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"] == "ServiceUnavailable"
        assert "shutting down" in response.json()["detail"]


async def test_a_path_outside_the_api_says_where_the_api_is(tmp_path: Path) -> None:
    """An API URL without its /api (a common slip) gets a 404 that says the API is under
    /api, not a bare "Not Found"; an unknown path under /api stays a plain 404."""
    async with open_api(tmp_path) as client:
        outside = await client.post("http://test/events", json=[make_event()])
        inside = await client.get("http://test/api/nothing-here")
        assert await stored_count(client) == 0
    body = assert_error(outside, 404, "nothing is served at /events", "under /api")
    assert body["error"] == "NotFoundException"
    assert inside.status_code == 404
    assert "under /api" not in inside.text
