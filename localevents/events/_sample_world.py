"""The world of the sample generator: its resources, and the families of episodes that
happen to them (pure: no I/O).

An *episode* is a few related events: a flow run's state changes (with its task runs), a
visit to the shop, a worker heartbeat, a deployment change. :class:`Families` plays one
episode at a time onto a :class:`Schedule`, which keeps events in occurred order until they
are handed out; :data:`FAMILIES` says how often each family happens, hour by hour. Within an
episode an event names the one before it in ``follows`` when that one is at most
:data:`FOLLOWS_WINDOW` older, as Prefect does. See ``_samples`` for the pacing over time.

Over 500 lines because most of it is data (names, rhythms) and one method per family; the
pieces only make sense together.
"""

from __future__ import annotations

import heapq
import math
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from localevents.events._schemas import RelatedResource, Resource

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator, Sequence

    # An event not built yet: name, resource, related, payload, id, follows.
    Fields = tuple[
        str, dict[str, str], Sequence[dict[str, str]], dict[str, Any], uuid.UUID, uuid.UUID | None
    ]

__all__ = (
    "ADJECTIVES",
    "ANIMALS",
    "FAMILIES",
    "FLOWS",
    "FOLLOWS_WINDOW",
    "Families",
    "Family",
    "Schedule",
    "World",
    "cumulative",
    "named",
    "pick",
    "random_uuid4",
    "related_resource",
    "uuid7_at",
)

FOLLOWS_WINDOW = timedelta(minutes=5)
"""An event of an episode ``follows`` the previous one only if that is at most this older."""

_US = 1_000_000
_WINDOW_US = FOLLOWS_WINDOW // timedelta(microseconds=1)

# -- identifiers ----------------------------------------------------------------------------

_RANDOM_BITS = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)  # what the version and variant leave
_VERSION_7 = 0x7 << 76 | 0x2 << 62  # version 7, RFC 9562 variant


def uuid7_at(ms: int, bits: int) -> uuid.UUID:
    """A UUIDv7 for a millisecond with the given random bits (time-ordered like real ids)."""
    return uuid.UUID(int=(ms & 0xFFFF_FFFF_FFFF) << 80 | bits & _RANDOM_BITS | _VERSION_7)


