"""Realistic synthetic events, seeded and reproducible (pure: no I/O).

Notebooks, tests and benchmarks share this generator. It plays four
families of *episodes* on one clock; an episode is a few related events:

- flow runs: ``prefect.flow-run.Scheduled -> Pending -> Running -> Completed`` (or
  ``Failed``, ``Crashed``, or a retry through ``AwaitingRetry``), with task runs inside, the
  flow, deployment, work pool and tags related in roles;
- a web shop funnel: ``shop.cart.created -> shop.checkout.started -> shop.order.paid``, with
  drop-off between steps, the customer and the sales channel related;
- worker heartbeats (``prefect.worker.heartbeat``), around the clock;
- deployment changes (``prefect.deployment.updated``; ``not-ready -> ready`` flaps).

Each family has its own rhythm (office hours and nightly batches for flows, evenings and
weekends for the shop, a flat line for workers) with day-to-day noise, plus bursts: incidents
(a flow-run storm with many failures and deployment flaps) and shop sales. Within an episode
an event names the one before it in ``follows`` when that one is at most five minutes older
(as Prefect does).

Determinism: everything is drawn from one ``random.Random(seed)`` in a fixed order, ids
included (UUIDv7 of the occurred millisecond plus seeded bits), so the same arguments give the
same events on the same version of localevents and Python.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from localevents._exceptions import ConfigurationError
from localevents._settings import get_settings
from localevents.events._sample_world import (
    ADJECTIVES,
    ANIMALS,
    FAMILIES,
    FLOWS,
    FOLLOWS_WINDOW,
    Families,
    Schedule,
    World,
    cumulative,
    named,
    pick,
    random_uuid4,
    related_resource,
    uuid7_at,
)
from localevents.events._schemas import Event, RelatedResource, Resource, checking_limits_of
from localevents.events._time import EPOCH, to_epoch_us

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents.events._sample_world import Fields

__all__ = (
    "FOLLOWS_WINDOW",
    "MOST_PER_HOUR",
    "SAMPLE_SPAN",
    "SAMPLE_START",
    "generate_events",
    "most_events",
    "standard_event",
)

SAMPLE_START = datetime(2024, 4, 1, tzinfo=UTC)
"""Where generated events start unless told otherwise (a Monday; fixed, so that the same seed
gives the same events whenever it runs)."""

SAMPLE_SPAN = timedelta(days=28)
"""How long generated events run by default: four weeks."""

_HOUR_US = 3600 * 1_000_000
MOST_PER_HOUR = 500_000
"""The most events :func:`generate_events` makes per hour of its span: it holds an hour's
events in memory (about 1.5 GB for a million), and the last hour's until the end."""
_ONE_US = timedelta(microseconds=1)
_BATCH = 256  # events built at a time

# -- pacing: episodes over time --------------------------------------------------------------


class _Hour(NamedTuple):
    """One hour of the span (the last may be shorter) and how to fill it."""

    start_us: int
    end_us: int
    target: float  # events scheduled by the end of this hour, cumulative
    families: tuple[float, ...]  # cumulative probability of each family, per episode
    size: float  # mean events per episode
    bursts: tuple[bool, ...]  # whether each family is in a burst


def _burst_hours(rng: random.Random, hours: int) -> dict[str | None, set[int]]:
    """Hours of incidents (about two a week, 1-3 h each) and of shop sales (about one in ten
    days, 2-4 h each)."""

    def windows(per_hour: float, shortest: int, longest: int) -> set[int]:
        expected = hours * per_hour
        count = int(expected) + (rng.random() < expected - int(expected))
        chosen: set[int] = set()
        for _ in range(count):
            first = rng.randrange(hours)
            chosen.update(range(first, min(hours, first + rng.randint(shortest, longest))))
        return chosen

    return {"incident": windows(2 / 168, 1, 3), "sale": windows(1 / 240, 2, 4), None: set()}


