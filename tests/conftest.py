"""Shared fixtures: every async test runs on asyncio and on trio, and no test reads the
developer's LOCALEVENTS_* environment or writes to their home folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from localevents._settings import Settings, temporary_settings
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents.storage import EventStore


def pytest_configure(config: pytest.Config) -> None:
    """Have the Python processes the tests start (servers, commands, notebook kernels, and
    the test workers themselves) share compiled bytecode, in pytest's cache folder rather
    than beside the sources. Where ``PYTHONDONTWRITEBYTECODE`` is set and the venv holds
    no bytecode (uv installs none by default), every one of them compiled localevents and
    its dependencies again: about 0.65 s of a test server's 1.25 s start."""
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    folder = (
        Path(tempfile.gettempdir(), "localevents-tests-bytecode")
        if cache is None
        else cache.mkdir("bytecode")
    )
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per anyio backend."""
    return str(request.param)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[Settings]:
    """Default settings with LOCALEVENTS_HOME in the test's temporary folder."""
    with temporary_settings(Settings(home=str(tmp_path / "home"))) as settings:
        yield settings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """An empty events file, open (a module may define its own ``store``)."""
    opened = open_store(str(tmp_path / "events.duckdb"))
    try:
        yield opened
    finally:
        release(opened)
