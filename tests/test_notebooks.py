"""The analysis notebooks in notebooks/ run from top to bottom on a generated events file, show
no warnings, draw their plots, and are committed without outputs.

Each notebook runs in a fresh kernel of this venv's Python (a kernelspec written for the test,
so a python3 kernel installed elsewhere on the machine cannot stand in), in a temporary
folder, with NOTEBOOK_EVENTS_DATABASE pointing at a copy of a sample built once per session.
Matplotlib uses ipykernel's inline backend, which draws every figure with Agg into a PNG: a
plot that fails to draw fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from localevents._settings import Settings, temporary_settings
from localevents.samples import write_sample_database

NOTEBOOK_FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_FOLDER.glob("*.ipynb"))
SAMPLE_EVENTS = 20_000
CELL_TIMEOUT = 90  # seconds per cell: generous for a loaded machine, never reached normally


@pytest.fixture(scope="session")
def sample_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated events file, written once per session (notebooks get copies)."""
    folder = tmp_path_factory.mktemp("notebook-sample")
    with temporary_settings(Settings(home=str(folder / "home"))):
        write_sample_database(folder / "sample.duckdb", SAMPLE_EVENTS, seed=7)
    return folder / "sample.duckdb"


@pytest.fixture
def events_file(sample_database: Path, tmp_path: Path) -> Path:
    """This test's own copy of the sample (notebooks may add to the file they are given)."""
    copy = tmp_path / "events.duckdb"
    shutil.copyfile(sample_database, copy)
    return copy


def kernel_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The kernel's environment: this process's, minus anything that would point a notebook
    at the developer's own store, data or plotting backend, plus ``variables``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LOCALEVENTS_", "NOTEBOOK_EVENTS_")) and name != "MPLBACKEND"
    }
    env |= {"LOCALEVENTS_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path), **variables}
    return env


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``python3`` the kernel of this interpreter (the project's venv): a kernelspec in
    a folder that JUPYTER_PATH puts ahead of any other on the machine."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (localevents)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def run_notebook(path: Path, tmp_path: Path, **variables: str) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` with ``tmp_path`` as its working folder; a cell that
    raises fails the test (nbclient raises CellExecutionError naming it)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_environment(tmp_path, **variables))
    return notebook


def assert_ran_cleanly(notebook: nbformat.NotebookNode) -> None:
    """No cell showed an error or anything on stderr (warnings included), and every cell that
    makes a figure shows it."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    shown = [output for cell in code for output in cell.outputs]
    stderr = [output["text"] for output in shown if output.get("name") == "stderr"]
    assert stderr == [], f"a notebook cell wrote to stderr: {stderr}"
    assert [output for output in shown if output["output_type"] == "error"] == []
    for cell in code:
        if "plt.subplots(" in cell.source:
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"this cell drew no figure:\n{cell.source}"


@pytest.mark.slow  # a kernel process per notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.usefixtures("venv_kernel")
def test_notebook_runs_on_an_events_file(path: Path, events_file: Path, tmp_path: Path) -> None:
    """Every notebook runs top to bottom on an events file named by
    NOTEBOOK_EVENTS_DATABASE, with clean output and every plot drawn."""
    notebook = run_notebook(path, tmp_path, NOTEBOOK_EVENTS_DATABASE=str(events_file))
    assert_ran_cleanly(notebook)


def test_notebooks_are_committed_without_outputs() -> None:
    """Committed notebooks hold no outputs, execution counts or timings (clean diffs), run on
    the python3 kernel, and open with a markdown cell saying what they answer."""
    assert len(NOTEBOOKS) >= 3, f"expected the analysis notebooks in {NOTEBOOK_FOLDER}"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [c.outputs for c in code if c.outputs] == [], f"{path.name} has outputs"
        counts = [c.execution_count for c in code if c.execution_count is not None]
        assert counts == [], f"{path.name} has execution counts"
        timings = [c.metadata for c in code if "execution" in c.metadata]
        assert timings == [], f"{path.name} has execution timings in its cell metadata"
        assert notebook.metadata.kernelspec.name == "python3", path.name
        first = notebook.cells[0]
        assert first.cell_type == "markdown", f"{path.name} must open with a markdown cell"
        assert "What this answers" in first.source, path.name
