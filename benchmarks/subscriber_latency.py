"""Live delivery: from an acknowledged write to a subscriber, and what subscribers cost ingest.

Every measurement runs against its own ``python -m localevents serve`` (fresh DuckDB file,
loopback), all started at once:

* latency: one subscriber of ``/api/events/out`` (every event, no backfill) and a writer
  posting single events (``POST /api/events``, batch 1) one at a time, both in this process
  and event loop. A sample is the ``perf_counter`` time from the 204 reaching the writer to
  the event's frame reaching the subscriber, counted as 0 when the frame came first (the
  server fans out at commit, before it answers); the time from the start of the POST is
  reported beside it. The writer waits for each event before posting the next.
* the fan-out limit, in this process: ``LiveHub.publish`` (the store's commit listener,
  which runs in the committing thread before the write returns) of batches of 1000 events
  to one and to 100 subscriptions, matching and queueing without any socket;
* batch ingest: the same events posted in batches of 1000, one request at a time, with no
  subscriber, then with 100 subscribers that match everything and all read, then with 100
  whose filter matches one event name in twenty, then with 100 that match none of them
  (being connected, without delivery). The subscribers run in a process of their
  own (``benchmarks._subscribers``) so their reading does not slow the writer measured
  here; each row says how many received every event, how many the server closed (1013:
  fell behind, D8), and how long after the first POST every subscriber had either
  received everything or been closed (``settled_s``).

A subscription is proven open before anything is measured: warm-up events are posted one
by one until every subscriber has received one. Events occur in the five minutes before
the run (a live subscription's window starts 15 minutes back). Stored totals are checked
after every measurement.

    uv run python -m benchmarks.subscriber_latency [--quick]
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from benchmarks._common import (
    Server,
    Target,
    Timer,
    encode_batches,
    frozen_heap,
    generate_events,
    localevents_server,
    open_events_socket,
    parse_args,
    percentile,
    rate,
    report,
    stored_total,
    wait_all_ready,
)
from benchmarks._subscribers import WARMUP_EVENT, Progress, subscribe_message
from localevents import EventFilter, ReceivedEvent, Settings
from localevents.events._time import now_utc
from localevents.server._hub import LiveHub
from localevents.server._websockets import subscription_filter
from localevents.storage._rows import event_row

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from anyio.abc import Process
    from httpx_ws import AsyncWebSocketSession

NAME = "subscriber_latency"
BATCH = 1000
SUBSCRIBERS = 100
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
TARGET_COST = 0.20  # of batch ingest throughput, with 100 subscribers connected
WARMUP_EVENTS = 200  # at most, per measurement: one every WARMUP_WAIT_S until delivered
WARMUP_WAIT_S = 0.25
DELIVERY_TIMEOUT_S = 10.0  # a latency sample that never arrives
SELECTIVE_NAME = "shop.order.cancelled"  # one event name in twenty (see EventGenerator)
_HEADERS = {"content-type": "application/json"}


class Sizes(msgspec.Struct, frozen=True):
    """Latency samples, events per batch-ingest run, batches published in-process, and how
    long the subscribers may take to receive everything after the last POST."""

    samples: int
    ingest_events: int
    publish_batches: int
    delivery_timeout_s: float


# 100 subscribers of every event slow ingest to a few hundred events/s here (2 cores):
# 20,000 events keep the default run under two minutes.
DEFAULT = Sizes(samples=500, ingest_events=20_000, publish_batches=10, delivery_timeout_s=90)
QUICK = Sizes(samples=100, ingest_events=1_000, publish_batches=1, delivery_timeout_s=15)


class Workload(msgspec.Struct, frozen=True):
    """Everything posted, encoded before timing: samples as ``(id, body)``, ingest bodies
    and warm-up events (each used at most once per server: a stored id is never published
    again)."""

    samples: list[tuple[str, bytes]]
    bodies: list[bytes]
    ingest_events: int
    selective_events: int
    warmups: list[bytes]
    published: list[ReceivedEvent]
    delivery_timeout_s: float


def _workload(sizes: Sizes, seed: int) -> Workload:
    start = datetime.now(UTC) - timedelta(minutes=5)
    events = generate_events(sizes.samples + sizes.ingest_events, seed=seed, start=start)
    samples = events[: sizes.samples]
    ingest = events[sizes.samples :]
    warmups = [
        msgspec.structs.replace(event, event=WARMUP_EVENT)
        for event in generate_events(WARMUP_EVENTS, seed=seed + 1, start=start)
    ]
    return Workload(
        samples=[
            (str(e.id), body) for e, body in zip(samples, encode_batches(samples, 1), strict=True)
        ],
        bodies=encode_batches(ingest, BATCH),
        ingest_events=len(ingest),
        selective_events=sum(e.event == SELECTIVE_NAME for e in ingest),
        warmups=encode_batches(warmups, 1),
        published=ingest[: sizes.publish_batches * BATCH],
        delivery_timeout_s=sizes.delivery_timeout_s,
    )


async def _post(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/api/events", content=body, headers=_HEADERS)
    if response.status_code != 204:
        raise RuntimeError(f"POST /api/events: {response.status_code} {response.text}")


async def post_warmups_until(
    client: httpx.AsyncClient, warmups: Iterator[bytes], arrived: Callable[[], Awaitable[object]]
) -> int:
    """Post warm-up events one at a time until ``arrived()`` returns within
    ``WARMUP_WAIT_S`` of one: proof the subscriptions are open. How many it took."""
    for count, body in enumerate(warmups, 1):
        await _post(client, body)
        with anyio.move_on_after(WARMUP_WAIT_S):
            await arrived()
            return count
    raise RuntimeError("the subscribers never received a warm-up event")


async def _check_total(client: httpx.AsyncClient, expected: int) -> None:
    total = await stored_total(client)
    if total != expected:
        raise RuntimeError(f"expected {expected} stored events, found {total}")


# -- latency ----------------------------------------------------------------------------------


class _Watcher:
    """The one subscriber of the latency run: when the expected event's frame arrived."""

    def __init__(self) -> None:
        self.warm = anyio.Event()
        self.seen_at = math.nan
        self._expected: str | None = None
        self._seen = anyio.Event()

    def expect(self, event_id: str) -> anyio.Event:
        """Watch for ``event_id``; the returned event is set when its frame arrives."""
        self._expected, self._seen = event_id, anyio.Event()
        return self._seen

    async def run(self, ws: AsyncWebSocketSession) -> None:
        """Read frames until cancelled."""
        while True:
            text = await ws.receive_text()
            at = time.perf_counter()
            if WARMUP_EVENT in text:
                self.warm.set()
            elif self._expected is not None and self._expected in text:
                self._expected, self.seen_at = None, at
                self._seen.set()


