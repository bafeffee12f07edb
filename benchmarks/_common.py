"""What every benchmark shares: seeded events, machine info, a timer and the report.

A report is printed twice to stdout, as an aligned table for people and as JSON for tools,
and the JSON is also kept in ``benchmarks/results/<name>-<UTC timestamp>.json`` so runs can
be compared later (the directory is git-ignored apart from its ``.gitkeep``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
from httpx_ws import aconnect_ws

from localevents import ReceivedEvent
from localevents.events._schemas import decode_hook
from localevents.storage._rows import Row, encode_rows, insert_rows_sql

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
    from types import TracebackType

    from httpx_ws import AsyncWebSocketSession

__all__ = (
    "EventGenerator",
    "RESULTS_DIR",
    "Server",
    "Target",
    "Timer",
    "encode_batches",
    "format_table",
    "free_port",
    "frozen_heap",
    "generate_events",
    "localevents_server",
    "machine_info",
    "open_events_socket",
    "parse_args",
    "percentile",
    "rate",
    "report",
    "stored_total",
    "time_each",
    "wait_all_ready",
)

RESULTS_DIR = Path(__file__).parent / "results"

# -- events ----------------------------------------------------------------------------------

# (resource kind, event verbs, how many resources of that kind): events name their resource's
# kind, as Prefect's do ("prefect.flow-run.Completed" happens to a "prefect.flow-run.<id>").
_FAMILIES = (
    ("prefect.flow-run", ("Scheduled", "Pending", "Running", "Completed", "Failed"), 400),
    ("prefect.task-run", ("Pending", "Running", "Completed", "Failed", "Retrying"), 1200),
    ("prefect.deployment", ("triggered", "ready", "not-ready"), 40),
    ("prefect.work-pool", ("ready", "not-ready", "paused"), 8),
    ("shop.order", ("created", "paid", "shipped", "cancelled"), 600),
)
_WORDS = ("amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy", "jolly")
_ANIMALS = ("otter", "heron", "lynx", "marmot", "newt", "okapi", "puffin", "quail", "raven")
_ENVS = ("prod", "prod", "prod", "staging", "dev")
_TAGS = ("etl", "nightly", "billing", "ml", "reports", "adhoc", "critical", "backfill")
_FLOWS = 50


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _uuid7(rng: random.Random, ms: int) -> uuid.UUID:
    """A UUIDv7 for an instant: ids are time-ordered with ``occurred``, as in real use."""
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rng.getrandbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76
    value = value & ~(0x3 << 62) | 0x2 << 62
    return uuid.UUID(int=value)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_WORDS)}-{rng.choice(_ANIMALS)}-{rng.randrange(100)}"


class _World:
    """The resources a seeded run of events happens to (so counts by resource have groups)."""

    def __init__(self, rng: random.Random) -> None:
        self.resources = [
            [
                {
                    "prefect.resource.id": f"{kind}.{_uuid4(rng)}",
                    "prefect.resource.name": _name(rng),
                    "app.env": rng.choice(_ENVS),
                    "app.team": f"team-{rng.randrange(12)}",
                }
                for _ in range(count)
            ]
            for kind, _, count in _FAMILIES
        ]
        self.flows = [
            {
                "prefect.resource.id": f"prefect.flow.{_uuid4(rng)}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": _name(rng),
            }
            for _ in range(_FLOWS)
        ]
        self.tags = [
            {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
            for tag in _TAGS
        ]


def _event(rng: random.Random, world: _World, occurred: datetime) -> dict[str, Any]:
    family = rng.randrange(len(_FAMILIES))
    kind, verbs, _ = _FAMILIES[family]
    verb = rng.choice(verbs)
    resource = rng.choice(world.resources[family])
    return {
        "occurred": occurred,
        "event": f"{kind}.{verb}",
        "resource": resource,
        "related": [rng.choice(world.flows), rng.choice(world.tags)],
        "payload": {
            "attempt": rng.randint(1, 3),
            "duration_ms": round(rng.expovariate(1 / 250), 1),
            "message": f"{resource['prefect.resource.name']} is {verb}",
        },
        "id": _uuid7(rng, int(occurred.timestamp() * 1000)),
        "received": occurred + timedelta(milliseconds=rng.randrange(1, 50)),
    }


class EventGenerator:
    """A seeded stream of realistic events over one fixed world of resources.

    Successive calls continue the same stream, so a large data set can be built a chunk at a
    time (``count_by`` loads a million events this way) while every chunk shares the same
    resources, flows and tags.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._world = _World(self._rng)

    def events(self, count: int, start: datetime, end: datetime) -> list[ReceivedEvent]:
        """``count`` events spread uniformly over ``[start, end)``, in ``occurred`` order.

        Each has a dotted name from a few families, a primary resource with an id, a name and
        two more labels, a related flow and tag, and a small payload; they are built through
        msgspec with the store's own validation.
        """
        rng = self._rng
        span_us = (end - start) // timedelta(microseconds=1)
        offsets = sorted(rng.randrange(span_us) for _ in range(count))
        raw = [_event(rng, self._world, start + timedelta(microseconds=us)) for us in offsets]
        return msgspec.convert(raw, list[ReceivedEvent], dec_hook=decode_hook)


