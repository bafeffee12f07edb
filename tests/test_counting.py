"""Count-by: time buckets, day, event and resource counts (SPEC B §3.6 as amended by A.2 D11)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from localevents._exceptions import InvalidRequestError, TooManyBuckets
from localevents.events._counting import Countable, EventCount, TimeUnit, plan_buckets
from localevents.events._filters import EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.events._time import now_utc, uuid7
from localevents.storage import count_events
from localevents.storage._counts import count_events_json

if TYPE_CHECKING:
    from localevents.storage import EventStore

US = timedelta(microseconds=1)


def at(text: str) -> datetime:
    """An instant written as ISO 8601 (``Z`` allowed)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def event(
    occurred: str | datetime, name: str = "acme.widget.made", resource: dict[str, str] | None = None
) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=at(occurred) if isinstance(occurred, str) else occurred,
        event=name,
        resource=resource or {"prefect.resource.id": "acme.widget.1"},  # type: ignore[arg-type]
        id=uuid7(),
    )


def make_filter(since: str, until: str, **body: Any) -> EventFilter:
    body = {"occurred": {"since": since, "until": until}, **body}
    return msgspec.json.decode(msgspec.json.encode(body), type=EventFilter)


REACHES = ["none", "half", "all", "inexact"]


def write(store: EventStore, events: list[ReceivedEvent], reach: str) -> None:
    """Store ``events`` with the label set tables (see ``storage._label_sets``) covering
    none of them, the first half, all; or marked inexact, as after a hash collision. A
    count by resource groups the covered events by label set, the others one by one."""
    middle = len(events) // 2 if reach == "half" else len(events)
    store.write_events(events[:middle])
    if reach in ("half", "all"):
        store.label_sets.catch_up(store.cursor(), after=0)
    store.write_events(events[middle:])
    if reach == "inexact":
        store.label_sets.exact = False


def row(value: int | str, label: str, count: int, start: str, end: str) -> EventCount:
    return EventCount(
        value=str(value), label=label, count=count, start_time=at(start), end_time=at(end)
    )


def bucket(index: int, start: str, count: int, width: timedelta) -> EventCount:
    """A time-bucket row: value = position, label = start in ``+00:00`` form."""
    begin = at(start)
    return EventCount(
        value=str(index),
        label=begin.isoformat(),
        count=count,
        start_time=begin,
        end_time=begin + width - US,
    )


# -- the worked examples of §3.6 -----------------------------------------------------------

W1 = {"prefect.resource.id": "acme.widget.1", "prefect.resource.name": "Widget 1"}
W2 = {"prefect.resource.id": "acme.widget.2"}


@pytest.fixture(params=REACHES)
def example(store: EventStore, request: pytest.FixtureRequest) -> EventStore:
    """The three events of the §3.6 example, plus events the example's filter leaves out."""
    write(
        store,
        [
            event("2026-11-22T02:16:30.106011Z", resource=W1),
            event("2026-11-22T02:16:40.106011Z", resource=W2),
            event("2026-11-22T02:16:50.106011Z", resource=W1),
            event("2026-11-22T02:16:45Z", name="other.thing", resource=W1),  # other prefix
            event("2026-11-22T02:14:29.999999Z", resource=W1),  # before since
            event("2026-11-22T02:17:01.000001Z", resource=W1),  # after until
        ],
        request.param,
    )
    return store


EXAMPLE_FILTER = {
    "since": "2026-11-22T02:14:30Z",
    "until": "2026-11-22T02:17:01Z",
    "event": {"prefix": ["acme."]},
}


