"""Count-by and first-page queries over a large events file, beside bare DuckDB SQL.

A fresh events file is loaded with a million generated events (100,000 with ``--quick``)
spread over the 30 days before today's midnight UTC, in time order, as fast as the machine
allows: rows are built with the store's own ``event_row`` and appended with DuckDB's
appender into the table the store created, so the file is a real events file. The store
then reopens it and each query runs 2 times to warm up and 20 times measured:

* ``count_events`` by ``time`` (hour buckets: 720), by ``day`` (30), by ``event`` and by
  ``resource``, and the first page of 50 from ``query_events``, all over the 30 days;
* the physical limit: the bare SQL of the same grouping (``(epoch_us(occurred) - ?) // ?``
  for time buckets, ``GROUP BY event`` / ``resource_id``) on the same file and connection.

    uv run python -m benchmarks.count_by [--quick]
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec

from benchmarks._common import (
    EventGenerator,
    Target,
    Timer,
    append_rows,
    frozen_heap,
    parse_args,
    percentile,
    rate,
    report,
)
from localevents import Countable, EventFilter, EventOccurredFilter, TimeUnit
from localevents.storage import count_events, open_store, query_events, release
from localevents.storage._rows import event_row

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from localevents.storage import EventStore, QueryPage

NAME = "count_by"
DAYS = 30
LOAD_CHUNK = 10_000
WARMUPS = 2
REPETITIONS = 20
PAGE_SIZE = 50
TARGET_MS = 50.0  # count-by time, hour buckets over 30 days, 1,000,000 events (issue 2)
DEFAULT_EVENTS = 1_000_000
QUICK_EVENTS = 100_000
_ONE_US = timedelta(microseconds=1)


class Window(msgspec.Struct, frozen=True):
    """The 30 days the events occupy; ``until`` is inclusive, as in a filter."""

    since: datetime
    until: datetime

    @classmethod
    def before_today(cls, days: int) -> Window:
        """The ``days`` days before today's midnight UTC (whole hours and days)."""
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(since=midnight - timedelta(days=days), until=midnight - _ONE_US)

    @property
    def event_filter(self) -> EventFilter:
        """Every event of the window."""
        return EventFilter(occurred=EventOccurredFilter(since=self.since, until=self.until))


# -- loading ----------------------------------------------------------------------------------


class Load(msgspec.Struct, frozen=True):
    """How the file was filled: seconds generating events and rows, seconds appending."""

    events: int
    generate_seconds: float
    append_seconds: float


def load(path: str, count: int, window: Window, seed: int) -> Load:
    """Fill a new events file with ``count`` events over ``window``, in time order.

    Chunks of 10,000 events over consecutive slices of the window, each appended and
    committed at once (the appender is the fastest path from Python objects, see DESIGN §3).
    """
    release(open_store(path))  # the store creates the schema of a real events file
    generator = EventGenerator(seed)
    chunks = math.ceil(count / LOAD_CHUNK)
    slice_ = (window.until + _ONE_US - window.since) / chunks
    generating, appending = Timer(), Timer()
    generate_seconds = append_seconds = 0.0
    with duckdb.connect(path) as con:
        for i in range(chunks):
            start = window.since + i * slice_
            size = min(LOAD_CHUNK, count - i * LOAD_CHUNK)
            with generating:
                rows = [event_row(e) for e in generator.events(size, start, start + slice_)]
            with appending:
                append_rows(con, rows, Path(path + ".scratch.ndjson"))
            generate_seconds += generating.elapsed
            append_seconds += appending.elapsed
        con.execute("CHECKPOINT")
    return Load(events=count, generate_seconds=generate_seconds, append_seconds=append_seconds)


# -- querying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One measured query: what it is, how to run it, and the bare SQL it compares with."""

    query: str
    by: str
    run: Callable[[], Sequence[Any]]
    check: Callable[[Sequence[Any]], bool]
    raw: str | None = None  # the ``by`` of the bare SQL twin


def _timed(run: Callable[[], Sequence[Any]]) -> tuple[list[float], Sequence[Any]]:
    for _ in range(WARMUPS):
        run()
    latencies = []
    result: Sequence[Any] = ()
    timer = Timer()
    for _ in range(REPETITIONS):
        with timer:
            result = run()
        latencies.append(timer.elapsed)
    return latencies, result