class Latency(msgspec.Struct, kw_only=True):
    """Seconds from the 204 (``after_ack``, 0 if the frame came first) and from the start
    of the POST (``after_post``) to the subscriber, per sample."""

    after_ack: list[float]
    after_post: list[float]
    before_ack: int

    def as_row(self) -> dict[str, Any]:
        """The result row (milliseconds)."""

        def ms(values: Sequence[float], q: float) -> float:
            return round(percentile(values, q) * 1000, 3)

        return {
            "stage": "latency",
            "measurement": "ack -> subscriber, batch 1, 1 subscriber",
            "samples": len(self.after_ack),
            "p50_ms": ms(self.after_ack, 50),
            "p95_ms": ms(self.after_ack, 95),
            "p99_ms": ms(self.after_ack, 99),
            "max_ms": ms(self.after_ack, 100),
            "post_p50_ms": ms(self.after_post, 50),
            "post_p99_ms": ms(self.after_post, 99),
            "before_ack": self.before_ack,
        }


async def _sample(
    client: httpx.AsyncClient, watcher: _Watcher, event_id: str, body: bytes
) -> tuple[float, float]:
    """Post one event and wait for it: (seconds after the 204, seconds after the POST began)."""
    seen = watcher.expect(event_id)
    started = time.perf_counter()
    await _post(client, body)
    acked = time.perf_counter()
    with anyio.fail_after(DELIVERY_TIMEOUT_S):
        await seen.wait()
    return watcher.seen_at - acked, watcher.seen_at - started


