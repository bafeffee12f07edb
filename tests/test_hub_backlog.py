"""When the live fan-out falls behind the commits, the subscribers whose filters take its time
are let go, and only them (``localevents.server._hub``): closed with 1008 and a reason
saying to narrow the filter, while every other subscriber keeps its place and gets every
event. Only when no filter stands out, or letting the costly ones go does not help, is the
stream overloaded: everyone is closed with 1013 and a reason that says so.

Before: one subscriber with a costly but allowed filter (2 labels of 1000 patterns, about
half a second of matching per 1000 events) let the fan-out's backlog pass its bound, and
every subscriber was closed with 1013 "subscriber fell behind", the fast ones included,
each blamed for it in the log.

The hub's tests stand its clock still and advance it as a filter's matching "takes" time,
so what they pin down does not depend on the machine; the server's test runs a real filter
of that cost.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
from _servers import free_port, spawn, uvicorn_command
from _sockets import closed
from httpx_ws import aconnect_ws

import localevents.server._fan_out_clock as fan_out_clock
import localevents.server._hub as hub_module
from localevents.client._websocket import RETRYABLE_CLOSE_CODES
from localevents.events._filters import EventFilter, EventNameFilter
from localevents.events._schemas import ReceivedEvent
from localevents.server import create_app
from localevents.server._hub import (
    FELL_BEHIND,
    FILTER_TOO_COSTLY,
    OVERLOADED,
    FellBehind,
    LiveHub,
)
from localevents.server._live_match import GIVE_UP_EVERY, CommitMatcher, route_of, untimed
from localevents.storage._rows import EncodedEvents

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
    from pathlib import Path

    from _servers import ServerProcess
    from httpx_ws import AsyncWebSocketSession
    from litestar import Litestar

    from localevents.server._live_match import Route

DEADLINE = 10.0
"""Seconds a step may take before the test fails (a guard against hangs, not a timing)."""

BACKLOG = 3
"""The hub's backlog bound in the hub's tests: a commit finding more waiting is behind."""


# -- the hub, on a clock that stands still ----------------------------------------------------


def _event(name: str = "hub.made", **labels: str) -> dict[str, Any]:
    """A valid event as JSON, occurring now, its resource carrying ``labels``."""
    return {
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": f"acme.widget.{uuid.uuid4().hex}", **labels},
        "id": str(uuid.uuid4()),
    }


def _committed(count: int) -> EncodedEvents:
    """A commit of ``count`` new events, as the store hands it to the hub."""
    events = [json.dumps(_event()) for _ in range(count)]
    return EncodedEvents.of([msgspec.json.decode(e, type=ReceivedEvent) for e in events])


def _ids(*commits: EncodedEvents) -> list[uuid.UUID]:
    return [event.id for commit in commits for event in commit.events]


def _named(name: str) -> EventFilter:
    return EventFilter(event=EventNameFilter(prefix=[f"{name}."]))


def _key(event_filter: EventFilter) -> bytes:
    return msgspec.json.encode(untimed(event_filter))


class _Clock:
    """The fan-out clock's ``perf_counter``, standing still but for what a test makes it
    advance."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Costs:
    """Matching that takes the time a test says, per filter (none for the others), and that
    holds the hub's thread in the last of them, so that commits pile up behind it."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, seconds: Iterable[tuple[EventFilter, float]]
    ) -> None:
        self.clock = _Clock()
        self.entered, self.release = threading.Event(), threading.Event()
        self._seconds = {_key(f): cost for f, cost in seconds}
        self._charged = 0
        matching = CommitMatcher.matching

        def costly_matching(
            matcher: CommitMatcher,
            unwindowed: EventFilter,
            route: Route,
            given_up: Callable[[], bool] | None = None,
            candidates: Sequence[int] | None = None,
        ) -> list[int]:
            cost = self._seconds.get(_key(unwindowed))
            if cost is not None:
                self.clock.now += cost
                self._charged += 1
                if self._charged == len(self._seconds):  # the last one: it is still running
                    self.entered.set()
                    self.release.wait(DEADLINE)
            if candidates is None:
                return matching(matcher, unwindowed, route, given_up)
            return matching(matcher, unwindowed, route, given_up, candidates)

        monkeypatch.setattr(fan_out_clock, "perf_counter", self.clock)
        monkeypatch.setattr(hub_module, "BACKLOG_EVENTS", BACKLOG)
        monkeypatch.setattr(CommitMatcher, "matching", costly_matching)

    async def hold_the_fan_out(self, hub: LiveHub, events: int = 1) -> EncodedEvents:
        """Publish a commit of ``events``, and return once the hub's thread is held in
        its matching."""
        first = _committed(events)
        hub.publish([first])
        assert await anyio.to_thread.run_sync(self.entered.wait, DEADLINE)
        return first


@pytest.mark.parametrize(
    ("seconds", "shed"),
    [
        pytest.param({"one": 8.0, "two": 1.0, "three": 1.0}, {"one"}, id="one-of-80%"),
        pytest.param({"one": 3.5, "two": 2.5, "three": 2.0}, {"one", "two"}, id="44%-and-31%"),
    ],
)
async def test_the_costliest_filters_are_let_go_and_the_others_get_every_waiting_event(
    monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float], shed: set[str]
) -> None:
    """A commit that finds the fan-out behind lets go of the subscribers of the costliest
    filters, each of at least a quarter of its time, until those took half (1008, "too
    costly"); the waiting commits are kept, and every other subscriber gets all of them."""
    filters = {name: _named(name) for name in seconds}
    costs = _Costs(monkeypatch, [(filters[name], cost) for name, cost in seconds.items()])
    hub = LiveHub()
    with contextlib.ExitStack() as stack:
        cheap = stack.enter_context(hub.open_subscription(EventFilter()))
        named = {n: stack.enter_context(hub.open_subscription(f)) for n, f in filters.items()}
        first = await costs.hold_the_fan_out(hub)
        second = _committed(BACKLOG + 1)
        hub.publish([second])  # nothing was waiting
        assert not any(s.fell_behind for s in (cheap, *named.values()))
        third = _committed(1)
        hub.publish([third])  # finds BACKLOG + 1 events waiting
        let_go = {name for name, s in named.items() if s.fell_behind}
        assert let_go == shed
        assert {named[name].dropped for name in shed} == {FILTER_TOO_COSTLY}
        assert not cheap.fell_behind
        costs.release.set()
        hub.flush()
        assert [live.id for live in await cheap.receive()] == _ids(first, second, third)
        for name in shed:
            with pytest.raises(FellBehind):
                await named[name].receive()


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param([1.0] * 5, id="five-of-20%"),
        pytest.param([3.0, 2.0, 2.0, 2.0, 1.0], id="one-of-30%-then-20%"),
    ],
)
async def test_without_filters_that_stand_out_the_stream_is_overloaded(
    monkeypatch: pytest.MonkeyPatch, seconds: list[float]
) -> None:
    """Filters of like cost are not singled out, nor one that took less than half of the
    fan-out's time with no other of a quarter: the waiting commits are dropped and every
    subscriber is let go as overloaded (1013)."""
    filters = [_named(f"filter{index}") for index in range(len(seconds))]
    costs = _Costs(monkeypatch, zip(filters, seconds, strict=True))
    hub = LiveHub()
    with contextlib.ExitStack() as stack:
        cheap = stack.enter_context(hub.open_subscription(EventFilter()))
        alike = [stack.enter_context(hub.open_subscription(f)) for f in filters]
        await costs.hold_the_fan_out(hub)
        hub.publish([_committed(BACKLOG + 1)])
        hub.publish([_committed(1)])
        assert {s.dropped for s in (cheap, *alike)} == {OVERLOADED}
        costs.release.set()
        hub.flush()
        for subscription in (cheap, *alike):
            with pytest.raises(FellBehind):
                await subscription.receive()


