"""Queries over 1M and 10M stored events, through the API and as bare SQL.

Each size is a cached events file of the generator's realistic events over 30 days (see
``benchmarks._datasets``: the first run builds it, later runs reuse it). The in-process app
(``httpx.ASGITransport`` inside ``app_lifespan``, as ``ephemeral()``) answers every query,
so a figure is what a client waits for; beside it, the bare SQL of the same answer on the
store's own DuckDB connection is the limit it is compared with:

* the first page of 50 (with the total) for the default filter, an event-name prefix, a
  resource label pattern, a related resource id and a text search; the filter values are
  picked from the data (the most common name family, the most common resource name's first
  word, a related id on about 1% of events, a related resource's name) and shown;
* page 1,000 of the default filter, from a page token for it, against the first page;
* count-by time in hour buckets (720) and in days (30), by event name and by resource,
  over the 30 days.

Every query is run once untimed, then at least 3 times and until about 0.5 s (0.3 s with
``--quick``) has been spent on it, at most 15 times; a query whose first run alone takes
that long is timed twice (that run and one more). A query that the smaller file predicts
(scaling its median by the size) to take over 5 s per run at the larger one is not run
there: its row says so, and its target is not met. Every answer is checked against its
bare SQL (the ids of a page, the counts of a count-by; the bare SQL of a first page is
the count and the page as two statements).

    uv run python -m benchmarks.queries [--quick] [--sizes 1000000,10000000]
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
from rich.progress import Progress

from benchmarks._common import SAMPLES_SOURCE, frozen_heap, parse_args
from benchmarks._datasets import DAYS, Dataset, events_file
from benchmarks._report import Figure, Report, Target, console
from localevents import EventFilter, Settings, app_lifespan
from localevents.events._filters import default_since
from localevents.server import create_app
from localevents.storage import EventStore, open_store, release
from localevents.storage._cursors import PageCursor, encode_cursor
from localevents.storage._queries import resolve_filter

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence

NAME = "queries"
PAGE = 50
DEEP_PAGE = 1000
TARGET_COUNT_MS = 300.0  # count-by hour, event, resource at 10M events over 30 days (issue 5)
TARGET_PAGE_MS = 50.0  # first page for a label pattern or a related id, 10M events
TARGET_DEEP_RATIO = 2.0  # page 1,000 within 2x the first page
TARGET_SIZE = 10_000_000
DEFAULT_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (100_000,)
_JSON = {"content-type": "application/json"}


class Budget(msgspec.Struct, frozen=True):
    """Timed runs per query: at least ``least``, until ``seconds`` are spent, at most ``most``."""

    least: int
    most: int
    seconds: float


DEFAULT_BUDGET = Budget(least=3, most=15, seconds=0.5)
QUICK_BUDGET = Budget(least=3, most=5, seconds=0.3)
LONGEST_RUN_S = 5.0  # a query predicted slower than this at a larger size is not run


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def timed_runs(call: Callable[[], Awaitable[Any]], budget: Budget) -> list[float]:
    """Seconds of each timed run of ``call``, after a first run that warms up. A query whose
    first run alone takes the whole budget is slow: that run and one more are the samples."""
    first = await _timed(call)
    if first >= budget.seconds:
        return [first, await _timed(call)]
    samples: list[float] = []
    while len(samples) < budget.most and (
        len(samples) < budget.least or sum(samples) < budget.seconds
    ):
        samples.append(await _timed(call))
    return samples


# -- what to ask -------------------------------------------------------------------------------


class Picks(msgspec.Struct, frozen=True, kw_only=True):
    """Filter values taken from the data (its first 200,000 rows: in a tiled file, a copy
    of the generator's pool, so as varied as the whole file)."""

    prefix: str
    label: str
    pattern: str
    related_id: str
    text: str


_SAMPLE = "(SELECT event, resource, related, related_ids FROM events LIMIT 200000)"
_NAME_PATH = '$."prefect.resource.name"'


def _first_word(text: str) -> str:
    return text.replace("/", "-").replace(".", "-").split("-")[0]


def pick(store: EventStore, count: int) -> Picks:
    """The most common name family, a pattern on the most common resource name, a related
    id on about 1% of events, and the first word of the most common related name."""
    prefix = store.fetchall(
        f"SELECT regexp_extract(event, '^(.*[.])[^.]*$', 1) AS p, count(*) AS n FROM {_SAMPLE} "
        "GROUP BY p ORDER BY n DESC, p LIMIT 1"
    )[0][0]
    name = store.fetchall(
        f"SELECT json_extract_string(resource, '{_NAME_PATH}') AS v, count(*) AS n "
        f"FROM {_SAMPLE} WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT 1"
    )[0][0]
    sample = min(200_000, count)
    related_id = store.fetchall(
        f"SELECT id, count(*) AS n FROM (SELECT unnest(related_ids) AS id FROM {_SAMPLE}) "
        "GROUP BY id ORDER BY abs(n - ?), id LIMIT 1",
        [sample / 100],
    )[0][0]
    related_name = store.fetchall(
        f"SELECT json_extract_string(r, '{_NAME_PATH}') AS v, count(*) AS n FROM "
        f"(SELECT unnest(json_extract(related, '$[*]')) AS r FROM {_SAMPLE}) "
        "WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT 1"
    )[0][0]
    word = _first_word(name)
    return Picks(
        prefix=prefix,
        label="prefect.resource.name",
        pattern=f"{word}-*" if word != name else f"{name[:3]}*",
        related_id=related_id,
        text=_first_word(related_name),
    )


Statements = list[tuple[str, list[Any]]]


@dataclass
class Query:
    """One request, the bare SQL statements of the same answer, and how to compare them."""

    key: str
    name: str
    request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    statements: Statements
    check: Callable[[httpx.Response, list[list[tuple[Any, ...]]]], str | None]
    targets: list[Target] = field(default_factory=list)
    baseline: str | None = None  # default: the bare SQL twin


_COLUMNS = "id::VARCHAR AS id, epoch_us(occurred) AS o, event, resource, related, payload"
_ORDER = "ORDER BY occurred DESC, id DESC"


def _page_check(response: httpx.Response, results: list[list[tuple[Any, ...]]]) -> str | None:
    """The page holds the ids of the bare SQL's page (its last statement), in order."""
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:200]}"
    page = response.json()
    events = [e["id"] for e in page["events"]]
    expected = [row[0] for row in results[-1][:PAGE]]
    if events != expected:
        return f"ids {events[:3]}... != {expected[:3]}..."
    if len(results) > 1 and page["total"] != results[0][0][0]:
        return f"total {page['total']} != {results[0][0][0]}"
    return None


