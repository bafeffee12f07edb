"""Real servers in subprocesses, raw sockets to them, and their memory.

:class:`Server` runs ``python -m <module> ... --port P`` on a free loopback port and is ready
once ``GET /api/ready`` answers 200; :func:`localevents_server` is ``localevents serve`` over
an events file. :class:`RssSampler` records a process's resident memory while a block runs
(Linux ``/proc``), for "how much memory after ingest" and "is memory flat while streaming".
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import msgspec
from httpx_ws import aconnect_ws

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from httpx_ws import AsyncWebSocketSession

__all__ = (
    "RssSampler",
    "Server",
    "free_port",
    "localevents_server",
    "open_events_socket",
    "post_all",
    "rss_bytes",
    "stored_total",
    "wait_all_ready",
)

READY_TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``python -m <args> --port P`` on a free loopback port P, in a subprocess, ready once
    ``GET /api/ready`` answers 200 (see :func:`localevents_server`)."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", *args, "--port", str(self.port)]
        # The command line configures the server (no stray key or URL from our caller);
        # DuckDB's tuning (LOCALEVENTS_DATABASE_THREADS, ...) applies to it as to the run.
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LOCALEVENTS_") or k.startswith("LOCALEVENTS_DATABASE_")
        }
        self._log_path = log
        self._log = log.open("wb")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environ
        )

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._process.pid

    async def wait_ready(self, client: httpx.AsyncClient | None = None) -> None:
        """Poll ``/api/ready`` until it answers; raise with the server's log if it exits."""
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(httpx.AsyncClient(base_url=self.url))
            with anyio.fail_after(READY_TIMEOUT_S):
                for _ in iter(int, 1):  # until it answers (or the deadline)
                    if await self._answers(client):
                        return
                    await anyio.sleep(0.05)

    async def _answers(self, client: httpx.AsyncClient) -> bool:
        if self._process.poll() is not None:
            self._log.close()
            output = self._log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the server exited with {self._process.returncode}:\n{output}")
        try:
            response = await client.get(f"{self.url}/api/ready")
        except httpx.TransportError:
            return False
        return response.is_success

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly and releases the file), SIGKILL if stuck."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


async def wait_all_ready(servers: Sequence[Server]) -> None:
    """Wait until every server answers ``/api/ready``: one still starting takes CPU from
    the measurement of another (measured here: 20-35% off the first figure of a run)."""
    for server in servers:
        await server.wait_ready()


def localevents_server(path: str | Path, log: Path) -> Server:
    """``python -m localevents serve`` over the events file ``path``, logging warnings only."""
    return Server(["localevents", "serve", "--database", str(path), "--log-level", "warning"], log)


# -- memory ----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (``VmRSS``), or None where /proc is missing."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds while ``async with`` runs.

    ``samples`` holds ``(seconds since start, bytes, progress)``, where ``progress`` is
    whatever number the caller last stored in :attr:`progress` (events sent, say), so
    memory can be read against work done rather than time.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.progress = 0
        self.samples: list[tuple[float, int, int]] = []
        self._started = 0.0
        self._stack = contextlib.AsyncExitStack()

    def sample(self) -> int | None:
        """Take one sample now."""
        found = rss_bytes(self.pid)
        if found is not None:
            self.samples.append((time.perf_counter() - self._started, found, self.progress))
        return found

    async def _run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(self.interval)

    async def __aenter__(self) -> RssSampler:
        self._started = time.perf_counter()
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(self._run)
        self._stack.callback(tg.cancel_scope.cancel)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()
        self.sample()

    @property
    def peak(self) -> int:
        """The largest sample, in bytes."""
        return max((b for _, b, _ in self.samples), default=0)


# -- sockets ---------------------------------------------------------------------------------

_JSON = {"content-type": "application/json"}
_AUTH = '{"type":"auth","token":null}'
_AUTH_SUCCESS = {"type": "auth_success"}


@contextlib.asynccontextmanager
async def open_events_socket(
    url: str, client: httpx.AsyncClient | None = None
) -> AsyncIterator[AsyncWebSocketSession]:
    """A raw httpx-ws socket to ``url`` (``http://...``) after the ``prefect`` handshake
    (auth with a null token), with no keepalive pings of its own.

    Many sockets should share one ``client`` (with room for them all in its pool): each
    new client builds an SSL context, about 20 ms.
    """
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient())
        ws: AsyncWebSocketSession = await stack.enter_async_context(
            aconnect_ws(
                url,
                client,
                subprotocols=["prefect"],
                max_message_size_bytes=2**21,
                keepalive_ping_interval_seconds=None,
                keepalive_ping_timeout_seconds=None,
            )
        )
        await ws.send_text(_AUTH)
        answer = await ws.receive_text()
        if msgspec.json.decode(answer) != _AUTH_SUCCESS:
            raise RuntimeError(f"{url}: the handshake answered {answer!r}")
        yield ws


async def post_all(
    client: httpx.AsyncClient, bodies: Sequence[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """Post every body with ``concurrency`` requests in flight: wall time and each latency."""
    latencies: list[float] = []
    pending = iter(bodies)

    async def post_next() -> None:
        for body in pending:  # shared: each body is taken by exactly one poster
            started = time.perf_counter()
            response = await client.post("/api/events", content=body, headers=_JSON)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 204:
                raise RuntimeError(f"POST /api/events: {response.status_code} {response.text}")

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(post_next)
    return time.perf_counter() - started, latencies


_EVERYTHING = {"occurred": {"since": "1970-01-01T00:00:00Z", "until": "2200-01-01T00:00:00Z"}}


async def stored_total(client: httpx.AsyncClient) -> int:
    """How many events the server behind ``client`` stores, whenever they occurred
    (``POST /api/events/filter`` with ``limit`` 0: its ``total``)."""
    response = await client.post("/api/events/filter", json={"filter": _EVERYTHING, "limit": 0})
    response.raise_for_status()
    total: int = response.json()["total"]
    return total
