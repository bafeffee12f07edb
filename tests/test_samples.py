"""Sample data: generated events are reproducible, realistic and valid, and a sample file
opens with its views answering."""

from __future__ import annotations

import collections
import hashlib
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import msgspec
import pytest

from localevents import ConfigurationError, Event, get_settings
from localevents.events import generate_events, standard_event
from localevents.events._samples import FOLLOWS_WINDOW, SAMPLE_SPAN, SAMPLE_START
from localevents.samples import write_sample_database

if TYPE_CHECKING:
    from pathlib import Path

FAMILY_EVENTS = {
    "prefect.flow-run.Scheduled",
    "prefect.flow-run.Pending",
    "prefect.flow-run.Running",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.AwaitingRetry",
    "prefect.task-run.Running",
    "prefect.task-run.Completed",
    "shop.cart.created",
    "shop.checkout.started",
    "shop.order.paid",
    "prefect.worker.heartbeat",
    "prefect.deployment.updated",
    "prefect.deployment.not-ready",
    "prefect.deployment.ready",
}


@pytest.fixture(scope="module")
def month() -> list[Event]:
    """Four weeks of the default sample (seed 0)."""
    return list(generate_events(20_000))


DIGEST = (
    "import hashlib, msgspec\n"
    "from localevents.events import generate_events\n"
    "digest = hashlib.sha256()\n"
    "for event in generate_events(2000, seed=5):\n"
    "    digest.update(msgspec.json.encode(event))\n"
    "print(digest.hexdigest())\n"
)


def digest_in_subprocess(hash_seed: str) -> str:
    environ = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", DIGEST], capture_output=True, text=True, env=environ, check=True
    )
    return done.stdout.strip()


def test_the_same_arguments_give_the_same_events() -> None:
    """Same seed, same events byte for byte, ids included, in this process and in fresh
    ones with other hash seeds; another seed, other events."""
    first = [msgspec.json.encode(e) for e in generate_events(2000, seed=5)]
    assert first == [msgspec.json.encode(e) for e in generate_events(2000, seed=5)]
    expected = hashlib.sha256(b"".join(first)).hexdigest()
    assert digest_in_subprocess("1") == expected
    assert digest_in_subprocess("2") == expected
    ids = {e.id for e in generate_events(2000, seed=5)}
    assert not ids & {e.id for e in generate_events(2000, seed=6)}


def test_events_come_in_occurred_order_inside_the_window() -> None:
    """Exactly ``count`` events, ordered by occurred, all in [start, start + span)."""
    start = datetime(2026, 1, 5, 6, 30, tzinfo=UTC)
    span = timedelta(days=3, hours=5)
    events = list(generate_events(5000, seed=2, start=start, span=span))
    occurred = [e.occurred for e in events]
    assert len(events) == 5000
    assert occurred == sorted(occurred)
    assert start <= occurred[0]
    assert occurred[-1] < start + span
    assert len({e.id for e in events}) == 5000


@pytest.mark.parametrize(("count", "span"), [(1, timedelta(seconds=1)), (50, timedelta(hours=1))])
def test_small_counts_and_short_spans_still_fit(count: int, span: timedelta) -> None:
    """Tiny requests give exactly what was asked, inside the window."""
    events = list(generate_events(count, seed=9, span=span))
    assert len(events) == count
    assert all(SAMPLE_START <= e.occurred < SAMPLE_START + span for e in events)


def test_defaults_are_four_weeks_from_the_sample_start(month: list[Event]) -> None:
    """Without start and span, the events cover four weeks from 2024-04-01 UTC."""
    assert timedelta(0) <= month[0].occurred - SAMPLE_START < timedelta(hours=1)
    assert SAMPLE_START + SAMPLE_SPAN - month[-1].occurred < timedelta(hours=1)


def test_every_family_is_present_with_its_roles(month: list[Event]) -> None:
    """Flow and task runs, the shop funnel, heartbeats and deployments, with related
    resources in their roles."""
    assert {e.event for e in month} >= FAMILY_EVENTS
    roles = {r.role for e in month for r in e.related}
    expected = {"flow", "deployment", "work-pool", "tag", "flow-run", "customer", "channel", "cart"}
    assert roles >= expected


def test_the_shop_funnel_narrows(month: list[Event]) -> None:
    """Fewer checkouts than carts, fewer paid orders than checkouts, each a real share."""
    counts = collections.Counter(e.event for e in month)
    carts, checkouts, paid = (
        counts["shop.cart.created"],
        counts["shop.checkout.started"],
        counts["shop.order.paid"],
    )
    assert 0.4 * carts < checkouts < 0.8 * carts
    assert 0.6 * checkouts < paid < 0.95 * checkouts


def test_follows_point_at_an_earlier_event_at_most_five_minutes_older(
    month: list[Event],
) -> None:
    """Every follows names an event already generated, earlier and within the window."""
    seen: dict[object, datetime] = {}
    linked = 0
    for event in month:
        if event.follows is not None:
            assert event.follows in seen
            gap = event.occurred - seen[event.follows]
            assert timedelta(0) < gap <= FOLLOWS_WINDOW
            linked += 1
        seen[event.id] = event.occurred
    assert linked > len(month) // 4


