"""Does retention keep the events file from growing? File sizes over ingest/delete cycles.

Each cycle ingests one day of standard events through the store's write path (batches of
1,000, as HTTP ingest does), then runs a retention pass that deletes every event older than
the day before, so two days are retained. Two ways are compared on fresh files:

* ``delete only``: the DELETE alone; DuckDB folds the WAL into the file on its own once the
  WAL passes the store's checkpoint threshold (64 MB);
* ``localevents``: ``delete_expired``, the retention pass the server runs (DELETE, then
  CHECKPOINT, which vacuums the deleted rows so their blocks are reused).

After every cycle it records the file and WAL sizes and DuckDB's used and free blocks.
While each pass runs, a writer thread keeps ingesting batches of 100: the writes that
overlapped the pass and the slowest of them, beside the median write outside it, show
whether ingest waits for retention (figures here, never test assertions).

    uv run python -m benchmarks.retention_space [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import sample_events
from localevents.storage import open_store, release
from localevents.storage._retention import delete_expired
from localevents.storage._rows import Row, Stamp, encoded_row

NAME = "retention_space"
RESULTS = Path(__file__).parent / "results"
BATCH = 1000
START = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _rows(count: int, day: int, seed: int) -> list[Row]:
    stamp = Stamp.of(datetime.now(UTC))
    events = sample_events(count, seed=seed + day, start=START + day * DAY, span=DAY)
    return [encoded_row(event, stamp)[0] for event in events]


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class _Writer(threading.Thread):
    """Ingests batches of 100 (occurring in the newest retained day) until stopped,
    recording when each write started and ended."""

    def __init__(self, store: Any, rows: list[Row]) -> None:
        super().__init__(daemon=True)
        self.store, self.rows = store, rows
        self.writes: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.started = threading.Event()

    def run(self) -> None:
        for start in range(0, len(self.rows), 100):
            if self.stop.is_set():
                return
            began = time.perf_counter()
            self.store.write_rows(self.rows[start : start + 100])
            self.writes.append((began, time.perf_counter()))
            if len(self.writes) == 5:
                self.started.set()
        self.started.set()


def _retention_pass(store: Any, mode: str, before: datetime) -> int:
    if mode == "localevents":
        return delete_expired(store, before)
    return int(store.fetchall("DELETE FROM events WHERE occurred < ?", [before])[0][0])


def _cycle(
    store: Any, path: Path, day: int, mode: str, *, rows: list[Row], live: list[Row]
) -> dict[str, Any]:
    for start in range(0, len(rows), BATCH):
        store.write_rows(rows[start : start + BATCH])
    writer = _Writer(store, live)
    writer.start()
    writer.started.wait()
    began = time.perf_counter()
    deleted = _retention_pass(store, mode, START + (day - 1) * DAY)
    ended = time.perf_counter()
    writer.stop.set()
    writer.join()
    overlapping = [b - a for a, b in writer.writes if b > began and a < ended]
    others = sorted(b - a for a, b in writer.writes if b <= began or a >= ended)
    used, free = store.fetchall("SELECT used_blocks, free_blocks FROM pragma_database_size()")[0]
    return {
        "mode": mode,
        "cycle": day + 1,
        "retained": store.fetchall("SELECT count(*) FROM events")[0][0],
        "deleted": deleted,
        "file_mb": round(_size(path) / 2**20, 2),
        "wal_mb": round(_size(path.with_name(path.name + ".wal")) / 2**20, 2),
        "used_blocks": int(used),
        "free_blocks": int(free),
        "pass_s": round(ended - began, 3),
        "writes_during_pass": len(overlapping),
        "max_write_ms_during": round(max(overlapping, default=0.0) * 1000, 1),
        "median_write_ms_else": round(others[len(others) // 2] * 1000, 1) if others else 0.0,
    }


def _run(mode: str, cycles: int, per_cycle: int, seed: int, folder: Path) -> list[dict[str, Any]]:
    path = folder / f"{mode.replace(' ', '-')}.duckdb"
    store = open_store(str(path))
    results = []
    try:
        for day in range(cycles):
            rows = _rows(per_cycle, day, seed)
            live = _rows(per_cycle // 10, day, seed + 10_000)
            results.append(_cycle(store, path, day, mode, rows=rows, live=live))
            print(_line(results[-1]), flush=True)
    finally:
        release(store)
    return results


_COLUMNS = ("mode", "cycle", "retained", "deleted", "file_mb", "wal_mb", "used_blocks")
_MORE = (
    "free_blocks",
    "pass_s",
    "writes_during_pass",
    "max_write_ms_during",
    "median_write_ms_else",
)


def _line(row: dict[str, Any]) -> str:
    return "  ".join(f"{row[c]!s:>12}" for c in (*_COLUMNS, *_MORE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cycles, per_cycle = (6, 20_000) if args.quick else (20, 100_000)
    print("  ".join(f"{c:>12}" for c in (*_COLUMNS, *_MORE)))
    with tempfile.TemporaryDirectory(prefix="localevents-retention-") as folder:
        rows: list[dict[str, Any]] = []
        for mode in ("delete only", "localevents"):
            rows += _run(mode, cycles, per_cycle, args.seed, Path(folder))
    document = {
        "benchmark": NAME,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {"cycles": cycles, "events_per_cycle": per_cycle, "retained_days": 2},
        "cycles": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{NAME}-{stamp}.json"
    out.write_text(json.dumps(document, indent=2))
    print(f"JSON: {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
