"""Running the ``localevents`` command line in the test process, as a user's shell would."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from localevents.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from _servers import ServerProcess

__all__ = ("against", "run")


def run(*args: str | Path, stdin: bytes | None = None) -> Result:
    """The CLI in this process, without the developer's LOCALEVENTS_* environment, reading
    ``stdin`` as its standard input."""
    runner = CliRunner(env={name: None for name in os.environ if name.startswith("LOCALEVENTS_")})
    return runner.invoke(main, [str(arg) for arg in args], input=stdin)


def against(server: ServerProcess, *args: str | Path, key: str) -> Result:
    """The CLI talking to ``server`` with the API key ``key``."""
    return run(*args, "--api-url", server.url, "--api-key", key)
