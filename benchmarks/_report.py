"""Figures, targets and the report every benchmark prints and saves.

A :class:`Figure` is one measured quantity with every sample of it (one per repeated run,
or per request, per segment of a long run: ``per`` says which), summarised as its median
and spread (quartiles and range). It may name a ``baseline``: the figure it is compared
with, usually the physical limit measured in the same run (raw msgspec decode, raw DuckDB
append, a no-op request, the raw WebSocket rate), and carry targets from the issue
(:class:`Target`: on its median, a percentile, or its ratio to the baseline).

:class:`Report` prints the figures as rich tables, one per group, then every target with
"met" or "NOT MET", and writes the whole run as JSON (machine, versions, date, parameters,
figures with their samples) to ``benchmarks/results/<name>-<UTC timestamp>.json``.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = (
    "RESULTS_DIR",
    "Figure",
    "Report",
    "Summary",
    "Target",
    "console",
    "load_average",
    "machine_info",
    "percentile",
    "summarize",
    "versions",
)

RESULTS_DIR = Path(__file__).parent / "results"

console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
"""Where tables and progress bars go (stdout; 132 columns wide when it is not a terminal)."""


# -- statistics ------------------------------------------------------------------------------


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """The median and spread of a figure's samples."""

    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float


def summarize(samples: Sequence[float]) -> Summary:
    """Median, quartiles (inclusive method: a single sample is its own quartiles) and range."""
    if not samples:
        return Summary(n=0, median=math.nan, q1=math.nan, q3=math.nan, min=math.nan, max=math.nan)
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Summary(
        n=len(ordered),
        median=statistics.median(ordered),
        q1=q1,
        q3=q3,
        min=ordered[0],
        max=ordered[-1],
    )


# -- figures and targets ---------------------------------------------------------------------


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A promise from the issue, on the right side of ``limit``: the figure's median
    (``on="median"``), a percentile of its samples (``"p99"``), or the ratio of its median
    to its baseline's median (``"ratio"``)."""

    limit: float
    on: str = "median"
    higher_is_better: bool = True

    def describe(self, unit: str) -> str:
        """``>= 100,000 events/s``, ``<= 2x``, ``p99 <= 25 ms``..."""
        sign = ">=" if self.higher_is_better else "<="
        if self.on == "ratio":
            return f"{sign} {_number(self.limit)}x"
        prefix = "" if self.on == "median" else f"{self.on} "
        return f"{prefix}{sign} {_number(self.limit)} {unit}"

    def met_by(self, measured: float) -> bool:
        """Whether ``measured`` keeps the promise (NaN never does)."""
        if math.isnan(measured):
            return False
        return measured >= self.limit if self.higher_is_better else measured <= self.limit


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Figure(msgspec.Struct, kw_only=True):
    """One measured quantity and all its samples (see the module docstring)."""

    key: str
    group: str
    name: str
    unit: str
    samples: list[float]
    per: str = "run"
    higher_is_better: bool = True
    baseline: str | None = None
    targets: list[Target] = []
    detail: dict[str, Any] = {}
    short: str | None = None  # how the "vs" column names this figure when it is a baseline

    @property
    def summary(self) -> Summary:
        """Median and spread of the samples."""
        return summarize(self.samples)


class _Evaluated(msgspec.Struct, frozen=True, kw_only=True):
    figure: str
    name: str
    required: str
    measured: float
    unit: str
    met: bool


# -- context ---------------------------------------------------------------------------------

_PACKAGES = (
    "localevents",
    "duckdb",
    "msgspec",
    "litestar",
    "httpx",
    "httpx-ws",
    "uvicorn",
    "anyio",
    "rich",
)


