"""Filter limits (SPEC D13): a filter over a limit is refused where it is decoded, naming the
field and the limit (422 over HTTP, 1002 on a subscription), one at the limit works, and the
live path compiles a subscription's label patterns once, however many events it tests."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest
from _sockets import closed
from httpx_ws import aconnect_ws

from localevents import InvalidRequestError
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.events import _patterns
from localevents.events._filters import (
    MAXIMUM_FILTER_TOTAL,
    MAXIMUM_FILTER_VALUES,
    MAXIMUM_RESOURCE_FILTERS,
    EventFilter,
    EventResourceFilter,
)
from localevents.events._schemas import ReceivedEvent
from localevents.server import create_app
from localevents.server._hub import LiveHub
from localevents.storage._rows import EncodedEvents

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


BASE_URL = "http://test/api/"
DEADLINE = 10.0
"""Seconds a step may take before the test fails (a guard against hangs, not a timing)."""
ID = "prefect.resource.id"
WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}


def _values(count: int, stem: str = "nomatch") -> list[str]:
    return [f"{stem}.{i}" for i in range(count)]


def _over_limit() -> list[tuple[dict[str, Any], str, str]]:
    """Filters one value over a limit each, the field their refusal names, and how it
    names the limit."""
    over = MAXIMUM_FILTER_VALUES + 1
    half = MAXIMUM_FILTER_TOTAL // 2
    per_list = f"length <= {MAXIMUM_FILTER_VALUES}"
    return [
        ({"resource": {"labels": {ID: _values(over)}}}, "$.filter.resource.labels", per_list),
        ({"related": {"labels": {"a": _values(over)}}}, "$.filter.related.labels", per_list),
        ({"any_resource": {"labels": {"a": _values(over)}}}, "$.filter.any_resource", per_list),
        ({"resource": {"id": _values(over)}}, "$.filter.resource.id", per_list),
        ({"event": {"exclude_prefix": _values(over)}}, "$.filter.event.exclude_prefix", per_list),
        ({"id": {"id": [str(uuid.uuid4()) for _ in range(over)]}}, "$.filter.id.id", per_list),
        (
            {"related": {"resources_in_roles": [[v, "flow"] for v in _values(over)]}},
            "$.filter.related.resources_in_roles",
            per_list,
        ),
        (
            {"any_resource": [{}] * (MAXIMUM_RESOURCE_FILTERS + 1)},
            "$.filter.any_resource",
            f"length <= {MAXIMUM_RESOURCE_FILTERS}",
        ),
        (
            {
                "resource": {"id": _values(half), "id_prefix": _values(half)},
                "event": {"name": ["x"]},
            },
            "$.filter",
            f"at most {MAXIMUM_FILTER_TOTAL} values in all",
        ),
    ]


OVER_LIMIT = _over_limit()
OVER_LIMIT_IDS = ["labels", "related", "any-labels", "ids", "prefixes", "event-ids"]
OVER_LIMIT_IDS += ["pairs", "any-list", "total"]


@contextlib.asynccontextmanager
async def open_app(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client (HTTP and WebSockets) of a fresh app over ``tmp_path/events.duckdb``."""
    app = create_app(database=str(tmp_path / "events.duckdb"), docs=False)
    transport = InProcessWebSocketTransport(app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def _event(resource: str) -> dict[str, Any]:
    return {
        "occurred": datetime.now(UTC).isoformat(),
        "event": "limits.made",
        "resource": {ID: resource},
        "id": str(uuid.uuid4()),
    }


@pytest.mark.parametrize("route", ["events/filter", "events/count-by/event", "events/export"])
@pytest.mark.parametrize(("spec", "field", "limit"), OVER_LIMIT, ids=OVER_LIMIT_IDS)
async def test_an_over_limit_filter_is_refused_with_422_naming_the_field(
    tmp_path: Path, route: str, spec: dict[str, Any], field: str, limit: str
) -> None:
    """A query, count or export whose filter is one value over a limit answers 422, naming
    the field and the limit."""
    async with open_app(tmp_path) as client:
        response = await client.post(route, json={"filter": {"occurred": WIDE, **spec}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert limit in detail
    assert f" - at `{field}" in detail


async def test_a_filter_at_the_limits_works_and_one_value_more_is_refused(
    tmp_path: Path,
) -> None:
    """A filter holding as many values as allowed finds what it should; one value more is
    refused."""
    stored = [_event("acme.widget.1"), _event("acme.widget.2")]
    patterns = [*_values(MAXIMUM_FILTER_VALUES - 1, "nomatch.*"), "acme.*.2"]
    ids = [*_values(MAXIMUM_FILTER_TOTAL - MAXIMUM_FILTER_VALUES - 1), "acme.widget.2"]
    resource = {"id": ids, "labels": {ID: patterns}}
    at_limit: dict[str, Any] = {"occurred": WIDE, "resource": resource}
    assert len(ids) + len(patterns) == MAXIMUM_FILTER_TOTAL
    async with open_app(tmp_path) as client:
        assert (await client.post("events", json=stored)).status_code == 204
        found = await client.post("events/filter", json={"filter": at_limit})
        assert found.status_code == 200
        assert [e["id"] for e in found.json()["events"]] == [stored[1]["id"]]
        over = {**at_limit, "event": {"name": ["limits.made"]}}
        refused = await client.post("events/filter", json={"filter": over})
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"Invalid request: Expected at most {MAXIMUM_FILTER_TOTAL} values in all (ids, names, "
        f"prefixes, roles, label patterns), got {MAXIMUM_FILTER_TOTAL + 1} - at `$.filter`"
    )


def test_a_filter_built_in_python_over_the_total_is_refused_at_once() -> None:
    """The SDK's own filter objects refuse more values in all than a server takes, before
    anything is sent."""
    with pytest.raises(InvalidRequestError, match="at most 2000 values in all"):
        EventFilter(resource=EventResourceFilter(id=_values(MAXIMUM_FILTER_TOTAL + 1)))


@pytest.mark.parametrize(("spec", "field", "limit"), OVER_LIMIT, ids=OVER_LIMIT_IDS)
async def test_an_over_limit_subscription_filter_is_refused_with_1002(
    tmp_path: Path, spec: dict[str, Any], field: str, limit: str
) -> None:
    """A subscriber whose filter is one value over a limit is closed with 1002, the reason
    naming the field and the limit, as any invalid filter."""
    message = {"type": "filter", "filter": {"occurred": WIDE, **spec}}
    async with (
        open_app(tmp_path) as client,
        aconnect_ws("events/out", client, subprotocols=["prefect"]) as ws,
    ):
        await ws.send_json({"type": "auth", "token": None})
        assert await ws.receive_json(timeout=DEADLINE) == {"type": "auth_success"}
        await ws.send_text(json.dumps(message))
        close = await closed(ws)
    assert close.code == 1002
    assert close.reason.startswith("Invalid filter: ")
    assert limit in close.reason
    assert f" - at `{field}" in close.reason


class _CountingCompiles:
    """Counts the label patterns compiled to matchers (glob patterns, with a ``*`` inside)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = _patterns.LabelPattern

        def counted(*args: Any, **kwargs: Any) -> _patterns.LabelPattern:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(_patterns, "LabelPattern", counted)


def _commit(*resources: str) -> list[EncodedEvents]:
    events = [_event(resource) for resource in resources]
    received = msgspec.json.decode(json.dumps(events), type=list[ReceivedEvent])
    return [EncodedEvents.of(received)]


async def test_the_live_path_compiles_each_pattern_once_per_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six subscribers, each with 1000 label patterns of its own (more in all than a shared
    cache of compiled patterns held, so that each commit compiled them all again), get
    exactly their events from three commits while each pattern is compiled once."""
    subscribers, size = 6, MAXIMUM_FILTER_VALUES
    run = uuid.uuid4().hex  # patterns no earlier test compiled
    since = datetime.now(UTC) - timedelta(days=1)
    filters = [
        msgspec.convert(
            {
                "occurred": {"since": since},
                "any_resource": {"labels": {ID: [f"*{run}.{s}.{i}*" for i in range(size)]}},
            },
            EventFilter,
        )
        for s in range(subscribers)
    ]
    counting = _CountingCompiles(monkeypatch)
    hub = LiveHub(maximum=10_000)
    with contextlib.ExitStack() as stack:
        subscriptions = [stack.enter_context(hub.open_subscription(f)) for f in filters]
        first = _commit(*(f"acme.{i}" for i in range(10)), f"x.{run}.3.17.y")
        hub.fan_out(first)
        for commit in range(1, 3):
            hub.fan_out(_commit(*(f"acme.{commit}.{i}" for i in range(10))))
        assert counting.calls == subscribers * size
        with anyio.fail_after(DEADLINE):
            got = [live.id for live in await subscriptions[3].receive()]
        assert not any(subscription.pending for subscription in subscriptions)
    assert got == [first[0].events[-1].id]