async def test_a_fan_out_that_stays_behind_after_shedding_lets_everyone_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the costliest filters are let go, the fan-out has until twice the bound to
    catch up; past it the stream is overloaded all the same, and the subscribers left are
    let go too (a costly one keeps its own reason)."""
    costly_filter = _named("costly")
    costs = _Costs(monkeypatch, [(costly_filter, 1.0)])
    hub = LiveHub()
    with (
        hub.open_subscription(EventFilter()) as cheap,
        hub.open_subscription(costly_filter) as costly,
    ):
        await costs.hold_the_fan_out(hub)  # and keep it held: shedding will not help
        hub.publish([_committed(BACKLOG + 1)])
        hub.publish([_committed(1)])
        assert (costly.dropped, cheap.dropped) == (FILTER_TOO_COSTLY, None)
        hub.publish([_committed(BACKLOG - 1)])  # finds BACKLOG + 2: within twice the bound
        assert not cheap.fell_behind
        hub.publish([_committed(1)])  # finds 2 * BACKLOG + 1 waiting
        assert (costly.dropped, cheap.dropped) == (FILTER_TOO_COSTLY, OVERLOADED)
        costs.release.set()
        hub.flush()


async def test_a_fan_out_not_timed_yet_blames_no_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Less than ``MEASURED_S`` of fan-out timed is noise, not a costly filter: the stream
    is overloaded."""
    costly_filter = _named("costly")
    costs = _Costs(monkeypatch, [(costly_filter, hub_module.MEASURED_S / 2)])
    hub = LiveHub()
    with (
        hub.open_subscription(EventFilter()) as cheap,
        hub.open_subscription(costly_filter) as costly,
    ):
        await costs.hold_the_fan_out(hub)
        hub.publish([_committed(BACKLOG + 1)])
        hub.publish([_committed(1)])
        assert (costly.dropped, cheap.dropped) == (OVERLOADED, OVERLOADED)
        costs.release.set()
        hub.flush()