def generate_events(
    count: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[ReceivedEvent]:
    """``count`` events of :class:`EventGenerator` (``seed``) over ``[start, end)``
    (default: the hour before now), the same for the same arguments."""
    end = end or datetime.now(UTC)
    return EventGenerator(seed).events(count, start or end - timedelta(hours=1), end)


def encode_batches(events: Sequence[ReceivedEvent], size: int) -> list[bytes]:
    """Request bodies (JSON arrays) of ``size`` events each, encoded before any timing."""
    encode = msgspec.json.Encoder().encode
    return [encode(events[i : i + size]) for i in range(0, len(events), size)]


# -- measuring -------------------------------------------------------------------------------


class Timer:
    """Wall-clock seconds of a ``with`` block (``perf_counter``)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed = time.perf_counter() - self.started


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Hide every object alive now from the garbage collector for the block.

    A benchmark holds its generated events (hundreds of thousands of tracked objects) while
    it measures; without this, each full collection during the measurement would walk them
    and charge the code under test for the benchmark's own data.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def time_each(
    items: Sequence[Any], operation: Callable[[Any], object]
) -> tuple[float, list[float]]:
    """Run ``operation`` on each item: total seconds and each call's seconds."""
    latencies = []
    with Timer() as total:
        for item in items:
            started = time.perf_counter()
            operation(item)
            latencies.append(time.perf_counter() - started)
    return total.elapsed, latencies


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(count: int, seconds: float) -> float:
    """Items per second."""
    return count / seconds if seconds > 0 else math.inf


# -- servers and sockets ---------------------------------------------------------------------


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
        # Only the command line configures the server: no stray key or URL from our caller.
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALEVENTS_")}
        self._log_path = log
        self._log = log.open("wb")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environ
        )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        """Poll ``/api/ready`` until it answers; raise with the server's log if it exits."""
        while True:
            if self._process.poll() is not None:
                self._log.close()
                output = self._log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the server exited with {self._process.returncode}:\n{output}")
            try:
                if (await client.get("/api/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.05)

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
        async with httpx.AsyncClient(base_url=server.url) as client:
            await server.wait_ready(client)


def localevents_server(path: str, log: Path) -> Server:
    """``python -m localevents serve`` over the events file ``path``, logging warnings only."""
    return Server(["localevents", "serve", "--database", path, "--log-level", "warning"], log)


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


async def stored_total(client: httpx.AsyncClient) -> int:
    """How many events the server behind ``client`` stores (``POST /api/events/filter``
    with the default filter and ``limit`` 0: its ``total``)."""
    response = await client.post("/api/events/filter", json={"limit": 0})
    response.raise_for_status()
    total: int = response.json()["total"]
    return total


# -- context ---------------------------------------------------------------------------------

_PACKAGES = ("localevents", "duckdb", "litestar", "msgspec", "httpx", "anyio", "uvicorn")


def _commit() -> str | None:
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Where and with what a run happened."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "commit": _commit(),
    }


def parse_args(description: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options every benchmark takes."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke run (under 20 s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated events")
    return parser.parse_args(argv)


# -- reporting -------------------------------------------------------------------------------


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A figure the project promises, and whether this run reached it."""

    name: str
    measured: float
    limit: float
    unit: str
    higher_is_better: bool

    @property
    def met(self) -> bool:
        """Whether the measured figure is on the right side of the limit."""
        if self.higher_is_better:
            return self.measured >= self.limit
        return self.measured <= self.limit

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (with ``met``)."""
        return {**msgspec.structs.asdict(self), "met": self.met}


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    return _number(value) if isinstance(value, float) else str(value)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as aligned plain text: text columns left-aligned, numbers right-aligned."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows)
        for c in columns
    ]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = (
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        )
        return "  ".join(parts).rstrip()

    header = line(columns)
    return "\n".join([header, "-" * len(header), *(line(values) for values in cells)])


def report(
    name: str,
    *,
    params: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    targets: Sequence[Target] = (),
    group_by: str | None = None,
) -> Path:
    """Print the table and the JSON of a run, save the JSON, and return where it went.

    With ``group_by``, the rows are printed as one table per value of that column (in
    order of first appearance), each with only its own columns; the JSON is the same.
    """
    now = datetime.now(UTC)
    document = {
        "benchmark": name,
        "timestamp": now.isoformat(timespec="seconds"),
        "params": dict(params),
        "machine": machine_info(),
        "results": [dict(row) for row in results],
        "targets": [target.as_dict() for target in targets],
    }
    print(f"\n{name} ({', '.join(f'{k}={v}' for k, v in params.items())})\n")
    print("\n\n".join(format_table(rows) for rows in _groups(results, group_by)))
    if targets:
        print()
        print(format_table([_target_row(target) for target in targets]))
    encoded = msgspec.json.format(msgspec.json.encode(document), indent=2)
    print()
    print(encoded.decode())
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{now:%Y%m%dT%H%M%SZ}.json"
    path.write_bytes(encoded + b"\n")
    print(f"\nsaved {path}", file=sys.stderr)
    return path


def _groups(
    rows: Sequence[Mapping[str, Any]], key: str | None
) -> list[Sequence[Mapping[str, Any]]]:
    if key is None:
        return [rows]
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get(key), []).append(row)
    return list(groups.values())


def _target_row(target: Target) -> dict[str, Any]:
    sign = ">=" if target.higher_is_better else "<="
    return {
        "target": target.name,
        "measured": target.measured,
        "required": f"{sign} {_cell(target.limit)} {target.unit}",
        "met": target.met,
    }


def append_rows(con: Any, rows: Sequence[Row], scratch: Path) -> None:
    """DuckDB alone: the rows the store builds, written to a scratch file and loaded into
    ``events`` with the store's own INSERT, in one transaction (no duplicate check)."""
    scratch.write_bytes(encode_rows(rows))
    con.execute("BEGIN")
    con.execute(insert_rows_sql(str(scratch)))
    con.execute("COMMIT")