def test_time_count_matches_the_spec_example(example: EventStore) -> None:
    """The §3.6 minute count answers exactly its four gap-filled rows."""
    rows = count_events(
        example, make_filter(**EXAMPLE_FILTER), Countable.time, TimeUnit.minute, 1.0
    )
    assert rows == [
        row(
            0, "2026-11-22T02:14:00+00:00", 0, "2026-11-22T02:14:00Z", "2026-11-22T02:14:59.999999Z"
        ),
        row(
            1, "2026-11-22T02:15:00+00:00", 0, "2026-11-22T02:15:00Z", "2026-11-22T02:15:59.999999Z"
        ),
        row(
            2, "2026-11-22T02:16:00+00:00", 3, "2026-11-22T02:16:00Z", "2026-11-22T02:16:59.999999Z"
        ),
        row(
            3, "2026-11-22T02:17:00+00:00", 0, "2026-11-22T02:17:00Z", "2026-11-22T02:17:59.999999Z"
        ),
    ]
    assert msgspec.json.encode(rows[0]) == (
        b'{"value":"0","label":"2026-11-22T02:14:00+00:00","count":0,'
        b'"start_time":"2026-11-22T02:14:00Z","end_time":"2026-11-22T02:14:59.999999Z"}'
    )


def test_resource_count_matches_the_spec_example(example: EventStore) -> None:
    """The §3.6 resource count labels by name, falling back to the id."""
    rows = count_events(example, make_filter(**EXAMPLE_FILTER), Countable.resource)
    assert rows == [
        row("acme.widget.1", "Widget 1", 2,
            "2026-11-22T02:16:30.106011Z", "2026-11-22T02:16:50.106011Z"),
        row("acme.widget.2", "acme.widget.2", 1,
            "2026-11-22T02:16:40.106011Z", "2026-11-22T02:16:40.106011Z"),
    ]  # fmt: skip


@pytest.mark.parametrize("reach", REACHES)
def test_resource_labels_come_from_the_latest_event(store: EventStore, reach: str) -> None:
    """The label is the latest event's name, else its legacy name, else the id."""
    renamed = "acme.pump.1"
    write(
        store,
        [  # written newest first: the label follows occurred, not insertion order
            event("2026-01-01T00:03:00Z", resource={"prefect.resource.id": renamed,
                                                    "prefect.resource.name": "Pump"}),
            event("2026-01-01T00:01:00Z", resource={"prefect.resource.id": renamed,
                                                    "prefect.resource.name": "Pump (old)"}),
            event("2026-01-01T00:02:00Z", resource={"prefect.resource.id": renamed,
                                                    "prefect.resource.name": "Pump (older)"}),
            event("2026-01-01T00:01:00Z", resource={"prefect.resource.id": "acme.legacy",
                                                    "prefect.name": "Legacy"}),
            event("2026-01-01T00:01:00Z", resource={"prefect.resource.id": "acme.both",
                                                    "prefect.resource.name": "Both",
                                                    "prefect.name": "not this"}),
            event("2026-01-01T00:01:00Z", resource={"prefect.resource.id": "acme.unnamed",
                                                    "prefect.resource.name": "Was named"}),
            event("2026-01-01T00:02:00Z", resource={"prefect.resource.id": "acme.unnamed"}),
        ],
        reach,
    )  # fmt: skip
    since, until = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
    rows = count_events(store, make_filter(since, until), Countable.resource)
    assert [(r.value, r.label, r.count) for r in rows] == [
        (renamed, "Pump", 3),
        ("acme.unnamed", "acme.unnamed", 2),
        ("acme.both", "Both", 1),
        ("acme.legacy", "Legacy", 1),
    ]
    assert rows[0].start_time == at("2026-01-01T00:01:00Z")
    assert rows[0].end_time == at("2026-01-01T00:03:00Z")


@pytest.mark.parametrize("reach", REACHES)
def test_resources_with_equal_count_and_name_are_ordered_by_id(
    store: EventStore, reach: str
) -> None:
    """Ties on count and label fall back to the resource id, so the order is stable."""
    ids = ["acme.pump.3", "acme.pump.1", "acme.pump.2"]
    write(
        store,
        [
            event("2026-01-01T00:01:00Z", resource={"prefect.resource.id": rid,
                                                    "prefect.resource.name": "Pump"})
            for rid in ids
        ],
        reach,
    )  # fmt: skip
    since, until = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
    rows = count_events(store, make_filter(since, until), Countable.resource)
    assert [(r.value, r.label) for r in rows] == [(rid, "Pump") for rid in sorted(ids)]