def random_uuid4(rng: random.Random) -> str:
    """A random (version 4) UUID as text, drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# -- the world: resources that events happen to ---------------------------------------------

FLOWS = (
    ("etl-orders", ("extract", "transform", "load")),
    ("sync-inventory", ("fetch-stock", "upsert")),
    ("nightly-report", ("query", "render", "send")),
    ("train-model", ("load-data", "fit", "evaluate")),
    ("score-leads", ("fetch", "score")),
    ("backup-database", ("dump", "upload")),
    ("send-newsletter", ("segment", "send")),
    ("refresh-dashboards", ("refresh",)),
    ("ingest-clickstream", ("pull", "parse", "store")),
    ("reconcile-payments", ("match", "report")),
    ("cleanup-storage", ("scan", "delete")),
    ("update-prices", ("fetch", "apply")),
)
_POOLS = (("prod-k8s", "kubernetes"), ("batch-docker", "docker"), ("dev-process", "process"))
_TAGS = ("etl", "nightly", "billing", "ml", "reports", "critical", "marketing")
ADJECTIVES = ("amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy")
ANIMALS = ("otter", "heron", "lynx", "marmot", "newt", "okapi", "puffin", "quail", "raven")
_CHANNELS = ("web", "web", "web", "ios", "android")
_COUNTRIES = ("DE", "DE", "FR", "NL", "GB", "US", "US", "ES", "IT", "PL")
_SEGMENTS = ("new", "returning", "returning", "vip")
_CURRENCY = {"DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR", "GB": "GBP"}
_PAYMENT = ("card", "card", "paypal", "klarna", "apple-pay")
_CUSTOMERS = 4000
_PREFECT_VERSION = "3.1.4"


def related_resource(id_: str, role: str, labels: dict[str, str] | None = None) -> RelatedResource:
    """A related resource with an id, a role and more labels."""
    return RelatedResource(
        {"prefect.resource.id": id_, "prefect.resource.role": role, **(labels or {})}
    )


def named(name: str) -> dict[str, str]:
    """The label giving a resource its display name."""
    return {"prefect.resource.name": name}


class Deployment(NamedTuple):
    """A deployment and what its flow runs carry."""

    resource: Resource
    related: list[RelatedResource]  # flow, deployment, work pool, tags: a flow run's related
    tasks: tuple[str, ...]
    scheduled: bool  # runs on a cron schedule (starts at :00, :15, :30 or :45)
    weight: float


class Worker(NamedTuple):
    """A worker and its work pool."""

    resource: Resource
    related: list[RelatedResource]


class World:
    """The resources of one seed: flows, deployments, work pools, workers, tags, customers."""

    def __init__(self, rng: random.Random) -> None:
        pools = [
            related_resource(
                f"prefect.work-pool.{random_uuid4(rng)}",
                "work-pool",
                {"prefect.resource.name": name, "prefect.work-pool.type": kind},
            )
            for name, kind in _POOLS
        ]
        self.deployments: list[Deployment] = []
        for flow_name, tasks in FLOWS:
            flow = related_resource(f"prefect.flow.{random_uuid4(rng)}", "flow", named(flow_name))
            for environment in ("prod", "staging")[: 1 + (rng.random() < 0.6)]:
                self.deployments.append(self._deployment(rng, flow, environment, pools, tasks))
        self.deployment_weights = list(cumulative([d.weight for d in self.deployments]))
        self.workers = [
            self._worker(rng, pool) for pool in pools for _ in range(1 + rng.randrange(3))
        ]
        self.channels = [
            related_resource(f"shop.channel.{name}", "channel", {"shop.platform": name})
            for name in dict.fromkeys(_CHANNELS)
        ]
        self.customers = [self._customer(rng, n) for n in range(_CUSTOMERS)]

    @staticmethod
    def _deployment(
        rng: random.Random,
        flow: RelatedResource,
        environment: str,
        pools: list[RelatedResource],
        tasks: tuple[str, ...],
    ) -> Deployment:
        name = f"{flow['prefect.resource.name']}/{environment}"
        resource = Resource(
            {
                "prefect.resource.id": f"prefect.deployment.{random_uuid4(rng)}",
                "prefect.resource.name": name,
                "prefect.deployment.version": f"1.{rng.randrange(40)}",
                "app.environment": environment,
            }
        )
        pool = pools[2] if environment == "staging" else rng.choice(pools[:2])
        tags = rng.sample(_TAGS, 1 + rng.randrange(2))
        related = [
            flow,
            related_resource(resource.id, "deployment", named(name)),
            pool,
            *(related_resource(f"prefect.tag.{tag}", "tag") for tag in tags),
        ]
        weight = rng.paretovariate(1.2) * (0.3 if environment == "staging" else 1.0)
        return Deployment(resource, related, tasks, rng.random() < 0.5, weight)

    @staticmethod
    def _worker(rng: random.Random, pool: RelatedResource) -> Worker:
        kind = pool["prefect.work-pool.type"]
        name = f"{kind}-worker-{rng.getrandbits(24):06x}"
        resource = Resource(
            {
                "prefect.resource.id": f"prefect.worker.{kind}.{name}",
                "prefect.resource.name": name,
                "prefect.worker-type": kind,
                "prefect.version": _PREFECT_VERSION,
            }
        )
        return Worker(resource, [pool])

    @staticmethod
    def _customer(rng: random.Random, number: int) -> RelatedResource:
        country = rng.choice(_COUNTRIES)
        return related_resource(
            f"shop.customer.{100_000 + number}",
            "customer",
            {"shop.country": country, "shop.segment": rng.choice(_SEGMENTS)},
        )


def cumulative(weights: Sequence[float]) -> Iterator[float]:
    """Running totals of ``weights`` as fractions of their sum (the last is 1)."""
    total = sum(weights)
    running = 0.0
    for weight in weights:
        running += weight
        yield running / total


def pick(rng: random.Random, bounds: Sequence[float]) -> int:
    """A random index, given the cumulative probabilities of each (see :func:`cumulative`)."""
    draw = rng.random()
    for index, bound in enumerate(bounds):
        if draw < bound:
            return index
    return len(bounds) - 1


# -- scheduling: events of started episodes, in occurred order ----------------------------


class Schedule:
    """Events not yet yielded, in a heap by occurred; events at or after ``end_us`` are
    dropped (the window closed on a running episode)."""

    def __init__(self, rng: random.Random, end_us: int) -> None:
        self.rng = rng
        self.end_us = end_us
        self.heap: list[tuple[int, int, Fields]] = []
        self.scheduled = 0

    def add(
        self,
        us: int,
        name: str,
        resource: dict[str, str],
        related: Sequence[dict[str, str]],
        payload: dict[str, Any],
        *,
        follows: uuid.UUID | None = None,
    ) -> uuid.UUID | None:
        """Schedule one event; its id, or None if it falls after the window."""
        if us >= self.end_us:
            return None
        event_id = uuid7_at(us // 1000, self.rng.getrandbits(80))
        fields = (name, resource, related, payload, event_id, follows)
        heapq.heappush(self.heap, (us, self.scheduled, fields))
        self.scheduled += 1
        return event_id


class _Chain:
    """The events of one thing in order: each follows the previous if it is recent enough."""

    __slots__ = ("last_id", "last_us", "schedule")

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.last_id: uuid.UUID | None = None
        self.last_us = 0

    def add(
        self,
        us: int,
        name: str,
        resource: dict[str, str],
        related: Sequence[dict[str, str]],
        payload: dict[str, Any],
    ) -> bool:
        """Schedule the next event; False once the chain runs past the window."""
        recent = self.last_id is not None and us - self.last_us <= _WINDOW_US
        event_id = self.schedule.add(
            us, name, resource, related, payload, follows=self.last_id if recent else None
        )
        self.last_id, self.last_us = event_id, us
        return event_id is not None


# -- the families -------------------------------------------------------------------------

_STATE_TYPES = {
    "Scheduled": "SCHEDULED",
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Completed": "COMPLETED",
    "Failed": "FAILED",
    "Crashed": "CRASHED",
    "AwaitingRetry": "SCHEDULED",
}


def _seconds(rng: random.Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * _US)


def _lognormal_seconds(rng: random.Random, median: float, sigma: float, cap: float) -> int:
    return int(min(median * math.exp(rng.gauss(0.0, sigma)), cap) * _US)


class Families:
    """Plays one episode of a family at a time onto a schedule."""

    def __init__(self, rng: random.Random, world: World, schedule: Schedule) -> None:
        self.rng = rng
        self.world = world
        self.schedule = schedule
        self.orders = 0

    # Flow runs ------------------------------------------------------------------------

    def flow_run(self, us: int, incident: bool) -> None:
        """Scheduled, Pending, Running (with task runs), then Completed, Failed (maybe
        retried once through AwaitingRetry) or Crashed; failures are common in incidents."""
        rng = self.rng
        deployment = self.world.deployments[pick(rng, self.world.deployment_weights)]
        if deployment.scheduled:  # cron: the next quarter hour, give or take a few seconds
            quarter = 15 * 60 * _US
            us = (us + quarter - 1) // quarter * quarter + _seconds(rng, 0, 4)
        run_id = f"prefect.flow-run.{random_uuid4(rng)}"
        name = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}"
        chain = _Chain(self.schedule)
        run = _Run(chain, run_id, name, deployment.related)
        if not run.state(us, "Scheduled"):
            return
        us += _seconds(rng, 2, 90)
        if not run.state(us, "Pending"):
            return
        us += _seconds(rng, 1, 20)
        failure = 0.45 if incident else 0.06
        for attempt in (1, 2):
            if not run.state(us, "Running"):
                return
            end = us + _lognormal_seconds(rng, 45.0, 1.1, 40 * 60)
            outcome = self._outcome(failure)
            self._tasks(deployment, run, us, end, failed=outcome != "Completed")
            if not run.state(end, outcome):
                return
            if outcome != "Failed" or attempt == 2 or rng.random() < 0.5:
                return
            us = end + _seconds(rng, 0.05, 0.5)
            if not run.state(us, "AwaitingRetry"):
                return
            us += _seconds(rng, 10, 120)
            run.count = 2
            failure /= 2

    def _outcome(self, failure: float) -> str:
        draw = self.rng.random()
        if draw < failure:
            return "Failed"
        return "Crashed" if draw < failure * 1.15 else "Completed"

    def _tasks(
        self, deployment: Deployment, run: _Run, start: int, end: int, *, failed: bool
    ) -> None:
        rng = self.rng
        tasks = deployment.tasks[: rng.randrange(len(deployment.tasks) + 1)]
        if not tasks:
            return
        flow_run = RelatedResource(
            {
                "prefect.resource.id": run.id,
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": run.name,
            }
        )
        related = [flow_run, deployment.related[0]]
        slice_us = (end - start) // (len(tasks) + 1)
        for index, task in enumerate(tasks):
            began = start + slice_us * index + _seconds(rng, 0.01, 0.2)
            done = began + int(slice_us * rng.uniform(0.5, 0.95))
            outcome = "Failed" if failed and index == len(tasks) - 1 else "Completed"
            task_run = _Run(
                _Chain(self.schedule),
                f"prefect.task-run.{random_uuid4(rng)}",
                f"{task}-{rng.getrandbits(12):03x}",
                related,
                task=True,
            )
            if not (task_run.state(began, "Running") and task_run.state(done, outcome)):
                return

    # The shop -----------------------------------------------------------------------------

    def shop_visit(self, us: int, sale: bool) -> None:
        """A cart; maybe a checkout (more often during a sale); maybe a paid order."""
        rng = self.rng
        world = self.world
        customer = world.customers[int(len(world.customers) * rng.random() ** 2)]
        channel = world.channels[pick(rng, _CHANNEL_WEIGHTS)]
        currency = _CURRENCY.get(customer["shop.country"], "USD")
        cart = {
            "prefect.resource.id": f"shop.cart.{rng.getrandbits(48):012x}",
            "shop.channel": channel["shop.platform"],
            "shop.currency": currency,
        }
        related = [customer, channel]
        items = 1 + int(rng.expovariate(0.7))
        value = round(sum(rng.choice(_PRICES) for _ in range(items)), 2)
        chain = _Chain(self.schedule)
        if not chain.add(us, "shop.cart.created", cart, related, {"items": items, "value": value}):
            return
        if rng.random() > (0.7 if sale else 0.6):
            return
        us += _lognormal_seconds(rng, 90.0, 1.0, 30 * 60)
        shipping = rng.choice(("standard", "standard", "express", "pickup"))
        checkout = {"items": items, "value": value, "shipping": shipping}
        if not chain.add(us, "shop.checkout.started", cart, related, checkout):
            return
        if rng.random() > 0.8:
            return
        us += _seconds(rng, 15, 240)
        self.orders += 1
        order = {
            "prefect.resource.id": f"shop.order.{1_000_000 + self.orders}",
            "shop.currency": currency,
            "shop.payment-method": rng.choice(_PAYMENT),
        }
        cart_related = {
            "prefect.resource.id": cart["prefect.resource.id"],
            "prefect.resource.role": "cart",
        }
        paid = [*related, cart_related]
        chain.add(us, "shop.order.paid", order, paid, {"amount": value, "currency": currency})

    # Workers and deployments ------------------------------------------------------------

    def heartbeat(self, us: int, _: bool) -> None:
        """One worker says it is alive."""
        worker = self.world.workers[self.rng.randrange(len(self.world.workers))]
        payload = {"in_flight_runs": self.rng.randrange(4)}
        self.schedule.add(us, "prefect.worker.heartbeat", worker.resource, worker.related, payload)

    def deployment_change(self, us: int, incident: bool) -> None:
        """An update, or during an incident a not-ready/ready flap."""
        rng = self.rng
        deployment = rng.choice(self.world.deployments)
        flow, _, pool, *_ = deployment.related
        related = [flow, pool]
        chain = _Chain(self.schedule)
        if not incident:
            field = rng.choice(("parameters", "schedule", "version", "work_pool"))
            chain.add(
                us, "prefect.deployment.updated", deployment.resource, related, {"updated": [field]}
            )
            return
        if chain.add(us, "prefect.deployment.not-ready", deployment.resource, related, {}):
            us += _seconds(rng, 30, 20 * 60)
            chain.add(us, "prefect.deployment.ready", deployment.resource, related, {})


_CHANNEL_WEIGHTS = tuple(cumulative((0.6, 0.25, 0.15)))
_PRICES = (4.99, 9.99, 12.5, 19.99, 24.0, 29.9, 49.0, 79.99, 129.0)


class _Run:
    """A flow run or task run: its state changes as events in one chain."""

    def __init__(
        self,
        chain: _Chain,
        run_id: str,
        name: str,
        related: Sequence[dict[str, str]],
        *,
        task: bool = False,
    ) -> None:
        self.chain = chain
        self.id = run_id
        self.name = name
        self.related = related
        self.kind = "prefect.task-run" if task else "prefect.flow-run"
        self.count = 1
        self.previous: str | None = None

    def state(self, us: int, name: str) -> bool:
        """Schedule the run's move to state ``name``; False once past the window."""
        kind = _STATE_TYPES[name]
        labels = {
            "prefect.resource.id": self.id,
            "prefect.resource.name": self.name,
            "prefect.state-name": name,
            "prefect.state-type": kind,
            "prefect.run-count": str(self.count),
        }
        payload = {
            "intended": {"from": self.previous, "to": kind},
            "validated_state": {"type": kind, "name": name},
        }
        self.previous = kind
        return self.chain.add(us, f"{self.kind}.{name}", labels, self.related, payload)


