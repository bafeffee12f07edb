"""Durable ingest over the producer WebSocket (``/api/events/in``), beside the transport's
own limit.

One producer streams the same generated events, one per text frame, to each endpoint over
loopback, with a ping/pong checkpoint every 700 frames and one at the end; the clock stops
at the last pong. Under ``localevents serve`` a pong means every frame before its ping is
stored, so the figure is durable events per second, and the stored total is checked
(``POST /api/events/filter``).

* the limits, in this process: the server's per-frame decode (``decode_event``), and
  ``store.write_rows`` with one event per commit (on the first 1000 frames: what storing
  each frame before reading the next would cost) and with 700 per commit (a checkpoint's
  worth: the endpoint commits what it holds at each ping, every 1000 frames, or after a
  pause);
* the raw transport: the same frames through httpx-ws to uvicorn with the same checkpoint
  protocol, into a bare ASGI app that drops them, and into a Litestar handler that runs
  localevents' handshake and frame loop and drops them (``benchmarks._ws_sink``);
* ``localevents serve``: the real endpoint, as a fraction of the bare ASGI rate; the stored
  total is checked right after the last pong, before the socket closes.

Frames are encoded before timing and the events are hidden from the garbage collector.

    uv run python -m benchmarks.ingest_ws [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec

from benchmarks._common import (
    Server,
    Target,
    Timer,
    frozen_heap,
    generate_events,
    localevents_server,
    open_events_socket,
    parse_args,
    percentile,
    rate,
    report,
    stored_total,
    time_each,
    wait_all_ready,
)
from localevents import Settings
from localevents.server._ingest import decode_event
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from httpx_ws import AsyncWebSocketSession

    from localevents import ReceivedEvent
    from localevents.storage._rows import Row

NAME = "ingest_ws"
CHECKPOINT_EVERY = 700
TARGET_EVENTS_PER_S = 10_000  # durable, one producer, one event per frame (issue)
WARMUP_EVENTS = 10
DEFAULT_EVENTS = 70_000
QUICK_EVENTS = 7_000
SINGLE_COMMITS = 1_000  # frames stored one commit each in the limits (about 3 ms per commit)
STREAM_TIMEOUT_S = 300


class Measurement(msgspec.Struct, kw_only=True):
    """``frames`` handled in ``seconds``; ``latencies`` are per ``per`` (frame or checkpoint)."""

    stage: str
    path: str
    frames: int
    seconds: float
    per: str
    latencies: list[float]

    @property
    def events_per_s(self) -> float:
        """Throughput."""
        return rate(self.frames, self.seconds)

    def as_row(self, raw: float) -> dict[str, Any]:
        """A result row, with the throughput as a fraction of the raw transport rate and,
        for a stream, the share of its time the producer spent waiting for pongs."""
        waiting = sum(self.latencies) / self.seconds if self.per == "checkpoint" else None
        return {
            "stage": self.stage,
            "path": self.path,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s),
            "per": self.per,
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 3),
            "pong_wait_share": None if waiting is None else round(waiting, 3),
            "vs_raw_ws": round(self.events_per_s / raw, 4),
        }


def encode_frames(events: Sequence[ReceivedEvent]) -> list[str]:
    """One JSON text frame per event, encoded before any timing."""
    encode = msgspec.json.Encoder().encode
    return [encode(event).decode() for event in events]


# -- the limits, in this process ---------------------------------------------------------------


def _commits(path: str, rows: Sequence[Row], size: int) -> Measurement:
    """``store.write_rows`` on a fresh file, ``size`` rows per call."""
    batches = [rows[i : i + size] for i in range(0, len(rows), size)]
    store = open_store(path)
    try:
        seconds, latencies = time_each(batches, store.write_rows)
    finally:
        release(store)
    return Measurement(
        stage="storage",
        path=f"store.write_rows, {size} per commit",
        frames=len(rows),
        seconds=seconds,
        per="commit",
        latencies=latencies,
    )


def measure_limits(tmp: Path, frames: Sequence[str]) -> list[Measurement]:
    """``decode_event`` on each frame, then the rows stored one per commit (the first
    ``SINGLE_COMMITS``) and a checkpoint's worth per commit."""
    settings = Settings()
    rows: list[Row] = []
    seconds, latencies = time_each(frames, lambda frame: rows.append(decode_event(frame, settings)))
    decode = Measurement(
        stage="limit",
        path="decode_event",
        frames=len(frames),
        seconds=seconds,
        per="frame",
        latencies=latencies,
    )
    return [
        decode,
        _commits(str(tmp / "single.duckdb"), rows[:SINGLE_COMMITS], 1),
        _commits(str(tmp / "checkpoint.duckdb"), rows, CHECKPOINT_EVERY),
    ]


# -- over WebSockets ---------------------------------------------------------------------------


async def _checkpoint(ws: AsyncWebSocketSession) -> float:
    """Ping and wait for the pong: the seconds it took."""
    started = time.perf_counter()
    pong = await ws.ping()
    await pong.wait()
    return time.perf_counter() - started