@pytest.mark.parametrize("reach", REACHES)
@pytest.mark.parametrize("by_name", [False, True], ids=["any event", "by event name"])
def test_a_resource_renamed_within_one_instant_gets_the_greatest_name(
    store: EventStore, reach: str, by_name: bool
) -> None:
    """When several names of a resource share its latest instant, the label is the
    greatest of them, whichever order they were stored in and whichever way the count is
    made (label sets, events one by one, or both): the same answer every time."""
    names = [f"Pump {n:02d}" for n in range(24)]
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    latest = "2026-01-01T00:05:00Z"
    write(
        store,
        [
            event("2026-01-01T00:07:00Z" if name == "Pump 03" else latest,
                  resource={"prefect.resource.id": "acme.other", "prefect.resource.name": name})
            for name in shuffled[:12]
        ] + [
            event(latest, resource={"prefect.resource.id": "acme.pump",
                                    "prefect.resource.name": name})
            for name in shuffled
        ],
        reach,
    )  # fmt: skip
    body = {"event": {"prefix": ["acme."]}} if by_name else {}
    window = make_filter("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", **body)
    for _ in range(3):
        rows = count_events(store, window, Countable.resource)
        assert [(r.value, r.label, r.count) for r in rows] == [
            ("acme.pump", "Pump 23", 24),
            ("acme.other", "Pump 03" if "Pump 03" in shuffled[:12] else max(shuffled[:12]), 12),
        ]


ODD = ['quote " and \\ back', "line\nbreak\ttab", "bell\x07", "ünïcødé ✓ 😀", "</script>"]


@pytest.mark.parametrize("reach", REACHES)
@pytest.mark.parametrize("countable", [Countable.event, Countable.resource])
def test_counts_by_name_and_resource_are_json_as_the_sdk_writes_it(
    store: EventStore, countable: Countable, reach: str
) -> None:
    """Names and ids with quotes, backslashes, control characters and non-ASCII text come
    back intact, and the answer is byte for byte what encoding the same EventCount rows
    gives (``Z`` instants, six fraction digits or none)."""
    times = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:01.000001Z"]
    events = [
        event(times[i % 3], f"acme.{text}", {"prefect.resource.id": f"acme.{text}",
                                            "prefect.resource.name": text})
        for i, text in enumerate(ODD)
        for _ in range(i + 1)
    ]  # fmt: skip
    write(store, events, reach)
    body = count_events_json(
        store, make_filter("2025-12-31T00:00:00Z", "2026-01-02T00:00:00Z"), countable
    )
    rows = msgspec.json.decode(body, type=list[EventCount])
    values = [f"acme.{text}" for text in reversed(ODD)]
    assert [r.value for r in rows] == values
    assert [r.label for r in rows] == (
        list(reversed(ODD)) if countable is Countable.resource else values
    )
    assert [r.count for r in rows] == [5, 4, 3, 2, 1]
    assert msgspec.json.encode(rows) == body
    assert {r.start_time for r in rows} == {at(t) for t in times}


def test_event_count_orders_by_count_then_name(store: EventStore) -> None:
    """Event counts come by count descending, ties by name, with first and last occurrence."""
    store.write_events(
        [
            event("2026-01-01T00:05:00Z", "c.evt"),
            event("2026-01-01T00:01:00Z", "b.evt"),
            event("2026-01-01T00:09:00Z", "d.evt"),
            event("2026-01-01T00:02:00Z", "a.evt"),
            event("2026-01-01T00:07:00Z", "b.evt"),
            event("2026-01-01T00:03:00Z", "c.evt"),
            event("2026-01-01T00:04:00Z", "b.evt"),
            event("2026-01-01T00:08:00Z", "a.evt"),
        ]
    )
    rows = count_events(
        store, make_filter("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"), Countable.event
    )
    assert rows == [
        row("b.evt", "b.evt", 3, "2026-01-01T00:01:00Z", "2026-01-01T00:07:00Z"),
        row("a.evt", "a.evt", 2, "2026-01-01T00:02:00Z", "2026-01-01T00:08:00Z"),
        row("c.evt", "c.evt", 2, "2026-01-01T00:03:00Z", "2026-01-01T00:05:00Z"),
        row("d.evt", "d.evt", 1, "2026-01-01T00:09:00Z", "2026-01-01T00:09:00Z"),
    ]