async def test_a_filter_that_tests_many_events_cheaply_is_not_blamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one filter that tests every event among subscribers that follow resources may
    take most of the fan-out's time at a few microseconds per event: that is load, not a
    costly filter, so the stream is overloaded (1013, retried) and nobody is singled out
    with a final 1008."""
    labelled = msgspec.convert({"resource": {"labels": {"tier": ["gold"]}}}, EventFilter)
    events = 10_000
    costs = _Costs(monkeypatch, [(labelled, events * hub_module.COSTLY_PER_EVENT_S / 2)])
    hub = LiveHub()
    with (
        hub.open_subscription(_named("cheap")) as cheap,
        hub.open_subscription(labelled) as scanning,
    ):
        await costs.hold_the_fan_out(hub, events)
        hub.publish([_committed(BACKLOG + 1)])
        hub.publish([_committed(1)])
        assert (scanning.dropped, cheap.dropped) == (OVERLOADED, OVERLOADED)
        costs.release.set()
        hub.flush()


async def test_the_time_of_a_filter_gone_is_nobody_elses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A costly filter whose subscriber left by itself took most of the time: the filters
    left are judged on the rest. One of them that took all of it is let go (it was not,
    and everyone was closed later), and the cheap subscriber gets every event."""
    gone_filter, costly_filter = _named("gone"), _named("costly")
    costs = _Costs(monkeypatch, [(gone_filter, 8.0), (costly_filter, 6.0)])
    hub = LiveHub()
    with (
        hub.open_subscription(EventFilter()) as cheap,
        hub.open_subscription(costly_filter) as costly,
    ):
        with hub.open_subscription(gone_filter):
            first = await costs.hold_the_fan_out(hub)
        second = _committed(BACKLOG + 1)
        hub.publish([second])
        third = _committed(1)
        hub.publish([third])  # behind
        assert (costly.dropped, cheap.dropped) == (FILTER_TOO_COSTLY, None)
        costs.release.set()
        hub.flush()
        assert [live.id for live in await cheap.receive()] == _ids(first, second, third)


def test_a_matching_given_up_stops_within_a_run_of_candidates() -> None:
    """A filter shed while a commit is being matched against it stops being tested after
    at most ``GIVE_UP_EVERY`` more events, and finds nothing."""
    every = EncodedEvents.of(
        [
            msgspec.json.decode(json.dumps(_event(tier="gold")), type=ReceivedEvent)
            for _ in range(10 * GIVE_UP_EVERY)
        ]
    )
    labelled = untimed(msgspec.convert({"resource": {"labels": {"tier": ["g*"]}}}, EventFilter))
    asked: list[int] = []

    def given_up() -> bool:
        asked.append(1)
        return len(asked) > 1  # shed while the first run was being tested

    matcher = CommitMatcher([every])
    assert matcher.matching(labelled, route_of(labelled), given_up) == []
    assert len(asked) == 2
    assert len(CommitMatcher([every]).matching(labelled, route_of(labelled))) == len(every)


def test_each_reason_to_let_a_subscriber_go_fits_a_close_frame_and_says_if_to_retry() -> None:
    """Each close reason fits 123 bytes (D9); a subscriber that fell behind (D8's words) or
    an overloaded stream is retried by the SDK, a filter too costly is not (it would cost
    as much again)."""
    assert FELL_BEHIND.reason == "subscriber fell behind"
    for dropped in (FELL_BEHIND, FILTER_TOO_COSTLY, OVERLOADED):
        assert len(dropped.reason.encode()) <= 123
    assert (FELL_BEHIND.code, OVERLOADED.code, FILTER_TOO_COSTLY.code) == (1013, 1013, 1008)
    assert {FELL_BEHIND.code, OVERLOADED.code} <= RETRYABLE_CLOSE_CODES
    assert FILTER_TOO_COSTLY.code not in RETRYABLE_CLOSE_CODES


