"""Ephemeral start-up: from ``import localevents`` to the first answered request.

Each run is a fresh ``python -c`` subprocess (nothing imported, nothing cached in the
process) that notes the time, imports localevents, opens ``ephemeral()`` on an events file
and reads the first page through ``get_client()``; it reports the seconds to the end of the
import and to the answer. Beside it, in the same way: the interpreter alone (``python -c
pass``, the floor every command pays) and importing the libraries localevents stands on
(duckdb, litestar, httpx, msgspec, anyio), the limit of any import of ours. Runs on a new
file and, in full mode, on a cached 1M-event file (see ``benchmarks._datasets``).

Bytecode is cached, as for an installed package: the subprocesses write and read it under a
temporary ``PYTHONPYCACHEPREFIX`` (even where ``PYTHONDONTWRITEBYTECODE`` is set, which
would otherwise time CPython compiling every library from source), after one unmeasured
warm-up run of each script.

    uv run python -m benchmarks.startup [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from rich.progress import Progress

from benchmarks._common import parse_args
from benchmarks._datasets import events_file
from benchmarks._report import Figure, Report, Target, console

if TYPE_CHECKING:
    from collections.abc import Sequence

NAME = "startup"
TARGET_S = 0.5  # ephemeral start-up (issue 5)
DEFAULT_RUNS, QUICK_RUNS = 5, 3
BIG_FILE = 1_000_000

_FIRST_ANSWER = """
import time
started = time.perf_counter()
import localevents
imported = time.perf_counter()
import anyio, json, sys

async def main():
    async with localevents.ephemeral(database=sys.argv[1]):
        async with localevents.get_client() as client:
            page = await client.read_events(limit=1)
    return page.total

total = anyio.run(main)
answered = time.perf_counter()
print(json.dumps({"import": imported - started, "answer": answered - started, "total": total}))
"""

_IMPORTS = """
import time
started = time.perf_counter()
import anyio, duckdb, httpx, litestar, msgspec
import json
print(json.dumps({"import": time.perf_counter() - started}))
"""


class Timing(msgspec.Struct):
    """What one subprocess reported, and its wall time as seen from here."""

    wall: float
    imported: float | None = None
    answered: float | None = None
    total: int | None = None


def _run(script: str, *args: str, pycache: str) -> Timing:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOCALEVENTS_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    environ["PYTHONPYCACHEPREFIX"] = pycache  # warm bytecode, kept out of the tree
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=120,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the start-up script failed:\n{done.stderr[-2000:]}")
    if not done.stdout.strip():
        return Timing(wall=wall)
    found = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return Timing(
        wall=wall,
        imported=found.get("import"),
        answered=found.get("answer"),
        total=found.get("total"),
    )


def _figure(key: str, group: str, name: str, values: list[float], **more: object) -> Figure:
    return Figure(
        key=key,
        group=group,
        name=name,
        unit="s",
        samples=values,
        higher_is_better=False,
        **more,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Time the subprocesses, print and save the report."""
    options = parse_args(__doc__, argv)
    runs = QUICK_RUNS if options.quick else DEFAULT_RUNS
    report = Report(
        NAME,
        {"quick": options.quick, "runs": runs, "python": sys.executable, "bytecode": "cached"},
    )
    floor = "the floor, in fresh subprocesses"
    with (
        Progress(console=console, transient=True) as progress,
        tempfile.TemporaryDirectory(prefix="localevents-bench-") as name,
    ):
        files = [("new", "a new events file", str(Path(name) / "new.duckdb"))]
        if not options.quick:
            data = events_file(BIG_FILE, options.seed, progress)
            files.append(("1M", f"the cached {BIG_FILE:,}-event file", str(data.path)))
        pycache = str(Path(name) / "pycache")
        # warm-up, unmeasured: compile and cache every module once
        _run(_FIRST_ANSWER, str(Path(name) / "warm.duckdb"), pycache=pycache)
        _run(_IMPORTS, pycache=pycache)
        task = progress.add_task("subprocesses", total=runs * (2 + len(files)))
        bare: list[Timing] = []
        imports: list[Timing] = []
        answers: dict[str, list[Timing]] = {key: [] for key, _, _ in files}
        for _ in range(runs):  # interleaved, so drift hits every figure alike
            bare.append(_run("pass", pycache=pycache))
            imports.append(_run(_IMPORTS, pycache=pycache))
            for key, _, path in files:
                answers[key].append(_run(_FIRST_ANSWER, path, pycache=pycache))
            progress.advance(task, 2 + len(files))
    report.add(_figure("python", floor, "python -c pass (wall)", [t.wall for t in bare]))
    report.add(
        _figure(
            "deps",
            floor,
            "import duckdb, litestar, httpx, msgspec, anyio",
            [t.imported or 0.0 for t in imports],
            short="dependencies",
        )
    )
    for key, label, _ in files:
        timings = answers[key]
        group = f"ephemeral start-up on {label}"
        report.add(
            _figure(
                f"{key}.import",
                group,
                "import localevents",
                [t.imported or 0.0 for t in timings],
                baseline="deps",
            )
        )
        report.add(
            _figure(
                f"{key}.answer",
                group,
                "import localevents to the first answered request",
                [t.answered or 0.0 for t in timings],
                targets=[Target(limit=TARGET_S, higher_is_better=False)],
                detail={
                    "process_wall_s": [round(t.wall, 3) for t in timings],
                    "events_in_file": timings[-1].total,
                },
            )
        )
    report.finish(options.out)


if __name__ == "__main__":
    main()
