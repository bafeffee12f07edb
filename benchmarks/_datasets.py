"""Large events files of standard events, built fast and cached between runs.

Generating ten million events in Python would take minutes, so a file of ``count`` events
over the 30 days before the first day of this month (UTC) is built in tiles:

1. a *pool* of 245,760 realistic events (``sample_events``; two DuckDB row groups) over
   the tile's share of the window, written by the store's own write path
   (``store.write_events``, 1000 per call) to a scratch file: exactly what ingest stores;
2. the events file gets ``tiles`` copies of the pool, the k-th shifted k tiles later, each
   with new time-ordered ids (UUIDv7 of the shifted instant; ``follows`` re-pointed at the
   copy of the followed event), by one ``INSERT ... SELECT`` per tile, in ``occurred`` order
   as real ingest would leave it; then one CHECKPOINT.

A tile fills exactly two row groups (122,880 rows each), so no row group holds the same
event twice and compression sees realistic data, and no insert rewrites a partly filled
row group (measured: that left a third of a 10M file as free blocks, and took 3x longer);
the generator's rhythm repeats once per tile (about 18 hours at ten million events).

A built file is kept as ``benchmarks/results/cache/events-<count>-seed<seed>-<key>.duckdb``,
where the key hashes what the file depends on: the builder, the first events of the
generator for that seed, the ``events`` table's DDL and the window. A changed generator or
schema builds a new file; files for other keys of the same count and seed are removed.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import msgspec

from benchmarks._common import SAMPLES_SOURCE, Timer, as_received, sample_events
from benchmarks._report import RESULTS_DIR, console
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.progress import Progress

    from localevents import Event

__all__ = ("CACHE_DIR", "DAYS", "Dataset", "events_file", "window")

CACHE_DIR = RESULTS_DIR / "cache"
DAYS = 30
TILE_EVENTS = 2 * 122_880  # two DuckDB row groups: every tile fills whole row groups
WRITE_BATCH = 1000
_BUILDER = "tiles-v4"


def _us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def window(today: datetime | None = None) -> tuple[datetime, datetime]:
    """``[since, until)``: the 30 days before the first day of this month, UTC (fixed for a
    month, so a cached file stays valid, and well inside the default filter's 180 days)."""
    now = today or datetime.now(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first - timedelta(days=DAYS), first


class Dataset(msgspec.Struct, frozen=True, kw_only=True):
    """A built events file: where, how many events, over which window, and whether this
    run built it (and how long that took) or found it cached."""

    path: Path
    count: int
    since: datetime
    until: datetime
    tiles: int
    cached: bool
    build_seconds: float | None = None

    @property
    def bytes_on_disk(self) -> int:
        """The file's size."""
        return self.path.stat().st_size


def _schema_ddl() -> str:
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name:
        store = open_store(str(Path(name) / "schema.duckdb"))
        try:
            found = store.fetchall(
                "SELECT sql FROM duckdb_tables() WHERE table_name = 'events' ORDER BY sql"
            )
        finally:
            release(store)
    return "\n".join(row[0] for row in found)


def _key(count: int, seed: int, since: datetime) -> str:
    digest = hashlib.sha256()
    for part in (_BUILDER, SAMPLES_SOURCE, str(count), str(seed), since.isoformat()):
        digest.update(part.encode() + b"\0")
    probe = sample_events(100, seed=seed, start=since, span=timedelta(days=1))
    digest.update(msgspec.json.encode(probe))
    digest.update(_schema_ddl().encode())
    return digest.hexdigest()[:12]


def _tiles(count: int) -> int:
    return math.ceil(count / TILE_EVENTS)


def events_file(count: int, seed: int, progress: Progress | None = None) -> Dataset:
    """The cached file of ``count`` standard events, built first if need be."""
    since, until = window()
    tiles = _tiles(count)
    key = _key(count, seed, since)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"events-{count}-seed{seed}-{key}.duckdb"
    found = Dataset(path=path, count=count, since=since, until=until, tiles=tiles, cached=True)
    if path.exists():
        return found
    for stale in CACHE_DIR.glob(f"events-{count}-seed{seed}-*.duckdb*"):
        stale.unlink()
    partial = path.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}.wal")):
        leftover.unlink(missing_ok=True)
    with Timer() as timer:
        _build(partial, found, seed=seed, progress=progress)
    partial.rename(path)
    return msgspec.structs.replace(found, cached=False, build_seconds=timer.elapsed)


def _write_pool(path: Path, events: Sequence[Event], progress: Progress | None) -> None:
    """The pool through the store's write path, as ingest would store it."""
    task = (
        None
        if progress is None
        else progress.add_task("pool: store.write_events", total=len(events))
    )
    store = open_store(str(path))
    try:
        for start in range(0, len(events), WRITE_BATCH):
            store.write_events(as_received(events[start : start + WRITE_BATCH]))
            if progress is not None and task is not None:
                progress.advance(task, WRITE_BATCH)
    finally:
        release(store)


# The pool in occurred order, numbered j, with the number of the event each one follows
# (when that event is in the pool), and the low 80 bits of its ids: version 7, 12 random
# bits, variant 10, 62 random bits, from hashes of j and the seed (a build is reproducible).
_POOL_SQL = """
CREATE TEMP TABLE pool AS
WITH numbered AS (
    SELECT row_number() OVER (ORDER BY occurred, id) - 1 AS j, *
    FROM pool_file.events
),
low AS (
    SELECT j, (7::UHUGEINT << 76) | ((hash(j, $seed, 'a') & 4095)::UHUGEINT << 64)
              | (2::UHUGEINT << 62) | (hash(j, $seed, 'b') & 4611686018427387903)::UHUGEINT
              AS bits
    FROM numbered
)
SELECT n.*, epoch_us(n.occurred) AS o, l.bits, f.j AS follows_j,
       epoch_us(f.occurred) AS follows_o, fl.bits AS follows_bits
FROM numbered n
JOIN low l ON l.j = n.j
LEFT JOIN numbered f ON f.id = n.follows
LEFT JOIN low fl ON fl.j = f.j
ORDER BY n.j
"""

# One tile: the pool shifted by $shift microseconds, each id the UUIDv7 of the shifted
# millisecond over the pool row's low bits (unique: a row's millisecond differs per tile),
# in occurred order (the pool table is stored in that order and DuckDB keeps insertion
# order). ``received`` is 1-50 ms after ``occurred``.
_TILE_SQL = """
INSERT INTO events
SELECT
    ((((o + $shift) // 1000)::UHUGEINT << 80) | bits)::UUID,
    make_timestamptz(o + $shift),
    event, resource_id, resource, related, related_ids, related_roles, payload,
    CASE WHEN follows_j IS NULL THEN follows
         ELSE ((((follows_o + $shift) // 1000)::UHUGEINT << 80) | follows_bits)::UUID END,
    make_timestamptz(o + $shift + 1000 * (1 + j % 50)),
    resource_key, related_key, $first + j
FROM pool
"""


def _build(path: Path, plan: Dataset, *, seed: int, progress: Progress | None) -> None:
    """Fill ``path`` as the module docstring says, for ``plan``'s count and window."""
    count, since, until, tiles = plan.count, plan.since, plan.until, plan.tiles
    per_tile = min(count, TILE_EVENTS)
    tile_span = (until - since) * per_tile / count
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name:
        pool_path = Path(name) / "pool.duckdb"
        with console.status(f"generating a pool of {per_tile:,} events"):
            pool = sample_events(per_tile, seed=seed, start=since, span=tile_span)
        _write_pool(pool_path, pool, progress)
        del pool
        release(open_store(str(path)))  # the store creates the schema of a real events file
        with duckdb.connect(str(path)) as con:
            con.execute("SET TimeZone = 'UTC'")
            # One checkpoint at the end: intermediate ones rewrite row groups and leave
            # their old blocks free in the file (measured: a third of a 10M file).
            con.execute("SET checkpoint_threshold = '1TB'")
            con.execute(f"ATTACH '{pool_path}' AS pool_file (READ_ONLY)")
            con.execute(_POOL_SQL, {"seed": seed})
            con.execute("DETACH pool_file")
            task = None if progress is None else progress.add_task("tiles", total=tiles)
            span_us = (until - since) // timedelta(microseconds=1)
            tile_us = tile_span // timedelta(microseconds=1)
            for tile in range(tiles):
                limit = min(per_tile, count - tile * per_tile)
                shift = tile * tile_us
                sql = _TILE_SQL
                if limit < per_tile:  # a part of the pool: end it at ``until``, not beyond
                    last = con.execute("SELECT o FROM pool WHERE j = ?", [limit - 1]).fetchall()
                    shift = min(shift, span_us - (last[0][0] - _us(since)) - 1)
                    sql = f"{_TILE_SQL} LIMIT {limit}"
                con.execute(sql, {"shift": shift, "first": tile * per_tile})
                if progress is not None and task is not None:
                    progress.advance(task)
            con.execute("CHECKPOINT")
            stored = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    if stored != count:
        raise RuntimeError(f"built {path} with {stored} events, not {count}")