def _our_queries(store: EventStore, window: Window, events: int) -> list[Query]:
    every = window.event_filter

    def counting(by: str, countable: Countable, unit: TimeUnit, buckets: int | None) -> Query:
        def check(counts: Sequence[Any]) -> bool:
            right_size = buckets is None or len(counts) == buckets
            return right_size and sum(c.count for c in counts) == events

        return Query(
            query="count_events",
            by=by,
            run=lambda: count_events(store, every, countable, unit, 1.0),
            check=check,
            raw=by,
        )

    last: list[QueryPage] = []

    def page() -> Sequence[Any]:
        last[:] = [query_events(store, every, PAGE_SIZE)]
        return last[0].events

    def full_page(found: Sequence[Any]) -> bool:
        return len(found) == PAGE_SIZE and last[0].total == events

    return [
        counting("time (hour)", Countable.time, TimeUnit.hour, DAYS * 24),
        counting("time (day)", Countable.day, TimeUnit.day, DAYS),
        counting("event", Countable.event, TimeUnit.day, None),
        counting("resource", Countable.resource, TimeUnit.day, None),
        Query(query="query_events", by=f"first page of {PAGE_SIZE}", run=page, check=full_page),
    ]


_BUCKETS_SQL = (
    "SELECT (epoch_us(occurred) - ?) // ? AS b, count(*) FROM events "
    "WHERE occurred BETWEEN ? AND ? GROUP BY b"
)
_GROUP_SQL = "SELECT {key}, count(*) FROM events WHERE occurred BETWEEN ? AND ? GROUP BY {key}"


def _raw_queries(store: EventStore, window: Window, events: int) -> list[Query]:
    since_us = (window.since - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_US
    bounds = [window.since, window.until]

    def bare(by: str, sql: str, params: list[Any], groups: int | None) -> Query:
        def check(rows: Sequence[Any]) -> bool:
            right_size = groups is None or len(rows) == groups
            return right_size and sum(row[1] for row in rows) == events

        def run() -> Sequence[Any]:
            return store.cursor().execute(sql, params).fetchall()

        return Query(query="bare SQL", by=by, run=run, check=check)

    hour, day = TimeUnit.hour.microseconds, TimeUnit.day.microseconds
    return [
        bare("time (hour)", _BUCKETS_SQL, [since_us, hour, *bounds], DAYS * 24),
        bare("time (day)", _BUCKETS_SQL, [since_us, day, *bounds], DAYS),
        bare("event", _GROUP_SQL.format(key="event"), bounds, None),
        bare("resource", _GROUP_SQL.format(key="resource_id"), bounds, None),
    ]


def measure(store: EventStore, window: Window, events: int) -> list[dict[str, Any]]:
    """Time every query (bare SQL first, for the ratios) and check every answer."""
    raw_p50: dict[str, float] = {}
    rows = []
    for query in [*_raw_queries(store, window, events), *_our_queries(store, window, events)]:
        latencies, result = _timed(query.run)
        if not query.check(result):
            raise RuntimeError(f"{query.query} by {query.by}: wrong answer {result!r:.300}")
        p50 = percentile(latencies, 50)
        if query.query == "bare SQL":
            raw_p50[query.by] = p50
        rows.append(
            {
                "query": query.query,
                "by": query.by,
                "result_rows": len(result),
                "repetitions": REPETITIONS,
                "p50_ms": round(p50 * 1000, 2),
                "p95_ms": round(percentile(latencies, 95) * 1000, 2),
                "min_ms": round(min(latencies) * 1000, 2),
                "vs_bare_sql": round(p50 / raw_p50[query.raw], 2) if query.raw else None,
            }
        )
    return rows


# -- the run ----------------------------------------------------------------------------------


def _target(rows: Sequence[dict[str, Any]], events: int) -> Target:
    hourly = next(r for r in rows if r["query"] == "count_events" and r["by"] == "time (hour)")
    return Target(
        name=f"count-by time, hour buckets over {DAYS} days, {events:,} events, p50",
        measured=hourly["p50_ms"],
        limit=TARGET_MS,
        unit="ms",
        higher_is_better=False,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Load a file, time the queries, print and save the report."""
    args = parse_args(__doc__, argv)
    events = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    window = Window.before_today(DAYS)
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name:
        path = str(Path(name) / "events.duckdb")
        loaded = load(path, events, window, args.seed)
        store = open_store(path)
        try:
            with frozen_heap():
                rows = measure(store, window, events)
        finally:
            release(store)
    params = {
        "quick": args.quick,
        "seed": args.seed,
        "events": events,
        "days": DAYS,
        "since": window.since.isoformat(),
        "warmups": WARMUPS,
        "load_generate_s": round(loaded.generate_seconds, 1),
        "load_append_s": round(loaded.append_seconds, 1),
        "load_append_events_per_s": round(rate(events, loaded.append_seconds)),
    }
    report(NAME, params=params, results=rows, targets=[_target(rows, events)])


if __name__ == "__main__":
    main()