async def measure_latency(server: Server, workload: Workload) -> Latency:
    """One subscriber and one writer in this event loop, one event at a time."""
    after_ack: list[float] = []
    after_post: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        async with (
            open_events_socket(f"{server.url}/api/events/out") as ws,
            anyio.create_task_group() as tg,
        ):
            await ws.send_text(subscribe_message({}))
            watcher = _Watcher()
            tg.start_soon(watcher.run, ws)
            warmups = await post_warmups_until(client, iter(workload.warmups), watcher.warm.wait)
            for event_id, body in workload.samples:
                from_ack, from_post = await _sample(client, watcher, event_id, body)
                after_ack.append(from_ack)
                after_post.append(from_post)
            tg.cancel_scope.cancel()
        await _check_total(client, len(workload.samples) + warmups)
    return Latency(
        after_ack=[max(0.0, s) for s in after_ack],
        after_post=after_post,
        before_ack=sum(s < 0 for s in after_ack),
    )


# -- fan-out ----------------------------------------------------------------------------------


class Fanout(msgspec.Struct, frozen=True):
    """Who subscribes: how many, to what (an EventFilter as JSON), expecting how many of
    the ingested events each."""

    subscribers: int
    label: str
    event_filter: dict[str, Any]
    expect: int


def _fanouts(workload: Workload) -> list[Fanout]:
    """No subscribers, then 100 that take every event (the target), one name in twenty, and
    none (matching without delivery: what being connected costs)."""
    return [
        Fanout(subscribers=0, label="no subscribers", event_filter={}, expect=0),
        Fanout(
            subscribers=SUBSCRIBERS,
            label=f"{SUBSCRIBERS} subscribers, every event",
            event_filter={},
            expect=workload.ingest_events,
        ),
        Fanout(
            subscribers=SUBSCRIBERS,
            label=f"{SUBSCRIBERS} subscribers, 1 event name in 20",
            event_filter={"event": {"name": [SELECTIVE_NAME, WARMUP_EVENT]}},
            expect=workload.selective_events,
        ),
        Fanout(
            subscribers=SUBSCRIBERS,
            label=f"{SUBSCRIBERS} subscribers, no event",
            event_filter={"event": {"name": [WARMUP_EVENT]}},
            expect=0,
        ),
    ]


class Publish(msgspec.Struct, kw_only=True):
    """``LiveHub.publish`` of ``batches`` batches in-process: ``latencies`` per batch."""

    fanout: Fanout
    events: int
    latencies: list[float]

    def as_row(self) -> dict[str, Any]:
        """The result row."""
        seconds = sum(self.latencies)
        return {
            "stage": "limit",
            "measurement": f"LiveHub.publish (in-process), {self.fanout.label}",
            "subscribers": self.fanout.subscribers,
            "events": self.events,
            "seconds": round(seconds, 3),
            "events_per_s": round(rate(self.events, seconds)),
            "ms_per_batch": round(percentile(self.latencies, 50) * 1000, 3),
        }


async def measure_publish(events: Sequence[ReceivedEvent], fanout: Fanout) -> Publish:
    """What the committing thread does for each batch: the hub's fan-out of its rows to
    ``fanout``'s subscriptions (matching, queueing, waking; no socket). Run inside an event
    loop, which the subscriptions need; their queues have no limit here."""
    event_filter = msgspec.convert(fanout.event_filter, EventFilter)
    batches = [[event_row(e) for e in events[i : i + BATCH]] for i in range(0, len(events), BATCH)]
    hub = LiveHub(maximum=len(events))
    latencies = []
    with contextlib.ExitStack() as stack:
        live = subscription_filter(event_filter, Settings(), now_utc())
        for _ in range(fanout.subscribers):
            stack.enter_context(hub.open_subscription(live))
        for rows in batches:
            started = time.perf_counter()
            hub.publish(rows)
            latencies.append(time.perf_counter() - started)
    return Publish(fanout=fanout, events=len(events), latencies=latencies)


# -- batch ingest with subscribers ------------------------------------------------------------


