"""Many subscribers of ``/api/events/out`` in a process of their own, for
``subscriber_latency`` (so their reading does not slow the writer it measures).

    python -m benchmarks._subscribers URL --plans JSON --timeout S

Connects one raw httpx-ws subscriber per :class:`Plan` (``prefect`` handshake, the plan's
filter, no backfill) and reports on stdout, one :class:`Progress` JSON line at a time:

* ``connected``: every subscriber has sent its filter message;
* ``ready``: every subscriber has received a warm-up event (named ``bench.warmup``; the
  parent posts them one by one until this line comes, which proves each subscription is
  open on the server) or been closed;
* ``done``, once stdin is closed (the parent has posted everything: the subscribers stay
  connected until then) and every subscriber has received the other events its plan
  expects or been closed, or ``timeout`` seconds after stdin closed: what each received,
  how each was closed, and when the last one finished (``time.monotonic()``:
  CLOCK_MONOTONIC, shared with the parent process on Linux; none when no plan expects any).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import msgspec
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError

from benchmarks._servers import open_events_socket

if TYPE_CHECKING:
    from collections.abc import Sequence

    from httpx_ws import AsyncWebSocketSession

__all__ = ("ABNORMAL_CLOSURE", "WARMUP_EVENT", "Plan", "Progress", "main", "subscribe_message")

WARMUP_EVENT = "bench.warmup"
ABNORMAL_CLOSURE = 1006  # what a dropped connection counts as (RFC 6455)


class Plan(msgspec.Struct, frozen=True):
    """One subscriber: its EventFilter (as JSON) and how many ingested events it expects."""

    filter: dict[str, Any]
    expect: int


class Progress(msgspec.Struct, kw_only=True):
    """One line of the report (see the module docstring)."""

    state: str
    received: list[int] = []
    close_codes: list[int | None] = []
    finished_at: float | None = None


def subscribe_message(event_filter: dict[str, object]) -> str:
    """The filter message of a live-only subscription."""
    message = {"type": "filter", "filter": event_filter, "backfill": False}
    return msgspec.json.encode(message).decode()


class _Countdown:
    """Set ``zero`` (and note when) once ``tick`` has been called ``count`` times."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.zero = anyio.Event()
        self.at: float | None = None
        if count == 0:
            self.zero.set()

    def tick(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.at = time.monotonic()
            self.zero.set()


class _Milestones:
    """How many subscribers have yet to subscribe, to get a warm-up event, and to finish
    (receive every expected event, or be closed)."""

    def __init__(self, plans: Sequence[Plan]) -> None:
        self.connected = _Countdown(len(plans))
        self.warm = _Countdown(len(plans))
        self.finished = _Countdown(sum(plan.expect > 0 for plan in plans))


class _Subscriber:
    """One socket: counts the events it receives, and how it was closed."""

    def __init__(self, milestones: _Milestones, expect: int) -> None:
        self.received = 0
        self.close_code: int | None = None
        self._milestones = milestones
        self._expect = expect
        self._is_warm = False

    async def run(self, client: httpx.AsyncClient, url: str, message: str) -> None:
        """Subscribe, then count what arrives until the socket closes (or cancellation)."""
        async with open_events_socket(url, client) as ws:
            await ws.send_text(message)
            self._milestones.connected.tick()
            await self._read(ws)
        if not self._is_warm:
            self._milestones.warm.tick()
        if self.received < self._expect:  # closed before the end
            self._milestones.finished.tick()

    async def _read(self, ws: AsyncWebSocketSession) -> None:
        while True:
            try:
                text = await ws.receive_text()
            except WebSocketDisconnect as exc:
                self.close_code = exc.code
                return
            except WebSocketNetworkError:
                self.close_code = ABNORMAL_CLOSURE
                return
            if WARMUP_EVENT in text:
                if not self._is_warm:
                    self._is_warm = True
                    self._milestones.warm.tick()
                continue
            self.received += 1
            if self.received == self._expect:
                self._milestones.finished.tick()


def _say(progress: Progress) -> None:
    sys.stdout.write(msgspec.json.encode(progress).decode() + "\n")
    sys.stdout.flush()


async def _stdin_closed() -> None:
    await anyio.to_thread.run_sync(sys.stdin.buffer.read)


async def run(url: str, plans: Sequence[Plan], wait_s: float) -> None:
    """Connect, report ``connected``, ``ready`` and ``done`` (at most ``wait_s`` seconds
    after stdin closes), then disconnect."""
    milestones = _Milestones(plans)
    subscribers = [_Subscriber(milestones, plan.expect) for plan in plans]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits) as client, anyio.create_task_group() as tg:
        for subscriber, plan in zip(subscribers, plans, strict=True):
            tg.start_soon(subscriber.run, client, url, subscribe_message(plan.filter))
        await milestones.connected.zero.wait()
        _say(Progress(state="connected"))
        await milestones.warm.zero.wait()
        _say(Progress(state="ready"))
        await _stdin_closed()
        with anyio.move_on_after(wait_s):
            await milestones.finished.zero.wait()
        _say(
            Progress(
                state="done",
                received=[s.received for s in subscribers],
                close_codes=[s.close_code for s in subscribers],
                finished_at=milestones.finished.at,
            )
        )
        tg.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the subscribers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the /api/events/out URL (http://...)")
    parser.add_argument("--plans", required=True, help="a JSON list of Plan objects")
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    plans = msgspec.json.decode(args.plans, type=list[Plan])
    anyio.run(run, args.url, plans, args.timeout)


if __name__ == "__main__":
    main()
