"""The whole suite: every benchmark in turn, then every target in one table.

    uv run python -m benchmarks [--quick] [--only NAME,...] [--skip NAME,...] [--seed N]

Each benchmark runs in a fresh subprocess (``python -m benchmarks.<name>``: nothing one
leaves behind, imports, caches or open files, reaches the next) and writes its JSON into
``benchmarks/results/suite-<UTC timestamp>/``; the suite then prints every target with its
measured value and writes ``suite.json`` beside them. A benchmark that fails is reported
and the suite goes on; the exit status is 1 if any failed. An unmet target is a finding,
not a failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from rich.table import Table

from benchmarks._report import RESULTS_DIR, console, load_average, machine_info, versions

if TYPE_CHECKING:
    from collections.abc import Sequence

BENCHMARKS = (
    "ingest_http",
    "ingest_ws",
    "subscriber_latency",
    "sustained",
    "queries",  # builds the cached 1M and 10M files that footprint and startup reuse
    "footprint",
    "startup",
)


class Ran(msgspec.Struct, kw_only=True):
    """One benchmark's run: how long, how it ended, and its JSON (if it wrote one)."""

    name: str
    seconds: float
    returncode: int
    result: str | None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a CI smoke run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated events")
    names = ",".join(BENCHMARKS)
    parser.add_argument("--only", default=names, help=f"comma-separated, from {names}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    args = parser.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n and n not in args.skip.split(",")]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {names}")
    args.chosen = [n for n in BENCHMARKS if n in chosen]
    return args


def _run(name: str, out: Path, quick: bool, seed: int) -> Ran:
    command = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out), "--seed", str(seed)]
    if quick:
        command.append("--quick")
    before = set(out.glob(f"{name}-*.json"))
    started = time.perf_counter()
    returncode = subprocess.run(command, check=False).returncode
    seconds = time.perf_counter() - started
    written = sorted(set(out.glob(f"{name}-*.json")) - before)
    result = str(written[-1]) if written and returncode == 0 else None
    return Ran(name=name, seconds=seconds, returncode=returncode, result=result)


def _targets(runs: Sequence[Ran]) -> list[dict[str, Any]]:
    found = []
    for ran in runs:
        if ran.result is None:
            continue
        document = msgspec.json.decode(Path(ran.result).read_bytes())
        found += [{"benchmark": ran.name, **target} for target in document["targets"]]
    return found


def _print_summary(runs: Sequence[Ran], targets: Sequence[dict[str, Any]], total: float) -> None:
    table = Table(title="every target (issue 5), this run", title_justify="left")
    for column in ("benchmark", "target", "required", "measured", ""):
        table.add_column(column, justify="right" if column == "measured" else "left")
    for target in targets:
        measured = target["measured"]
        shown = "nan" if measured is None else f"{measured:,.3g}"
        if measured is not None and abs(measured) >= 1000:
            shown = f"{measured:,.0f}"
        met = "[green]met[/]" if target["met"] else "[bold red]NOT MET[/]"
        unit = target["unit"]
        table.add_row(
            target["benchmark"], target["name"], target["required"], f"{shown} {unit}", met
        )
    console.print(table)
    timing = Table(title="benchmarks", title_justify="left")
    for column in ("benchmark", "seconds", "status"):
        timing.add_column(column, justify="right" if column == "seconds" else "left")
    for ran in runs:
        status = "ok" if ran.returncode == 0 else f"[bold red]FAILED ({ran.returncode})[/]"
        timing.add_row(ran.name, f"{ran.seconds:.0f}", status)
    timing.add_row("[bold]total[/]", f"[bold]{total:.0f}[/]", "")
    console.print(timing)
    console.print(f"load average (1, 5, 15 min) now: {load_average()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks, then print and save the summary."""
    args = _parse(argv)
    now = datetime.now(UTC)
    out = RESULTS_DIR / f"suite-{now:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    started = time.perf_counter()
    runs = []
    for name in args.chosen:
        console.rule(f"[bold]benchmarks.{name}[/]")
        runs.append(_run(name, out, args.quick, args.seed))
    total = time.perf_counter() - started
    targets = _targets(runs)
    console.rule("[bold]suite[/]")
    _print_summary(runs, targets, total)
    document = {
        "suite": "localevents benchmarks",
        "date": now.isoformat(timespec="seconds"),
        "quick": args.quick,
        "seed": args.seed,
        "seconds": round(total, 1),
        "machine": {**machine, "load_average_at_end": load_average()},
        "versions": versions(),
        "benchmarks": [msgspec.structs.asdict(ran) for ran in runs],
        "targets": targets,
    }
    path = out / "suite.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    print(f"saved {path}", file=sys.stderr)
    return 0 if all(ran.returncode == 0 for ran in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