# -- a real server and a real costly filter ---------------------------------------------------

SMALL_BACKLOG = 5_000
"""The backlog bound of the server below (20,000 by default), passed in a few seconds."""

BATCH, BATCHES = 500, 30
"""Events per request and requests: three times the bound in all."""


def small_backlog_app() -> Litestar:
    """The app the server below runs (``uvicorn --factory test_hub_backlog:small_backlog_app``
    over ``LOCALEVENTS_DATABASE``): its hub's backlog bound lowered to
    :data:`SMALL_BACKLOG`."""
    hub_module.BACKLOG_EVENTS = SMALL_BACKLOG
    return create_app(docs=False)


@contextlib.contextmanager
def _small_backlog_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real uvicorn serving :func:`small_backlog_app` with the WebSocket protocol of
    ``localevents serve``."""
    port = free_port()
    command = uvicorn_command(
        "test_hub_backlog:small_backlog_app",
        port,
        "--factory",
        "--ws",
        "localevents.server._ws_protocol:CheckpointWSProtocol",
    )
    env = {"LOCALEVENTS_DATABASE": str(tmp_path / "events.duckdb")}
    with spawn(command, port, env=env) as server:
        yield server


@contextlib.asynccontextmanager
async def _subscribe(
    client: httpx.AsyncClient, url: str, event_filter: dict[str, Any]
) -> AsyncIterator[AsyncWebSocketSession]:
    """A subscription to ``url`` (``/events/out``) past the handshake."""
    async with aconnect_ws(url, client, subprotocols=["prefect"]) as ws:
        await ws.send_json({"type": "auth", "token": None})
        assert await ws.receive_json(timeout=DEADLINE) == {"type": "auth_success"}
        await ws.send_json({"type": "filter", "filter": event_filter})
        yield ws


async def _next_id(ws: AsyncWebSocketSession) -> str:
    message = json.loads(await ws.receive_text(timeout=DEADLINE))
    assert message["type"] == "event"
    event_id: str = message["event"]["id"]
    return event_id


async def test_a_subscriber_whose_filter_is_too_costly_is_closed_alone(tmp_path: Path) -> None:
    """Over a real server, a subscriber testing 2000 label patterns on every event is
    closed with 1008 and a reason saying to narrow its filter once the fan-out falls
    behind; a subscriber following the same events gets every one of them, and the log
    and the metrics say which filter took the time, not that everyone fell behind."""
    prefix = f"hub.{uuid.uuid4().hex}."
    ready = _event(f"{prefix}ready", a="ready", b="y1")
    cheap_filter = {"event": {"prefix": [prefix]}}
    costly_filter = {  # 2000 values, the most one filter may hold; none matches "zz"
        "resource": {
            "labels": {
                "a": ["ready", *(f"*x{i}*" for i in range(999))],
                "b": [f"*y{i}*" for i in range(1000)],
            }
        }
    }
    batches = [[_event(f"{prefix}x", a="zz", b="zz") for _ in range(BATCH)] for _ in range(BATCHES)]
    received: list[str] = []
    with _small_backlog_server(tmp_path) as server:
        out = f"{server.url.replace('http://', 'ws://', 1)}/events/out"
        async with httpx.AsyncClient(timeout=DEADLINE) as client:
            assert (await client.post(f"{server.url}/events", json=[ready])).status_code == 204
            async with (
                _subscribe(client, out, cheap_filter) as cheap,
                _subscribe(client, out, costly_filter) as costly,
            ):
                for ws in (cheap, costly):  # the backfilled marker proves each is subscribed
                    assert await _next_id(ws) == ready["id"]

                async def keep_reading() -> None:
                    for _ in range(BATCH * BATCHES):
                        received.append(await _next_id(cheap))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(keep_reading)
                    for batch in batches:
                        response = await client.post(f"{server.url}/events", json=batch)
                        assert response.status_code == 204, response.text
                close = await closed(costly)
            metrics = (await client.get(f"{server.url}/metrics")).text.splitlines()
    assert received == [event["id"] for batch in batches for event in batch]
    assert (close.code, close.reason) == (1008, FILTER_TOO_COSTLY.reason)
    assert "localevents_server_subscribers_too_costly_total 1.0" in metrics
    assert "localevents_server_subscribers_fell_behind_total 0.0" in metrics
    assert "too costly to match live" in server.output()
    assert "live stream overloaded" not in server.output()