async def send_checkpointed(ws: AsyncWebSocketSession, frames: Sequence[str]) -> list[float]:
    """Every frame, with a checkpoint after each ``CHECKPOINT_EVERY`` and after the last;
    each checkpoint's wait."""
    waits = []
    for start in range(0, len(frames), CHECKPOINT_EVERY):
        for frame in frames[start : start + CHECKPOINT_EVERY]:
            await ws.send_text(frame)
        waits.append(await _checkpoint(ws))
    return waits


async def stream(
    server: Server,
    frames: Sequence[str],
    warmup: Sequence[str],
    after_last_pong: Callable[[httpx.AsyncClient], Awaitable[None]] | None = None,
) -> tuple[float, list[float]]:
    """Send the warm-up frames to a ready ``server``, then time the frames on the same
    socket: the seconds to the last pong and each checkpoint's wait. ``after_last_pong``
    runs (untimed) before the socket closes."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        with anyio.fail_after(STREAM_TIMEOUT_S):
            async with open_events_socket(f"{server.url}/api/events/in", client) as ws:
                await send_checkpointed(ws, warmup)
                with Timer() as timer:
                    waits = await send_checkpointed(ws, frames)
                if after_last_pong is not None:
                    await after_last_pong(client)
    return timer.elapsed, waits


async def measure_sink(
    server: Server, app: str, frames: Sequence[str], warmup: Sequence[str]
) -> Measurement:
    """The raw transport: frames into a ``benchmarks._ws_sink`` app that drops them."""
    try:
        seconds, waits = await stream(server, frames, warmup)
    finally:
        server.stop()
    return Measurement(
        stage="raw",
        path=f"httpx-ws -> uvicorn, {app} sink (drops frames)",
        frames=len(frames),
        seconds=seconds,
        per="checkpoint",
        latencies=waits,
    )


async def measure_serve(
    server: Server, frames: Sequence[str], warmup: Sequence[str]
) -> Measurement:
    """The real endpoint; once the last pong is in, every frame must be stored."""
    expected = len(frames) + len(warmup)

    async def check_stored(client: httpx.AsyncClient) -> None:
        total = await stored_total(client)
        if total != expected:
            raise RuntimeError(f"after the last pong: {total} events stored, not {expected}")

    try:
        seconds, waits = await stream(server, frames, warmup, check_stored)
    finally:
        server.stop()
    return Measurement(
        stage="ws",
        path="httpx-ws -> localevents serve /api/events/in",
        frames=len(frames),
        seconds=seconds,
        per="checkpoint",
        latencies=waits,
    )


async def measure_ws(tmp: Path, frames: Sequence[str], warmup: Sequence[str]) -> list[Measurement]:
    """The two sinks, then ``localevents serve``; every server starts at once, and all are
    ready before the first measurement (they sit idle until their turn)."""
    servers: list[Server] = []
    try:
        for app in ("asgi", "litestar"):
            servers.append(Server(["benchmarks._ws_sink", "--app", app], tmp / f"{app}.log"))
        servers.append(localevents_server(str(tmp / "serve.duckdb"), tmp / "serve.log"))
        with anyio.fail_after(120):
            await wait_all_ready(servers)
        bare, litestar, serve = servers
        return [
            await measure_sink(bare, "bare ASGI", frames, warmup),
            await measure_sink(litestar, "Litestar", frames, warmup),
            await measure_serve(serve, frames, warmup),
        ]
    finally:
        for server in servers:
            server.stop()


# -- the run -----------------------------------------------------------------------------------


def _targets(measured: Sequence[Measurement]) -> list[Target]:
    serve = next(m for m in measured if m.stage == "ws")
    return [
        Target(
            name="durable events/s, one producer, one event per frame (loopback)",
            measured=round(serve.events_per_s),
            limit=TARGET_EVENTS_PER_S,
            unit="events/s",
            higher_is_better=True,
        )
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the limits, the raw transport and the endpoint; print and save the report."""
    args = parse_args(__doc__, argv)
    count = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    frames = encode_frames(generate_events(count, seed=args.seed))
    warmup = encode_frames(generate_events(WARMUP_EVENTS, seed=args.seed + 1))
    with tempfile.TemporaryDirectory(prefix="localevents-bench-") as name, frozen_heap():
        tmp = Path(name)
        measured = measure_limits(tmp, frames)
        measured += anyio.run(measure_ws, tmp, frames, warmup)
    raw = next(m for m in measured if m.stage == "raw")
    report(
        NAME,
        params={
            "quick": args.quick,
            "seed": args.seed,
            "events": count,
            "checkpoint_every": CHECKPOINT_EVERY,
            "mean_frame_bytes": round(sum(len(f) for f in frames) / len(frames)),
        },
        results=[m.as_row(raw.events_per_s) for m in measured],
        targets=_targets(measured),
    )


if __name__ == "__main__":
    main()