@pytest.mark.parametrize("countable", [Countable.event, Countable.resource])
def test_event_and_resource_counts_have_no_bucket_limit(
    store: EventStore, countable: Countable
) -> None:
    """The 1000-bucket limit applies to time and day only (D11)."""
    store.write_events([event("2020-06-01T00:00:00Z")])
    event_filter = make_filter("2020-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
    rows = count_events(store, event_filter, countable, TimeUnit.second, 0.01)
    assert [r.count for r in rows] == [1]


# -- time and day buckets ------------------------------------------------------------------

DAY = timedelta(days=1)


def test_day_count_always_uses_one_day_buckets(store: EventStore) -> None:
    """count-by day ignores time_unit and time_interval: buckets are whole UTC days (D11)."""
    store.write_events(
        [
            event("2026-03-01T00:00:00Z"),
            event("2026-03-01T23:59:59.999999Z"),
            event("2026-03-03T12:00:00Z"),
        ]
    )
    event_filter = make_filter("2026-03-01T00:00:00Z", "2026-03-03T18:00:00Z")
    expected = [
        bucket(0, "2026-03-01T00:00:00Z", 2, DAY),
        bucket(1, "2026-03-02T00:00:00Z", 0, DAY),
        bucket(2, "2026-03-03T00:00:00Z", 1, DAY),
    ]
    for unit, interval in [(TimeUnit.day, 1.0), (TimeUnit.hour, 1.0), (TimeUnit.minute, 7.5)]:
        assert count_events(store, event_filter, Countable.day, unit, interval) == expected


def test_day_buckets_are_utc_whatever_the_session_time_zone(store: EventStore) -> None:
    """Buckets are computed in UTC even when the database session uses another time zone."""
    store.write_events([event("2026-03-01T23:30:00Z"), event("2026-03-02T00:30:00Z")])
    store.cursor().execute("SET TimeZone = 'America/New_York'")
    event_filter = make_filter("2026-03-01T00:00:00Z", "2026-03-02T12:00:00Z")
    assert count_events(store, event_filter, Countable.day) == [
        bucket(0, "2026-03-01T00:00:00Z", 1, DAY),
        bucket(1, "2026-03-02T00:00:00Z", 1, DAY),
    ]


def test_week_buckets_start_on_mondays(store: EventStore) -> None:
    """Week buckets are anchored at Monday 2024-04-01, whatever day the range starts on."""
    store.write_events(
        [
            event("2026-11-02T00:00:00Z"),  # Monday, before since
            event("2026-11-04T10:00:00Z"),  # Wednesday
            event("2026-11-08T23:59:59.999999Z"),  # Sunday
            event("2026-11-09T00:00:00Z"),  # Monday
        ]
    )
    event_filter = make_filter("2026-11-04T00:00:00Z", "2026-11-10T00:00:00Z")
    rows = count_events(store, event_filter, Countable.time, TimeUnit.week, 1.0)
    assert rows == [
        bucket(0, "2026-11-02T00:00:00Z", 2, 7 * DAY),
        bucket(1, "2026-11-09T00:00:00Z", 1, 7 * DAY),
    ]


def test_buckets_before_the_anchor_are_floored(store: EventStore) -> None:
    """Instants before 2024-04-01 fall in the bucket that starts at or before them."""
    store.write_events(
        [
            event("2023-12-28T12:00:00Z"),
            event("2024-01-02T00:00:00Z"),
            event("2024-01-09T23:00:00Z"),
        ]
    )
    event_filter = make_filter("2023-12-27T12:00:00Z", "2024-01-10T00:00:00Z")
    rows = count_events(store, event_filter, Countable.time, TimeUnit.week, 1.0)
    assert rows == [
        bucket(0, "2023-12-25T00:00:00Z", 1, 7 * DAY),
        bucket(1, "2024-01-01T00:00:00Z", 1, 7 * DAY),
        bucket(2, "2024-01-08T00:00:00Z", 1, 7 * DAY),
    ]


def test_multi_hour_buckets_before_the_anchor(store: EventStore) -> None:
    """Five-hour buckets in 2023 line up with the anchor (floor, not truncation toward it)."""
    # 2023-06-01T00:00Z is 7320 hours before the anchor: 1464 whole 5-hour buckets.
    store.write_events([event("2023-06-01T04:59:59.999999Z"), event("2023-06-01T05:00:00Z")])
    event_filter = make_filter("2023-06-01T03:00:00Z", "2023-06-01T06:00:00Z")
    rows = count_events(store, event_filter, Countable.time, TimeUnit.hour, 5.0)
    assert rows == [
        bucket(0, "2023-06-01T00:00:00Z", 1, 5 * timedelta(hours=1)),
        bucket(1, "2023-06-01T05:00:00Z", 1, 5 * timedelta(hours=1)),
    ]


def test_half_second_buckets(store: EventStore) -> None:
    """Sub-second intervals bucket by the microsecond; labels show the fraction."""
    store.write_events(
        [
            event("2026-01-01T00:00:00.200000Z"),
            event("2026-01-01T00:00:00.500000Z"),
            event("2026-01-01T00:00:00.999999Z"),
            event("2026-01-01T00:00:01.999999Z"),
        ]
    )
    event_filter = make_filter("2026-01-01T00:00:00.100000Z", "2026-01-01T00:00:02.400000Z")
    rows = count_events(store, event_filter, Countable.time, TimeUnit.second, 0.5)
    half = timedelta(milliseconds=500)
    assert rows == [
        bucket(0, "2026-01-01T00:00:00Z", 1, half),
        bucket(1, "2026-01-01T00:00:00.500000Z", 2, half),
        bucket(2, "2026-01-01T00:00:01Z", 0, half),
        bucket(3, "2026-01-01T00:00:01.500000Z", 1, half),
        bucket(4, "2026-01-01T00:00:02Z", 0, half),
    ]
    assert rows[1].label == "2026-01-01T00:00:00.500000+00:00"


def test_an_event_at_until_is_counted(store: EventStore) -> None:
    """until is inclusive: an event exactly at until is counted, in the bucket starting there."""
    store.write_events([event("2026-01-01T00:02:00Z")])
    event_filter = make_filter("2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z")
    rows = count_events(store, event_filter, Countable.time, TimeUnit.minute, 1.0)
    assert [(r.label, r.count) for r in rows] == [
        ("2026-01-01T00:00:00+00:00", 0),
        ("2026-01-01T00:01:00+00:00", 0),
        ("2026-01-01T00:02:00+00:00", 1),
    ]


def test_a_future_until_ends_with_the_current_period(store: EventStore) -> None:
    """With until in the future, the buckets end with today's when no event is stamped
    later."""
    before = now_utc()
    store.write_events([event(before), event(before - DAY)])
    since = (before - 2 * DAY).isoformat()
    event_filter = make_filter(since, (before + 5 * DAY).isoformat())
    rows = count_events(store, event_filter, Countable.time, TimeUnit.day, 1.0)
    after = now_utc()
    assert len(rows) == 3
    assert rows[-1].start_time <= after
    assert rows[-1].end_time >= before
    assert rows[-1].start_time.time() == datetime.min.time()
    assert [r.count for r in rows] == [0, 1, 1]


@pytest.mark.parametrize("countable", [Countable.time, Countable.day])
def test_events_stamped_after_now_are_counted_in_buckets_of_their_own(
    store: EventStore, countable: Countable
) -> None:
    """Events the filter takes that are stamped after the current period (a producer's clock
    ahead, or planned events) get their buckets, gap-filled up to them: they were left out
    without a word, so the buckets summed to less than the filter's total."""
    before = now_utc()
    store.write_events([event(before), event(before + 3 * DAY), event(before + 3 * DAY)])
    event_filter = make_filter((before - DAY).isoformat(), (before + 5 * DAY).isoformat())
    rows = count_events(store, event_filter, countable, TimeUnit.day, 1.0)
    assert [r.count for r in rows] == [0, 1, 0, 0, 2]
    assert rows[-1].start_time <= before + 3 * DAY <= rows[-1].end_time
    assert [r.value for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(a.end_time + US == b.start_time for a, b in itertools.pairwise(rows))


def test_the_time_count_refuses_too_many_buckets(store: EventStore) -> None:
    """A time count over more than 1000 buckets raises TooManyBuckets."""
    event_filter = make_filter("2026-01-01T00:00:00Z", "2026-01-01T16:41:00Z")  # 1001 minutes
    with pytest.raises(TooManyBuckets, match="would create 1001 buckets"):
        count_events(store, event_filter, Countable.time, TimeUnit.minute, 1.0)


def test_the_day_count_refuses_too_many_days(store: EventStore) -> None:
    """A day count over more than 1000 days raises TooManyBuckets, whatever time_unit says."""
    event_filter = make_filter("2020-01-01T00:00:00Z", "2023-01-01T00:00:00Z")  # 1096 days
    with pytest.raises(TooManyBuckets, match="would create 1096 buckets"):
        count_events(store, event_filter, Countable.day, TimeUnit.week, 1.0)


# -- plan_buckets (no database) ------------------------------------------------------------

NOW = at("2026-11-22T03:00:00Z")


def test_plan_lays_out_the_spec_example() -> None:
    """The §3.6 range at one minute per bucket is four buckets from 02:14."""
    plan = plan_buckets(
        at("2026-11-22T02:14:30Z"), at("2026-11-22T02:17:01Z"), TimeUnit.minute, 1.0, NOW
    )
    rows = plan.rows({2: 3})
    assert [(r.value, r.label, r.count) for r in rows] == [
        ("0", "2026-11-22T02:14:00+00:00", 0),
        ("1", "2026-11-22T02:15:00+00:00", 0),
        ("2", "2026-11-22T02:16:00+00:00", 3),
        ("3", "2026-11-22T02:17:00+00:00", 0),
    ]


def test_plan_refuses_more_than_1000_buckets_naming_the_number() -> None:
    """More than 1000 buckets raises TooManyBuckets with the number in the message."""
    since = at("2026-01-01T00:00:00Z")
    with pytest.raises(TooManyBuckets) as caught:
        plan_buckets(since, since + timedelta(hours=1001), TimeUnit.hour, 1.0, NOW)
    assert str(caught.value) == (
        "The given interval would create 1001 buckets, which is too many. Please increase "
        "the interval or reduce the time range to produce 1000 buckets or fewer."
    )
    with pytest.raises(TooManyBuckets, match="would create 1001 buckets"):
        plan_buckets(
            since, since + timedelta(seconds=1000, microseconds=1), TimeUnit.second, 1.0, NOW
        )
    with pytest.raises(TooManyBuckets, match="would create 2000 buckets"):
        plan_buckets(since, since + timedelta(seconds=20), TimeUnit.second, 0.01, NOW)


def test_plan_accepts_exactly_1000_buckets() -> None:
    """A range of exactly 1000 buckets is accepted."""
    since = at("2026-01-01T00:00:00Z")
    plan = plan_buckets(since, since + timedelta(hours=1000), TimeUnit.hour, 1.0, NOW)
    assert plan.first_start_us == int(since.timestamp()) * 1_000_000
    plan = plan_buckets(since, since + timedelta(seconds=10), TimeUnit.second, 0.01, NOW)
    assert plan.width_us == 10_000


@pytest.mark.parametrize("interval", [0.009, 0.0, -1.0])
def test_plan_refuses_an_interval_below_the_minimum(interval: float) -> None:
    """An interval under 0.01 raises InvalidRequestError naming the minimum."""
    since = at("2026-01-01T00:00:00Z")
    with pytest.raises(InvalidRequestError, match=r"The minimum interval is 0\.01"):
        plan_buckets(since, since + DAY, TimeUnit.day, interval, NOW)


def test_plan_refuses_since_after_until() -> None:
    """A range that ends before it starts is a request error naming both ends; without an
    until, the one that ends it is now, and the error says so."""
    since = at("2026-01-01T00:00:00Z")
    with pytest.raises(InvalidRequestError, match=r"is after occurred\.until \(2025-12-31T23"):
        plan_buckets(since, since - US, TimeUnit.day, 1.0, NOW)
    ahead = NOW + DAY
    with pytest.raises(InvalidRequestError, match=r"occurred\.until is not given, so the range"):
        plan_buckets(ahead, None, TimeUnit.day, 1.0, NOW)
    assert plan_buckets(NOW - DAY, None, TimeUnit.day, 1.0, NOW).count == 2


@pytest.mark.parametrize(
    ("unit", "until", "last_start"),
    [
        (TimeUnit.day, "2026-11-27T00:00:00Z", "2026-11-22T00:00:00Z"),
        (TimeUnit.hour, "2026-11-22T09:30:00Z", "2026-11-22T03:00:00Z"),
        (TimeUnit.week, "2026-12-20T00:00:00Z", "2026-11-16T00:00:00Z"),
    ],
)
def test_plan_clips_a_future_until_at_the_current_period(
    unit: TimeUnit, until: str, last_start: str
) -> None:
    """With until after now, the last bucket is the one of the current period of the unit."""
    since = at("2026-11-10T00:00:00Z")
    plan = plan_buckets(since, at(until), unit, 1.0, NOW)
    assert plan.rows({})[-1].start_time == at(last_start)


def test_plan_keeps_a_past_until() -> None:
    """With until before now, buckets run through the one that holds until."""
    plan = plan_buckets(
        at("2026-11-01T00:00:00Z"), at("2026-11-03T12:00:00Z"), TimeUnit.day, 1.0, NOW
    )
    assert [r.start_time for r in plan.rows({})] == [
        at("2026-11-01T00:00:00Z"),
        at("2026-11-02T00:00:00Z"),
        at("2026-11-03T00:00:00Z"),
    ]


def test_plan_buckets_do_not_depend_on_the_range() -> None:
    """A bucket's bounds depend only on the anchor and the width, not on since."""
    first = plan_buckets(
        at("2026-11-20T07:00:00Z"), at("2026-11-21T00:00:00Z"), TimeUnit.hour, 6.0, NOW
    )
    second = plan_buckets(
        at("2026-11-20T11:59:59Z"), at("2026-11-21T00:00:00Z"), TimeUnit.hour, 6.0, NOW
    )
    assert first.rows({})[0].start_time == at("2026-11-20T06:00:00Z")
    assert second.rows({})[0].start_time == at("2026-11-20T06:00:00Z")


@pytest.mark.parametrize(
    ("kind", "value", "choices"),
    [
        (Countable, "weekly", "day, time, event, resource"),
        (TimeUnit, "fortnight", "week, day, hour, minute, second"),
    ],
)
def test_an_unknown_countable_or_unit_names_the_known_ones(
    kind: type[Countable | TimeUnit], value: str, choices: str
) -> None:
    """``client.count_events("weekly")`` tells the caller what would have worked."""
    with pytest.raises(
        ValueError, match=f"'{value}' is not a {kind.__name__}: use one of {choices}"
    ):
        kind(value)
