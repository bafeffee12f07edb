"""Durable ingest over the producer WebSocket (``/api/events/in``), beside the transport's
own limit.

One producer streams standard events, one per text frame, over loopback, with a ping/pong
checkpoint every 700 frames and one at the end; the clock stops at the last pong. Under
``localevents serve`` a pong means every frame before its ping is stored, so the figure is
durable events per second. In rounds (new events each round, every server and socket kept
open, each round sent to every server in turn), measuring:

* the limits in this process: raw msgspec decode of the same frames (plain structs), and
  a raw DuckDB append of the same rows (``benchmarks._raw``, the fastest method) one row
  per commit and 700 per commit (a checkpoint's worth);
* the raw transport: the same frames through httpx-ws to uvicorn, with the same checkpoint
  protocol, into a bare ASGI app that drops them and into a Litestar handler running
  localevents' handshake and frame loop (``benchmarks._sink``);
* ``localevents serve``: the real endpoint, compared with the bare ASGI rate.

The stored total is checked after the last round.

    uv run python -m benchmarks.ingest_ws [--quick]
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import msgspec
from rich.progress import Progress

from benchmarks._common import (
    SAMPLES_SOURCE,
    StandardEvents,
    frozen_heap,
    parse_args,
    rate,
    time_each,
)
from benchmarks._raw import RawAppender, plain_event_decoder, table_rows
from benchmarks._report import Figure, Report, Target, console
from benchmarks._servers import (
    Server,
    localevents_server,
    open_events_socket,
    stored_total,
    wait_all_ready,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from httpx_ws import AsyncWebSocketSession

NAME = "ingest_ws"
CHECKPOINT_EVERY = 700
TARGET_EVENTS_PER_S = 10_000  # durable, one producer, one event per frame (issue 3)
RAW_METHOD = "read_json"
DEFAULT_ROUNDS, DEFAULT_FRAMES, DEFAULT_SINGLE = 3, 14_000, 200
QUICK_ROUNDS, QUICK_FRAMES, QUICK_SINGLE = 3, 2_100, 30
WARMUP_FRAMES = 10
STREAM_TIMEOUT_S = 300
SINKS = (("asgi", "bare ASGI"), ("litestar", "Litestar"))


class Rounds(msgspec.Struct, frozen=True, kw_only=True):
    """How many rounds, frames per round, and rows committed one at a time per round."""

    rounds: int
    frames: int
    single: int


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


class Stream:
    """One server's figure: events per second of each round, and each checkpoint's wait."""

    def __init__(self, key: str, server: Server) -> None:
        self.key = key
        self.server = server
        self.samples: list[float] = []
        self.waits: list[float] = []

    async def send(self, ws: AsyncWebSocketSession, frames: Sequence[str]) -> None:
        """One round: the frames, timed to the last pong."""
        started = time.perf_counter()
        self.waits += await send_checkpointed(ws, frames)
        self.samples.append(rate(len(frames), time.perf_counter() - started))


async def measure_streams(
    tmp: Path, frames: Sequence[Sequence[str]], warmup: Sequence[str], progress: Progress
) -> list[Stream]:
    """The two sinks and ``localevents serve``, each with one producer socket open across
    the rounds; every round goes to each of them in turn, so drift hits all three alike."""
    servers: list[Server] = []
    try:
        for app, _ in SINKS:
            servers.append(Server(["benchmarks._sink", "--app", app], tmp / f"{app}.log"))
        servers.append(localevents_server(tmp / "serve.duckdb", tmp / "serve.log"))
        await wait_all_ready(servers)
        keys = ["asgi", "litestar", "serve"]
        streams = [Stream(key, s) for key, s in zip(keys, servers, strict=True)]
        task = progress.add_task("rounds", total=len(frames))
        async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=60) as client:
            sockets = []
            for stream in streams:
                url = f"{stream.server.url}/api/events/in"
                ws = await stack.enter_async_context(open_events_socket(url, client))
                await send_checkpointed(ws, warmup)
                sockets.append(ws)
            with anyio.fail_after(STREAM_TIMEOUT_S):
                for batch in frames:
                    for stream, ws in zip(streams, sockets, strict=True):
                        await stream.send(ws, batch)
                    progress.advance(task)
            expected = sum(map(len, frames)) + len(warmup)
            client.base_url = httpx.URL(servers[-1].url)
            if (found := await stored_total(client)) != expected:
                raise RuntimeError(f"localevents serve stored {found} events, not {expected}")
        return streams
    finally:
        for server in servers:
            server.stop()


def measure_limits(tmp: Path, standard: StandardEvents, sizes: Rounds) -> dict[str, list[float]]:
    """Per round: msgspec decode of each frame, and the raw append one row per commit and
    ``CHECKPOINT_EVERY`` rows per commit."""
    decode = plain_event_decoder()
    single = RawAppender(tmp / "raw-single.duckdb", RAW_METHOD)
    grouped = RawAppender(tmp / "raw-grouped.duckdb", RAW_METHOD)
    received = datetime.now(UTC)
    samples: dict[str, list[float]] = {"decode": [], "single": [], "grouped": []}
    try:
        for r in range(sizes.rounds):
            first = r * sizes.frames
            frames = [f.encode() for f in standard.frames(first, sizes.frames)]
            rows = table_rows(standard.events(first, sizes.frames), received)
            ones = [single.prepare(rows[i : i + 1]) for i in range(sizes.single)]
            groups = [
                grouped.prepare(rows[i : i + CHECKPOINT_EVERY])
                for i in range(0, len(rows), CHECKPOINT_EVERY)
            ]
            samples["decode"].append(rate(len(frames), time_each(frames, decode)[0]))
            samples["single"].append(rate(len(ones), time_each(ones, single.append)[0]))
            samples["grouped"].append(rate(len(rows), time_each(groups, grouped.append)[0]))
    finally:
        single.close()
        grouped.close()
    return samples


def _figures(report: Report, limits: dict[str, list[float]], streams: Sequence[Stream]) -> None:
    group = "limits, in this process"
    report.add(
        Figure(
            key="decode",
            group=group,
            name="msgspec decode of each frame (plain struct)",
            unit="events/s",
            samples=limits["decode"],
        )
    )
    report.add(
        Figure(
            key="append.single",
            group=group,
            name=f"raw DuckDB append ({RAW_METHOD}), 1 row per commit",
            unit="events/s",
            samples=limits["single"],
        )
    )
    report.add(
        Figure(
            key="append.grouped",
            group=group,
            name=f"raw DuckDB append ({RAW_METHOD}), {CHECKPOINT_EVERY} rows per commit",
            unit="events/s",
            samples=limits["grouped"],
        )
    )
    names = {
        "asgi": "raw httpx-ws -> uvicorn, bare ASGI sink (drops frames)",
        "litestar": "httpx-ws -> uvicorn, Litestar sink (localevents handshake, drops frames)",
        "serve": "httpx-ws -> localevents serve /api/events/in (durable)",
    }
    for stream in streams:
        targets = [Target(limit=TARGET_EVENTS_PER_S)] if stream.key == "serve" else []
        report.add(
            Figure(
                key=stream.key,
                group="one producer over loopback, checkpoint every 700 frames",
                name=names[stream.key],
                unit="events/s",
                samples=stream.samples,
                baseline=None if stream.key == "asgi" else "asgi",
                targets=targets,
                short="raw ws",
                detail={
                    "pong_wait_ms_median": round(
                        sorted(stream.waits)[len(stream.waits) // 2] * 1000, 3
                    )
                },
            )
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the limits, the raw transport and the endpoint; print and save the report."""
    options = parse_args(__doc__, argv)
    sizes = (
        Rounds(rounds=QUICK_ROUNDS, frames=QUICK_FRAMES, single=QUICK_SINGLE)
        if options.quick
        else Rounds(rounds=DEFAULT_ROUNDS, frames=DEFAULT_FRAMES, single=DEFAULT_SINGLE)
    )
    standard = StandardEvents(seed=options.seed)
    frames = [standard.frames(r * sizes.frames, sizes.frames) for r in range(sizes.rounds)]
    warmup = standard.frames(sizes.rounds * sizes.frames, WARMUP_FRAMES)
    report = Report(
        NAME,
        {
            "quick": options.quick,
            "seed": options.seed,
            **msgspec.structs.asdict(sizes),
            "checkpoint_every": CHECKPOINT_EVERY,
            "mean_frame_bytes": round(sum(map(len, frames[0])) / sizes.frames),
            "events": f"{SAMPLES_SOURCE}.standard_event",
        },
    )
    with (
        tempfile.TemporaryDirectory(prefix="localevents-bench-") as name,
        frozen_heap(),
        Progress(console=console, transient=True) as progress,
    ):
        tmp = Path(name)
        limits = measure_limits(tmp, standard, sizes)
        streams = anyio.run(measure_streams, tmp, frames, warmup, progress)
    _figures(report, limits, streams)
    report.finish(options.out)


if __name__ == "__main__":
    main()