def _rates(
    rng: random.Random, bounds: list[tuple[int, int]]
) -> tuple[list[list[float]], list[tuple[bool, ...]]]:
    """Each hour's relative event rate per family (rhythm, bursts and some noise), and
    which families are in a burst."""
    bursting = _burst_hours(rng, len(bounds))
    rates, bursts = [], []
    for index, (first, _) in enumerate(bounds):
        hour = first // _HOUR_US % 24
        day = (first // (24 * _HOUR_US) + 3) % 7  # 1970-01-01 was a Thursday
        burst = tuple(index in bursting[family.bursts_in] for family in FAMILIES)
        rates.append(
            [
                family.hours[hour]
                * family.days[day]
                * (family.burst if in_burst else 1.0)
                * math.exp(rng.gauss(0.0, 0.15))
                for family, in_burst in zip(FAMILIES, burst, strict=True)
            ]
        )
        bursts.append(burst)
    return rates, bursts


def _hours(rng: random.Random, count: int, start_us: int, end_us: int) -> list[_Hour]:
    """The span in hours, each with its share of ``count`` and its mix of families."""
    bounds = [(us, min(us + _HOUR_US, end_us)) for us in range(start_us, end_us, _HOUR_US)]
    rates, bursts = _rates(rng, bounds)
    lengths = [last - first for first, last in bounds]
    totals = [  # each family's rate summed over the span, to spread its share of events
        sum(rate[f] * length for rate, length in zip(rates, lengths, strict=True))
        for f in range(len(FAMILIES))
    ]
    hours = []
    target = 0.0
    for index, (first, last) in enumerate(bounds):
        shares = [  # this hour's events of each family, as a fraction of all events
            family.share * rates[index][f] * lengths[index] / totals[f]
            for f, family in enumerate(FAMILIES)
        ]
        episodes = [share / family.size for share, family in zip(shares, FAMILIES, strict=True)]
        target += count * sum(shares)
        mix = tuple(cumulative(episodes))
        hours.append(_Hour(first, last, target, mix, sum(shares) / sum(episodes), bursts[index]))
    return hours


def _play(rng: random.Random, hour: _Hour, families: Families, us: int) -> None:
    f = pick(rng, hour.families)
    FAMILIES[f].play(families, us, hour.bursts[f])


def _episodes(rng: random.Random, families: Families, count: int, start_us: int) -> Iterator[int]:
    """Start episodes hour by hour, paced so that the events scheduled by the end of each
    hour track its cumulative target.

    Yields, after each episode, an instant before which no episode still to come has events
    (so everything scheduled before it can be handed out). The last hour also makes up for
    the events that fell past the end (runs still going when the window closes) with more
    episodes anywhere in that hour, so nothing piles up at the very end.
    """
    schedule = families.schedule
    hours = _hours(rng, count, start_us, schedule.end_us)
    last = hours[-1]
    for hour in hours:
        missing = hour.target - schedule.scheduled
        if missing <= 0:
            continue
        per_us = missing / hour.size / (hour.end_us - hour.start_us)
        us = hour.start_us + rng.expovariate(per_us)
        while us < hour.end_us and schedule.scheduled < count:
            _play(rng, hour, families, int(us))
            yield last.start_us if hour is last else int(us)
            us += rng.expovariate(per_us)
    while schedule.scheduled < count:
        _play(rng, last, families, rng.randrange(last.start_us, last.end_us))
        yield last.start_us


# -- building events ------------------------------------------------------------------------


def _build(due: list[tuple[int, int, Fields]]) -> list[Event]:
    """Events from scheduled fields, checked against every rule of the protocol.

    Their label values are strings by construction, so the per-label type check is skipped
    as it is for decoded events (a third of the cost of building one).
    """
    with checking_limits_of(get_settings(), decoding=True):
        return [
            Event(
                occurred=EPOCH + timedelta(microseconds=us),
                event=name,
                resource=resource,  # checked and adopted by Event
                related=related,  # adopted as RelatedResources
                payload=payload,
                id=event_id,
                follows=follows,
            )
            for us, _, (name, resource, related, payload, event_id, follows) in due
        ]


# -- the public functions -------------------------------------------------------------------


def generate_events(
    count: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    span: timedelta = SAMPLE_SPAN,
) -> Iterator[Event]:
    """``count`` realistic events over ``[start, start + span)``, in occurred order.

    The same arguments give the same events, ids included. ``start`` defaults to
    :data:`SAMPLE_START` (a naive datetime is read as UTC). See the module docstring for
    the families, rhythms and bursts. Lazy: events are made as they are consumed. Events
    share the objects of resources that recur (flows, customers, ...): treat them as
    read-only.
    """
    if count < 0:
        raise ConfigurationError(f"count must be zero or more, got {count}")
    if span <= timedelta(0):
        raise ConfigurationError(f"span must be positive, got {span}")
    if count > (most := most_events(span)):
        raise ConfigurationError(
            f"{count:,} events over {span} are more than the generator makes: at most "
            f"{most:,} ({MOST_PER_HOUR:,} per hour of the span, which it holds in memory); "
            "give a longer span or fewer events"
        )
    start_us = to_epoch_us(SAMPLE_START if start is None else start)
    return _generate(count, seed, start_us, start_us + span // _ONE_US)


def most_events(span: timedelta) -> int:
    """The most events :func:`generate_events` makes over ``span`` (an hour at least)."""
    return int(MOST_PER_HOUR * max(1.0, span / timedelta(hours=1)))


def _generate(count: int, seed: int, start_us: int, end_us: int) -> Iterator[Event]:
    if count == 0:
        return
    rng = random.Random(seed)
    world = World(rng)
    schedule = Schedule(rng, end_us)
    families = Families(rng, world, schedule)
    heap = schedule.heap
    pop = heapq.heappop
    due: list[tuple[int, int, Fields]] = []
    for begun in _episodes(rng, families, count, start_us):
        while heap and heap[0][0] < begun:  # no episode to come can start before these
            due.append(pop(heap))
        if len(due) >= _BATCH:
            yield from _build(due)
            count -= len(due)
            due.clear()
    while heap and len(due) < count:
        due.append(pop(heap))
    yield from _build(due[:count])


_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64: 64 well-mixed bits from an integer (cheap, stateless randomness)."""
    value = (value + 0x9E37_79B9_7F4A_7C15) & _MASK64
    value = ((value ^ value >> 30) * 0xBF58_476D_1CE4_E5B9) & _MASK64
    value = ((value ^ value >> 27) * 0x94D0_49BB_1331_11EB) & _MASK64
    return value ^ value >> 31


@functools.lru_cache(maxsize=8)
def _standard_world(seed: int) -> tuple[list[tuple[str, str]], list[list[RelatedResource]]]:
    rng = random.Random(seed)
    runs = [
        (f"prefect.flow-run.{random_uuid4(rng)}", f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}")
        for _ in range(1000)
    ]
    related = []
    for flow_name, _ in FLOWS[:10]:
        flow_id, deployment_id = random_uuid4(rng), random_uuid4(rng)
        related.append(
            [
                related_resource(f"prefect.flow.{flow_id}", "flow", named(flow_name)),
                related_resource(
                    f"prefect.deployment.{deployment_id}", "deployment", named(f"{flow_name}/prod")
                ),
            ]
        )
    return runs, related


_STANDARD_STATES = (("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed"))


def standard_event(index: int = 0, *, occurred: datetime | None = None, seed: int = 0) -> Event:
    """The ``index``-th *standard event*: the typical event benchmarks measure.

    A flow-run state change (``prefect.flow-run.Pending``, ``Running`` or ``Completed`` in
    turn) of one of 1000 flow runs: five resource labels (id, name, state name, state type,
    run count), two related resources (the flow and the deployment, each with id, role and
    name), and a payload of two small objects; about 800 bytes of JSON. ``occurred``
    defaults to :data:`SAMPLE_START` plus ``index`` milliseconds. The same ``index`` and
    ``seed`` give the same event (and id); different indexes give different ids.
    """
    runs, related = _standard_world(seed)
    bits = _mix(seed << 40 ^ index)
    run_id, name = runs[bits % len(runs)]
    previous = _STANDARD_STATES[index % 3 - 1][0] if index % 3 else "SCHEDULED"
    kind, state = _STANDARD_STATES[index % 3]
    when = SAMPLE_START + timedelta(milliseconds=index) if occurred is None else occurred
    return Event(
        occurred=when,
        event=f"prefect.flow-run.{state}",
        resource=Resource(
            {
                "prefect.resource.id": run_id,
                "prefect.resource.name": name,
                "prefect.state-name": state,
                "prefect.state-type": kind,
                "prefect.run-count": "1",
            }
        ),
        related=related[bits % len(related)],
        payload={
            "intended": {"from": previous, "to": kind},
            "validated_state": {"type": kind, "name": state},
        },
        id=uuid7_at(to_epoch_us(when) // 1000, bits << 16 ^ _mix(bits)),
    )