class Ingest(msgspec.Struct, kw_only=True):
    """A batch-ingest run and, with subscribers, what they received."""

    fanout: Fanout
    events: int
    seconds: float
    received: list[int] = []
    close_codes: list[int | None] = []
    settled_after: float | None = None  # from the first POST until all received or closed

    @property
    def events_per_s(self) -> float:
        """Ingest throughput."""
        return rate(self.events, self.seconds)

    def as_row(self, alone: float) -> dict[str, Any]:
        """The result row, with the cost relative to ingest without subscribers."""
        fanout, delivered = self.fanout, sum(self.received)
        row: dict[str, Any] = {
            "stage": "http",
            "measurement": f"POST /api/events, batch {BATCH}, {fanout.label}",
            "subscribers": fanout.subscribers,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s),
            "ms_per_batch": round(self.seconds / math.ceil(self.events / BATCH) * 1000, 3),
            "cost": round(1 - self.events_per_s / alone, 3),
        }
        if not fanout.subscribers:
            return row
        after = self.settled_after
        return row | {
            "each_expects": fanout.expect,
            "kept_up": sum(r >= fanout.expect for r in self.received),
            "closed_1013": sum(code == 1013 for code in self.close_codes),
            "closed_other": sum(code not in (None, 1013) for code in self.close_codes),
            "delivered": delivered,
            "settled_s": None if after is None else round(after, 3),
            "frames_per_s": None if after is None else round(rate(delivered, after)),
        }


async def _post_all(client: httpx.AsyncClient, bodies: Sequence[bytes]) -> float:
    with Timer() as timer:
        for body in bodies:
            await _post(client, body)
    return timer.elapsed


class _Progress:
    """The subscribers process's report lines, one at a time (its stderr goes to ``log``)."""

    def __init__(self, process: Process, log: Path) -> None:
        if process.stdout is None:
            raise RuntimeError("the subscribers process has no stdout pipe")
        self._lines = BufferedByteReceiveStream(process.stdout)
        self._decode = msgspec.json.Decoder(Progress).decode
        self._log = log

    async def expect(self, state: str) -> Progress:
        """The next line, which must be ``state``."""
        try:
            line = await self._lines.receive_until(b"\n", 2**24)
        except anyio.IncompleteRead:
            output = self._log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the subscribers process ended early:\n{output}") from None
        progress = self._decode(line)
        if progress.state != state:
            raise RuntimeError(f"subscribers: expected {state!r}, got {progress.state!r}")
        return progress


def _subscribers_command(url: str, fanout: Fanout, wait_s: float) -> list[str]:
    command = [sys.executable, "-m", "benchmarks._subscribers", f"{url}/api/events/out"]
    command += ["--count", str(fanout.subscribers), "--expect", str(fanout.expect)]
    command += ["--filter", msgspec.json.encode(fanout.event_filter).decode()]
    return [*command, "--timeout", str(wait_s)]


async def _ingest_subscribed(
    client: httpx.AsyncClient, url: str, workload: Workload, fanout: Fanout, log: Path
) -> tuple[Ingest, int]:
    """Start the subscribers, warm them up, post every batch and collect their report;
    with the number of warm-up events posted."""
    wait_s = workload.delivery_timeout_s
    command = _subscribers_command(url, fanout, wait_s)
    with log.open("wb") as stderr:
        process = await anyio.open_process(command, stderr=stderr)
        try:
            progress = _Progress(process, log)
            with anyio.fail_after(60):
                await progress.expect("connected")
            warmups = await post_warmups_until(
                client, iter(workload.warmups), lambda: progress.expect("ready")
            )
            started = time.monotonic()  # the subscribers' clock too (CLOCK_MONOTONIC)
            seconds = await _post_all(client, workload.bodies)
            if process.stdin is not None:
                await process.stdin.aclose()  # everything is posted
            with anyio.fail_after(wait_s + 60):
                done = await progress.expect("done")
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
    measured = Ingest(
        fanout=fanout,
        events=workload.ingest_events,
        seconds=seconds,
        received=done.received,
        close_codes=done.close_codes,
        settled_after=None if done.finished_at is None else done.finished_at - started,
    )
    return measured, warmups


