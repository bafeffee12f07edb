"""The benchmark suite keeps working: a quick run of two workloads writes complete reports.

Figures are not checked (speed lives in benchmarks/, never in tests); the shape of what a
run leaves behind is: every figure with its median and spread, the machine and versions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_quick_suite_run_writes_a_complete_report_for_every_workload() -> None:
    results = ROOT / "benchmarks" / "results"
    before = set(results.glob("suite-*"))
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "sustained,startup"],
        cwd=ROOT,
        env={**os.environ, "LOCALEVENTS_DATABASE_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    [suite_dir] = set(results.glob("suite-*")) - before
    assert (suite_dir / "suite.json").is_file()
    reports = {path.name.split("-")[0]: path for path in suite_dir.glob("*-*.json")}
    assert set(reports) == {"sustained", "startup"}
    for name, path in reports.items():
        report = msgspec.json.decode(path.read_bytes())
        assert report["benchmark"] == name
        assert report["machine"]["cpu_count"] >= 1
        assert {"python", "duckdb", "localevents"} <= set(report["versions"])
        assert report["settings"]["LOCALEVENTS_DATABASE_THREADS"] == "1"
        assert report["figures"], f"{name} measured nothing"
        if name == "sustained":  # flatness is judged against a fresh file, segment by segment
            keys = {figure["key"] for figure in report["figures"]}
            assert {"first_vs_fresh", "second_vs_fresh"} <= keys
        for figure in report["figures"]:
            assert figure["n"] >= 1
            assert figure["min"] <= figure["median"] <= figure["max"], figure["key"]
            assert len(figure["samples"]) == figure["n"]


def test_the_bare_fan_out_reads_every_round_from_every_socket() -> None:
    """The limit beside every-event delivery: each round ends only once the reader process
    has read the whole payload from every connection (payloads larger than a socket's
    buffers included), and the warm-up round is not reported."""
    from benchmarks._fanout_floor import measure

    rounds = measure(b"\x81\x7e\x10\x00" + b"x" * 4096 * 64, connections=5, rounds=3)
    assert len(rounds) == 3
    assert all(r.wall_s > 0 and r.reader_cpu_s >= 0 for r in rounds)