def _post(url: str, body: dict[str, Any]) -> Callable[[httpx.AsyncClient], Awaitable[Any]]:
    content = msgspec.json.encode(body)

    async def request(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(url, content=content, headers=_JSON)

    return request


def _first_page(
    key: str, name: str, event_filter: dict[str, Any], where: str, params: list[Any]
) -> Query:
    """The API's first page; the bare SQL counts, then selects the page."""
    condition = f"occurred >= ? AND {where}"
    return Query(
        key=key,
        name=name,
        request=_post("/api/events/filter", {"filter": event_filter, "limit": PAGE}),
        statements=[
            (f"SELECT count(*) FROM events WHERE {condition}", params),
            (
                f"SELECT {_COLUMNS} FROM events WHERE {condition} {_ORDER} LIMIT {PAGE + 1}",
                params,
            ),
        ],
        check=_page_check,
    )


def page_queries(picks: Picks, since: datetime) -> list[Query]:
    """The first pages (the default filter's ``since`` is passed for the bare SQL)."""
    return [
        _first_page("page.default", "first page, default filter", {}, "true", [since]),
        _first_page(
            "page.prefix",
            f"first page, name prefix {picks.prefix!r}",
            {"event": {"prefix": [picks.prefix]}},
            "starts_with(event, ?)",
            [since, picks.prefix],
        ),
        _first_page(
            "page.label",
            f"first page, label {picks.label} = {picks.pattern!r}",
            {"resource": {"labels": {picks.label: picks.pattern}}},
            f"json_extract_string(resource, '$.\"{picks.label}\"') LIKE ?",
            [since, picks.pattern.replace("*", "%")],
        ),
        _first_page(
            "page.related",
            "first page, related resource id (~1% of events)",
            {"related": {"id": [picks.related_id]}},
            "list_contains(related_ids, ?)",
            [since, picks.related_id],
        ),
        _first_page(
            "page.text",
            f"first page, text search {picks.text!r}",
            {"text": {"query": picks.text}},
            "contains(lower(concat_ws(' ', event, resource, related, payload)), ?)",
            [since, picks.text.lower()],
        ),
    ]


def deep_page(store: EventStore, since: datetime, total: int) -> Query:
    """Page 1,000 of the default filter, from the token the 999th page would have given."""
    event_filter = resolve_filter(EventFilter())
    offset = (DEEP_PAGE - 1) * PAGE - 1  # the last event of page 999
    after_id, after_us = store.fetchall(
        f"SELECT id::VARCHAR, epoch_us(occurred) FROM events WHERE occurred >= ? {_ORDER} "
        f"LIMIT 1 OFFSET {offset}",
        [since],
    )[0]
    cursor = PageCursor(
        filter=event_filter,
        page_size=PAGE,
        total=total,
        after_occurred_us=after_us,
        after_id=after_id,
    )
    token = encode_cursor(cursor, store.secret)

    async def request(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/api/events/filter/next", params={"page-token": token})

    keyset = "(epoch_us(occurred) < ? OR (epoch_us(occurred) = ? AND id < ?::UUID))"
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE occurred >= ? AND {keyset} {_ORDER} LIMIT {PAGE + 1}"
    )
    return Query(
        key="page.deep",
        name=f"page {DEEP_PAGE:,} of the default filter (vs the first page)",
        request=request,
        statements=[(sql, [since, after_us, after_us, after_id])],
        check=_page_check,
        targets=[Target(limit=TARGET_DEEP_RATIO, on="ratio", higher_is_better=False)],
        baseline="page.default",
    )


def _count_check(
    by: str, buckets: int | None
) -> Callable[[httpx.Response, list[list[tuple[Any, ...]]]], str | None]:
    def check(response: httpx.Response, results: list[list[tuple[Any, ...]]]) -> str | None:
        if response.status_code != 200:
            return f"{response.status_code} {response.text[:200]}"
        counts, rows = response.json(), results[-1]
        if buckets is not None and len(counts) != buckets:
            return f"{len(counts)} buckets, not {buckets}"
        if by in ("event", "resource"):
            same = {c["value"]: c["count"] for c in counts} == {row[0]: row[1] for row in rows}
        else:  # the same non-empty buckets (ours are anchored, the bare SQL's at ``since``)
            ours = sorted(c["count"] for c in counts if c["count"])
            same = ours == sorted(row[1] for row in rows)
        return None if same else f"counts differ from the bare SQL ({by})"

    return check


def count_queries(data: Dataset) -> list[Query]:
    """Count-by time (hour and day buckets), event and resource over the 30 days."""
    until = data.until - timedelta(microseconds=1)
    window = {"occurred": {"since": data.since.isoformat(), "until": until.isoformat()}}
    between = "occurred BETWEEN ? AND ?"
    since_us = (data.since - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    hour, day = 3_600_000_000, 86_400_000_000
    buckets = f"SELECT (epoch_us(occurred) - ?) // ? AS b, count(*) FROM events WHERE {between} "
    buckets += "GROUP BY b"
    grouped = "SELECT {k}, count(*) FROM events WHERE {w} GROUP BY {k}"
    plan: list[tuple[str, str, str, list[Any], int | None]] = [
        ("time", "hour", buckets, [since_us, hour], DAYS * 24),
        ("day", "day", buckets, [since_us, day], DAYS),
        ("event", "day", grouped.format(k="event", w=between), [], None),
        ("resource", "day", grouped.format(k="resource_id", w=between), [], None),
    ]
    targets = {"time": TARGET_COUNT_MS, "event": TARGET_COUNT_MS, "resource": TARGET_COUNT_MS}
    queries = []
    for by, unit, sql, params, expected in plan:
        body = {"filter": window, "time_unit": unit, "time_interval": 1}
        label = "count-by time, hour buckets" if by == "time" else f"count-by {by}"
        limit = targets.get(by)
        queries.append(
            Query(
                key=f"count.{by}",
                name=f"{label} over {DAYS} days",
                request=_post(f"/api/events/count-by/{by}", body),
                statements=[(sql, [*params, data.since, until])],
                check=_count_check(by, expected),
                targets=[] if limit is None else [Target(limit=limit, higher_is_better=False)],
            )
        )
    return queries


def _page_targets(queries: list[Query]) -> list[Query]:
    for query in queries:
        if query.key in ("page.label", "page.related"):
            query.targets = [Target(limit=TARGET_PAGE_MS, higher_is_better=False)]
    return queries


# -- measuring ---------------------------------------------------------------------------------


def size_label(count: int) -> str:
    """``10M``, ``100k``."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


History = dict[str, tuple[int, float]]
"""Per query (API or SQL), the event count and median seconds at the last size measured."""


class Session:
    """Where the queries of one file are measured and recorded."""

    def __init__(
        self,
        report: Report,
        data: Dataset,
        client: httpx.AsyncClient,
        store: EventStore,
        budget: Budget,
        *,
        history: History,
    ) -> None:
        self.report = report
        self.data = data
        self.label = size_label(data.count)
        self.client = client
        self.store = store
        self.budget = budget
        self.history = history
        self.earlier = dict(history)  # the last smaller size's figures, kept as they were

    def _bare(self, query: Query) -> list[list[tuple[Any, ...]]]:
        return [self.store.fetchall(sql, params) for sql, params in query.statements]

    def _predicted(self, kind: str, query: Query) -> float | None:
        """Seconds per run the last size predicts for this one, if it is too many."""
        found = self.earlier.get(f"{kind}.{query.key}")
        if found is None:
            return None
        count, seconds = found
        predicted = seconds * self.data.count / count
        sql = self.history.get(f"sql.{query.key}")
        earlier_sql = self.earlier.get(f"sql.{query.key}")
        if kind == "api" and sql and earlier_sql and sql[0] == self.data.count > earlier_sql[0]:
            # The bare SQL was just timed at this size: scale the request by it, not by
            # the event count (a count-by resource answers as many groups at 1M as at 10M).
            predicted = seconds * sql[1] / earlier_sql[1]
        return predicted if predicted > LONGEST_RUN_S else None

    async def _samples(self, kind: str, query: Query, call: Callable[[], Awaitable[Any]]) -> Any:
        predicted = self._predicted(kind, query)
        if predicted is not None:
            return [], {"not_run": f"predicted {predicted:.0f} s per run from the smaller file"}
        samples = await timed_runs(call, self.budget)
        self.history[f"{kind}.{query.key}"] = (self.data.count, sorted(samples)[len(samples) // 2])
        return [s * 1000 for s in samples], {}

    async def measure(self, query: Query) -> None:
        """Check the answer, then time the bare SQL and the request."""
        label = self.label
        skip_check = self._predicted("sql", query)
        results: list[list[tuple[Any, ...]]] = []
        if not skip_check:
            results = self._bare(query)
            problem = query.check(await query.request(self.client), results)
            if problem is not None:
                raise RuntimeError(f"{label} {query.key}: {problem}")

        async def bare() -> None:
            self._bare(query)

        async def api() -> None:
            await query.request(self.client)

        twin = f"{label}.sql.{query.key}"
        samples, detail = await self._samples("sql", query, bare)
        self.report.add(
            Figure(
                key=twin,
                group=f"{label} events: bare SQL on the store's connection (the limit)",
                name=query.name,
                unit="ms",
                samples=samples,
                higher_is_better=False,
                short="SQL",
                detail=detail,
            )
        )
        samples, detail = await self._samples("api", query, api)
        if query.statements[0][0].startswith("SELECT count(*)") and results:
            detail["matches"] = results[0][0][0]
        self.report.add(
            Figure(
                key=f"{label}.{query.key}",
                group=f"{label} events over {DAYS} days, through the API (in-process HTTP)",
                name=query.name,
                unit="ms",
                samples=samples,
                higher_is_better=False,
                baseline=f"{label}.{query.baseline}" if query.baseline else twin,
                targets=query.targets if self.data.count == TARGET_SIZE else [],
                short="first page" if query.key == "page.default" else None,
                detail=detail,
            )
        )


async def measure_size(
    report: Report, data: Dataset, budget: Budget, progress: Progress, history: History
) -> None:
    """Every query over one events file, through the in-process app and as bare SQL."""
    label = size_label(data.count)
    app = create_app(Settings(database=str(data.path)), docs=False)
    store = open_store(str(data.path))
    asgi: Any = app  # Litestar types its scopes more narrowly than httpx's transport
    transport = httpx.ASGITransport(app=asgi)
    try:
        async with (
            app_lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client,
        ):
            since = default_since()
            picks = pick(store, data.count)
            queries = [
                *_page_targets(page_queries(picks, since)),
                deep_page(store, since, data.count),
                *count_queries(data),
            ]
            task = progress.add_task(f"queries over {label} events", total=len(queries))
            session = Session(report, data, client, store, budget, history=history)
            for query in queries:
                await session.measure(query)
                progress.advance(task)
    finally:
        release(store)
    report.params[f"picks_{label}"] = msgspec.structs.asdict(picks)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=None,
        help="comma-separated event counts (default 1000000,10000000; --quick 100000)",
    )


def _file_params(data: Dataset) -> dict[str, Any]:
    return {
        "path": str(data.path),
        "bytes": data.bytes_on_disk,
        "bytes_per_event": round(data.bytes_on_disk / data.count, 1),
        "cached": data.cached,
        "build_seconds": None if data.build_seconds is None else round(data.build_seconds, 1),
        "since": data.since.isoformat(),
        "until": data.until.isoformat(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Build or find each file, time every query, print and save the report."""
    options = parse_args(__doc__, argv, _add_arguments)
    sizes = options.extra["sizes"] or (QUICK_SIZES if options.quick else DEFAULT_SIZES)
    budget = QUICK_BUDGET if options.quick else DEFAULT_BUDGET
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            "sizes": list(sizes),
            "page": PAGE,
            "budget": msgspec.structs.asdict(budget),
            "events": f"{SAMPLES_SOURCE}.generate_events",
        },
    )
    history: History = {}
    with Progress(console=console, transient=True) as progress:
        for size in sorted(sizes):
            data = events_file(size, options.seed, progress)
            report.params[f"file_{size_label(size)}"] = _file_params(data)
            report.add(
                Figure(
                    key=f"{size_label(size)}.disk",
                    group="bytes on disk, the realistic events of each file (after CHECKPOINT)",
                    name=f"file size per event, {size:,} events",
                    unit="bytes/event",
                    samples=[data.bytes_on_disk / size],
                    per="file",
                    higher_is_better=False,
                )
            )
            run = functools.partial(measure_size, history=history)
            with frozen_heap():
                anyio.run(run, report, data, budget, progress)
    report.finish(options.out)


if __name__ == "__main__":
    main()