async def measure_ingest(server: Server, workload: Workload, fanout: Fanout, log: Path) -> Ingest:
    """Batches of ``BATCH`` events posted one request at a time, beside ``fanout``."""
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            if fanout.subscribers:
                measured, warmups = await _ingest_subscribed(
                    client, server.url, workload, fanout, log
                )
            else:
                seconds = await _post_all(client, workload.bodies)
                measured = Ingest(fanout=fanout, events=workload.ingest_events, seconds=seconds)
                warmups = 0
            await _check_total(client, workload.ingest_events + warmups)
    finally:
        server.stop()
    return measured


class Results(msgspec.Struct, kw_only=True):
    """Everything one run measured."""

    latency: Latency
    published: list[Publish]
    ingests: list[Ingest]


async def measure_all(tmp: Path, workload: Workload) -> Results:
    """Latency, the in-process fan-out, then batch ingest beside each fan-out; every server
    starts at once, and all are ready before the first measurement (they sit idle until
    their turn)."""
    fanouts = _fanouts(workload)
    servers: list[Server] = []
    try:
        for name in ["latency", *(f"ingest-{i}" for i in range(len(fanouts)))]:
            servers.append(localevents_server(str(tmp / f"{name}.duckdb"), tmp / f"{name}.log"))
        with anyio.fail_after(120):
            await wait_all_ready(servers)
        try:
            latency = await measure_latency(servers[0], workload)
        finally:
            servers[0].stop()
        one = Fanout(subscribers=1, label="1 subscriber, every event", event_filter={}, expect=0)
        published = [
            await measure_publish(workload.published, fanout) for fanout in [one, *fanouts[1:]]
        ]
        ingests = []
        for i, (server, fanout) in enumerate(zip(servers[1:], fanouts, strict=True)):
            log = tmp / f"subscribers-{i}.log"
            ingests.append(await measure_ingest(server, workload, fanout, log))
    finally:
        for server in servers:
            server.stop()
    return Results(latency=latency, published=published, ingests=ingests)


# -- the run ----------------------------------------------------------------------------------


def _targets(results: Results) -> list[Target]:
    latency = results.latency
    alone, everything = results.ingests[0], results.ingests[1]
    return [
        Target(
            name="ack -> subscriber latency p50",
            measured=round(percentile(latency.after_ack, 50) * 1000, 3),
            limit=TARGET_P50_MS,
            unit="ms",
            higher_is_better=False,
        ),
        Target(
            name="ack -> subscriber latency p99",
            measured=round(percentile(latency.after_ack, 99) * 1000, 3),
            limit=TARGET_P99_MS,
            unit="ms",
            higher_is_better=False,
        ),
        Target(
            name=f"batch ingest cost of {SUBSCRIBERS} subscribers (every event)",
            measured=round(100 * (1 - everything.events_per_s / alone.events_per_s), 1),
            limit=100 * TARGET_COST,
            unit="%",
            higher_is_better=False,
        ),
        Target(
            name=f"... with all {SUBSCRIBERS} subscribers receiving every event",
            measured=sum(r >= everything.fanout.expect for r in everything.received),
            limit=SUBSCRIBERS,
            unit="subscribers",
            higher_is_better=True,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Measure delivery latency and the ingest cost of subscribers; print and save."""
    args = parse_args(__doc__, argv)
    sizes = QUICK if args.quick else DEFAULT
    workload = _workload(sizes, args.seed)
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name, frozen_heap():
        results = anyio.run(measure_all, Path(name), workload)
    alone = results.ingests[0].events_per_s
    report(
        NAME,
        params={
            "quick": args.quick,
            "seed": args.seed,
            "samples": sizes.samples,
            "ingest_events": sizes.ingest_events,
            "batch": BATCH,
            "subscribers": SUBSCRIBERS,
            "delivery_timeout_s": sizes.delivery_timeout_s,
        },
        results=[
            results.latency.as_row(),
            *(published.as_row() for published in results.published),
            *(ingest.as_row(alone) for ingest in results.ingests),
        ],
        targets=_targets(results),
        group_by="stage",
    )


if __name__ == "__main__":
    main()