def test_every_generated_event_passes_validation(month: list[Event]) -> None:
    """Each event survives a strict round trip through the protocol's rules and limits."""
    limit = get_settings().events_maximum_size_bytes
    for event in month[:5000]:
        data = msgspec.json.encode(event)
        assert msgspec.json.decode(data, type=Event) == event
        assert len(data) < limit


def test_time_has_a_rhythm_with_bursts(month: list[Event]) -> None:
    """Flows quieten at weekends, the shop at night, and some hours burst far above the norm."""
    flows_by_weekday = collections.Counter(
        e.occurred.weekday() >= 5 for e in month if e.event.startswith("prefect.flow-run.")
    )
    assert flows_by_weekday[True] / 2 < 0.7 * flows_by_weekday[False] / 5
    shop_hours = collections.Counter(e.occurred.hour for e in month if e.event.startswith("shop."))
    assert sum(shop_hours[h] for h in (19, 20, 21)) > 4 * sum(shop_hours[h] for h in (2, 3, 4))
    hourly = collections.Counter(
        e.occurred.replace(minute=0, second=0, microsecond=0) for e in month
    )
    assert max(hourly.values()) > 3 * statistics.median(hourly.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be zero or more"),
        ({"span": timedelta(0)}, "span must be positive"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    """A negative count or an empty span is a ConfigurationError naming it."""
    arguments: dict[str, object] = {"count": 10, **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        generate_events(**arguments)  # type: ignore[arg-type]


def test_standard_events_have_the_documented_shape() -> None:
    """Five labels, two related resources, a small payload; the same index gives the same
    event and every index its own id."""
    events = [standard_event(i) for i in range(3000)]
    assert all(len(e.resource) == 5 and len(e.related) == 2 for e in events)
    assert [e.event for e in events[:3]] == [
        "prefect.flow-run.Pending",
        "prefect.flow-run.Running",
        "prefect.flow-run.Completed",
    ]
    assert len({e.id for e in events}) == len(events)
    assert msgspec.json.encode(standard_event(7)) == msgspec.json.encode(standard_event(7))
    assert standard_event(7, seed=1).id != standard_event(7).id
    when = datetime(2026, 2, 1, tzinfo=UTC)
    assert standard_event(3, occurred=when).occurred == when
    sizes = [len(msgspec.json.encode(e)) for e in events]
    assert 600 < statistics.mean(sizes) < 1000


def test_a_sample_file_opens_and_its_views_answer(tmp_path: Path) -> None:
    """write_sample_database stores every generated event once, received shortly after it
    occurred; writing it again adds nothing; the views answer on the file."""
    path = tmp_path / "sample.duckdb"
    assert write_sample_database(path, 4000, seed=3) == 4000
    assert write_sample_database(path, 4000, seed=3) == 0
    expected = {str(e.id) for e in generate_events(4000, seed=3)}
    with duckdb.connect(str(path), read_only=True) as con:
        stored = {row[0] for row in con.execute("SELECT id::VARCHAR FROM events").fetchall()}
        lag = con.execute(
            "SELECT min(epoch_us(received) - epoch_us(occurred)), "
            "max(epoch_us(received) - epoch_us(occurred)) FROM events"
        ).fetchall()
        days = con.execute("SELECT count(*), sum(events) FROM events_by_day").fetchall()
        involved = con.execute("SELECT count(*) FROM events_resources").fetchall()[0][0]
        named = con.execute(
            "SELECT count(*) FROM events_flat WHERE resource_name IS NOT NULL"
        ).fetchall()[0][0]
    assert stored == expected
    assert 20_000 <= lag[0][0] <= lag[0][1] < 420_000
    assert days == [(28, 4000)]
    assert involved > 2 * 4000
    assert named > 4000 // 2


def test_a_sample_file_is_left_complete_so_reading_it_changes_nothing(tmp_path: Path) -> None:
    """The label-set tables cover every sample event when write_sample_database returns: a
    first query neither waits for them nor grows the file (100,000 events: 15 to 26 MB)."""
    path = tmp_path / "sample.duckdb"
    write_sample_database(path, 3000, seed=5)
    with duckdb.connect(str(path), read_only=True) as con:
        through = con.execute(
            "SELECT value FROM localevents_meta WHERE key = 'label_sets_through'"
        ).fetchall()
        counted = con.execute("SELECT sum(event_count) FROM resource_sets").fetchall()
    assert (through, counted) == ([("3000",)], [(3000,)])


def test_more_events_than_an_hour_of_the_span_can_hold_are_refused() -> None:
    """The generator holds an hour's events in memory (all of them for a span of an hour or
    less): a count past its bound is refused at once, naming it, not run out of memory."""
    with pytest.raises(ConfigurationError, match=r"at most 1,000,000 \(500,000 per hour"):
        generate_events(1_000_001, span=timedelta(hours=2))
    assert next(generate_events(1_000_000, span=timedelta(hours=2))) is not None