# -- rhythm: how busy each family is, hour by hour ------------------------------------------

# fmt: off
_FLOW_HOURS = (1.2, 3.0, 3.2, 1.4, 0.6, 0.6, 0.8, 1.0, 1.6, 2.0, 2.1, 2.0,
               1.7, 2.0, 2.1, 2.0, 1.8, 1.4, 1.0, 0.8, 0.7, 0.7, 0.8, 1.0)
_SHOP_HOURS = (0.5, 0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.7, 0.9, 1.0, 1.1, 1.2,
               1.4, 1.3, 1.1, 1.0, 1.1, 1.3, 1.7, 2.2, 2.4, 2.1, 1.5, 0.9)
_OFFICE_HOURS = tuple(1.0 if 9 <= hour < 18 else 0.05 for hour in range(24))
_FLAT_HOURS = (1.0,) * 24
# fmt: on


class Family(NamedTuple):
    """How one family of episodes happens over time."""

    play: Callable[[Families, int, bool], None]  # (families, start, in a burst)
    share: float  # of all events
    size: float  # events per episode, roughly (the pacing corrects the rest)
    hours: tuple[float, ...]  # relative rate by UTC hour
    days: tuple[float, ...]  # relative rate by weekday, Monday first
    bursts_in: Literal["incident", "sale"] | None  # the bursts that speed this family up
    burst: float = 1.0  # rate factor during them


FAMILIES = (
    Family(Families.flow_run, 0.55, 7.0, _FLOW_HOURS, (1, 1, 1, 1, 1, 0.45, 0.4), "incident", 3.0),
    Family(
        Families.shop_visit, 0.30, 2.1, _SHOP_HOURS, (0.9, 0.9, 1, 1, 1.1, 1.4, 1.3), "sale", 5.0
    ),
    Family(Families.heartbeat, 0.12, 1.0, _FLAT_HOURS, (1, 1, 1, 1, 1, 1, 1), None),
    Family(
        Families.deployment_change,
        0.03,
        1.2,
        _OFFICE_HOURS,
        (1, 1, 1, 1, 1, 0.1, 0.1),
        "incident",
        10.0,
    ),
)
"""Every family, with its share of events and its rhythm."""