def _git_commit() -> str | None:
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the (shared) machine is."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine a run happened on, and how busy it was when the run began."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def _settings_in_force() -> dict[str, str]:
    """The ``LOCALEVENTS_*`` variables the run was given (e.g. the database's threads)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("LOCALEVENTS_")}


def versions() -> dict[str, str | None]:
    """Python, the packages that matter here, and the localevents git commit."""
    found: dict[str, str | None] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    for package in _PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["git_commit"] = _git_commit()
    return found


# -- formatting ------------------------------------------------------------------------------


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _spread(figure: Figure) -> str:
    summary = figure.summary
    if summary.n == 0:
        return str(figure.detail.get("not_run", "not measured"))
    if summary.n <= 1:
        return ""
    if summary.n < 4:
        return f"{_number(summary.min)} - {_number(summary.max)}"
    return f"{_number(summary.q1)} - {_number(summary.q3)}"


def _met(met: bool) -> str:
    return "[green]met[/]" if met else "[bold red]NOT MET[/]"


# -- the report ------------------------------------------------------------------------------


class Report:
    """Collects a benchmark's figures; :meth:`finish` prints and saves them."""

    def __init__(self, name: str, params: Mapping[str, Any]) -> None:
        self.name = name
        self.params: dict[str, Any] = dict(params)
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.started = datetime.now(UTC)
        self.machine = machine_info()

    def add(self, figure: Figure) -> Figure:
        """Record a figure (keys are unique within a report)."""
        if any(f.key == figure.key for f in self.figures):
            raise ValueError(f"{self.name}: a second figure {figure.key!r}")
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        """A line printed under the tables and kept in the JSON."""
        self.notes.append(text)

    def _baseline(self, figure: Figure) -> Figure | None:
        if figure.baseline is None:
            return None
        return next((f for f in self.figures if f.key == figure.baseline), None)

    def ratio(self, figure: Figure) -> float | None:
        """The figure's median over its baseline's median, if it has one."""
        base = self._baseline(figure)
        if base is None:
            return None
        below = base.summary.median
        return figure.summary.median / below if below else math.nan

    def evaluated(self) -> list[_Evaluated]:
        """Every target of every figure, with the measured value and whether it is met."""
        found = []
        for figure in self.figures:
            for target in figure.targets:
                measured = self._measured(figure, target)
                found.append(
                    _Evaluated(
                        figure=figure.key,
                        name=f"{figure.group}: {figure.name}",
                        required=target.describe(figure.unit),
                        measured=measured,
                        unit="x" if target.on == "ratio" else figure.unit,
                        met=target.met_by(measured),
                    )
                )
        return found

    def _measured(self, figure: Figure, target: Target) -> float:
        if target.on == "ratio":
            ratio = self.ratio(figure)
            return math.nan if ratio is None else ratio
        if target.on.startswith("p"):
            return percentile(figure.samples, float(target.on[1:]))
        return figure.summary.median

    def document(self) -> dict[str, Any]:
        """The JSON form of the run."""
        figures = []
        for figure in self.figures:
            ratio = self.ratio(figure)
            figures.append(
                {
                    "key": figure.key,
                    "group": figure.group,
                    "name": figure.name,
                    "unit": figure.unit,
                    "per": figure.per,
                    "higher_is_better": figure.higher_is_better,
                    **msgspec.structs.asdict(figure.summary),
                    "baseline": figure.baseline,
                    "vs_baseline": None if ratio is None else round(ratio, 4),
                    "targets": [t.describe(figure.unit) for t in figure.targets],
                    "detail": figure.detail,
                    "samples": figure.samples,
                }
            )
        return {
            "benchmark": self.name,
            "date": self.started.isoformat(timespec="seconds"),
            "seconds": round((datetime.now(UTC) - self.started).total_seconds(), 1),
            "params": self.params,
            "machine": {**self.machine, "load_average_at_end": load_average()},
            "versions": versions(),
            "settings": _settings_in_force(),
            "figures": figures,
            "targets": [msgspec.structs.asdict(t) for t in self.evaluated()],
            "notes": self.notes,
        }

    def print_tables(self) -> None:
        """One rich table per group, then the targets."""
        groups: dict[str, list[Figure]] = {}
        for figure in self.figures:
            groups.setdefault(figure.group, []).append(figure)
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        console.rule(f"[bold]{self.name}[/] ({params})")
        for group, figures in groups.items():
            table = Table(title=group, title_justify="left", expand=False)
            table.add_column("figure")
            table.add_column("n", justify="right")
            table.add_column("median", justify="right")
            table.add_column("spread (IQR or range)", justify="right")
            table.add_column("unit")
            table.add_column("vs", justify="right")
            for figure in figures:
                summary, ratio, base = figure.summary, self.ratio(figure), self._baseline(figure)
                table.add_row(
                    figure.name,
                    f"{summary.n} {figure.per}s" if summary.n != 1 else f"1 {figure.per}",
                    _number(summary.median),
                    _spread(figure),
                    figure.unit,
                    ""
                    if ratio is None or base is None
                    else f"{ratio:.2f}x {base.short or base.key}",
                )
            console.print(table)
        evaluated = self.evaluated()
        if evaluated:
            table = Table(title="targets (issue 5)", title_justify="left")
            for column in ("target", "required", "measured", ""):
                table.add_column(column, justify="right" if column == "measured" else "left")
            for target in evaluated:
                measured = f"{_number(target.measured)} {target.unit}"
                table.add_row(target.name, target.required, measured, _met(target.met))
            console.print(table)
        for note in self.notes:
            console.print(f"[dim]note:[/] {note}")

    def finish(self, out: Path | None = None) -> Path:
        """Print the tables and write the JSON (into ``out``, default ``RESULTS_DIR``)."""
        self.print_tables()
        directory = out or RESULTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}-{self.started:%Y%m%dT%H%M%SZ}.json"
        encoded = msgspec.json.format(msgspec.json.encode(self.document()), indent=2)
        path.write_bytes(encoded + b"\n")
        print(f"saved {path}", file=sys.stderr)
        return path
