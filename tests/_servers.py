"""Real server processes for tests: ``localevents serve`` (or any command) on a free port.

A test that needs a real uvicorn, a crash or a second process uses :func:`serve`::

    with serve(tmp_path / "events.duckdb") as server:
        httpx.get(f"{server.url}/health")  # server.url is http://127.0.0.1:<port>/api
        server.kill()                      # SIGKILL: no graceful shutdown

The process's stdout and stderr go to a log file (a pipe nobody reads would fill up and stall
the server); :meth:`ServerProcess.output` reads it, and a server that dies while starting
raises with that output in the message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = (
    "ServerProcess",
    "clean_environ",
    "free_port",
    "localevents_command",
    "serve",
    "spawn",
    "taken_port",
    "uvicorn_command",
)

STARTUP_DEADLINE = 30.0
"""Seconds a server may take to answer its health probe (generous: CI machines are slow)."""

TERMINATE_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a test ends with the server still running."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port that something listens on for the block (and never answers)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port: int = taken.getsockname()[1]
        yield port


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``LOCALEVENTS_*`` setting, plus ``extra``.

    A developer's own settings (an API key, a database) must not leak into a test server.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALEVENTS_")}
    env.update(extra or {})
    return env


def uvicorn_command(app: str, port: int, *args: str) -> list[str]:
    """The ``uvicorn`` command line serving ``app`` (``module:attribute``, the module in this
    tests folder) on ``port``, with extra uvicorn ``args``."""
    tests = str(Path(__file__).parent)
    return [sys.executable, "-m", "uvicorn", "--app-dir", tests, app, "--port", str(port), *args]


def localevents_command(port: int, database: str | os.PathLike[str], *args: str) -> list[str]:
    """The ``localevents serve`` command line for ``port`` and ``database``."""
    return [
        sys.executable,
        "-m",
        "localevents",
        "serve",
        "--port",
        str(port),
        "--database",
        str(database),
        *args,
    ]


class ServerProcess:
    """A running server: its base URL (ending in ``/api``), its process and its output."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}/api"
        self._log = log
        self._final_output: str | None = None

    def __str__(self) -> str:
        return self.url

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far (all of it once stopped)."""
        if self._final_output is not None:
            return self._final_output
        return self._log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the server and reap it: no shutdown code runs, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes too long."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TERMINATE_GRACE)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_until_healthy(self, deadline: float = STARTUP_DEADLINE) -> None:
        """Poll ``GET /api/health`` until it answers; raise with the output if the server
        exits or the deadline passes first."""
        give_up = time.monotonic() + deadline
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self.process.returncode} while starting:\n"
                        f"{self.output()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                if time.monotonic() > give_up:
                    raise RuntimeError(
                        f"the server did not answer {self.url}/health within {deadline} s:\n"
                        f"{self.output()}"
                    )
                time.sleep(0.05)


@contextlib.contextmanager
def spawn(
    command: Sequence[str], port: int, *, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """Run ``command`` (a server that will listen on ``port``), wait until it is healthy,
    and stop it when the block ends (SIGTERM, then SIGKILL)."""
    with tempfile.TemporaryDirectory(prefix="localevents-server-") as folder:
        log = Path(folder) / "output.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                env=clean_environ(env),
            )
        server = ServerProcess(process, port, log)
        try:
            server.wait_until_healthy()
            yield server
        finally:
            server.stop()
            server._final_output = server.output()  # the log folder is about to go


@contextlib.contextmanager
def serve(
    database: str | os.PathLike[str],
    *args: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """``localevents serve`` over ``database`` on ``port`` (default: a free loopback port),
    with extra CLI ``args`` such as ``--api-key``; see :func:`spawn`. Pass the ``port`` of a
    killed server to restart it where its clients will look for it."""
    port = free_port() if port is None else port
    with spawn(localevents_command(port, database, *args), port, env=env) as server:
        yield server
