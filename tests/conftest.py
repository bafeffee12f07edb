"""Shared fixtures: every async test runs on asyncio and on trio, and no test reads the
developer's LOCALEVENTS_* environment or writes to their home folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from localevents._settings import Settings, temporary_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per anyio backend."""
    return str(request.param)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[Settings]:
    """Default settings with LOCALEVENTS_HOME in the test's temporary folder."""
    with temporary_settings(Settings(home=str(tmp_path / "home"))) as settings:
        yield settings
