"""Many subscribers of ``/api/events/out`` in a process of their own, for
``subscriber_latency`` (so their reading does not slow the writer it measures).

    python -m benchmarks._subscribers URL --plans JSON --timeout S

Connects one lean WebSocket subscriber per :class:`Plan` (``prefect`` handshake, the plan's
filter, no backfill; it parses frame headers and little more: see :class:`_LeanSocket`)
and reports on stdout, one :class:`Progress` JSON line at a time:

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
import asyncio
import base64
import hashlib
import os
import struct
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

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

    async def run(self, url: str, message: str) -> None:
        """Subscribe, then count what arrives until the socket closes (or cancellation)."""
        target = urllib.parse.urlsplit(url)
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[int] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: _LeanSocket(self, target.netloc, target.path, message, closed),
            target.hostname or "127.0.0.1",
            target.port or 80,
        )
        try:
            self.close_code = await closed
        finally:
            transport.close()
        if not self._is_warm:
            self._milestones.warm.tick()
        if self.received < self._expect:  # closed before the end
            self._milestones.finished.tick()

    def subscribed(self) -> None:
        """The filter message is sent."""
        self._milestones.connected.tick()

    def text(self, payload: bytes) -> None:
        """Count a text message (an event envelope; warm-up events apart)."""
        if _WARMUP_BYTES in payload:
            if not self._is_warm:
                self._is_warm = True
                self._milestones.warm.tick()
            return
        self.received += 1
        if self.received == self._expect:
            self._milestones.finished.tick()


_WARMUP_BYTES = WARMUP_EVENT.encode()
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
_NO_STATUS = 1005  # a close frame without a code (RFC 6455 section 7.4.1)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, masked client frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = os.urandom(4)
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return header + key + masked


class _LeanSocket(asyncio.Protocol):
    """A WebSocket client that only counts: the ``prefect`` handshake, the filter message,
    then each server frame's header parsed and its payload searched for the warm-up name.

    The subscribers share the server's two cores, and httpx-ws (wsproto) spent about
    130 us of this process's CPU per message: more than the server spent sending it.
    What this costs the server should not hide behind what its readers cost.
    """

    def __init__(
        self,
        subscriber: _Subscriber,
        host: str,
        path: str,
        message: str,
        closed: asyncio.Future[int],
    ) -> None:
        self._subscriber = subscriber
        self._host = host
        self._path = path
        self._message = message.encode()
        self._closed = closed
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._upgraded = False
        self._authenticated = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Ask for the upgrade."""
        self._transport = cast("asyncio.Transport", transport)
        self._transport.write(
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: prefect\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        """Parse the upgrade answer, then every complete frame."""
        buffer = self._buffer
        buffer += data
        if not self._upgraded and not self._upgrade():
            return
        position, end = 0, len(buffer)
        while end - position >= 2:
            first, size = buffer[position], buffer[position + 1] & 0x7F
            header = 2
            if size == 126:
                header = 4
                size = int.from_bytes(buffer[position + 2 : position + 4], "big")
            elif size == 127:
                header = 10
                size = int.from_bytes(buffer[position + 2 : position + 10], "big")
            if end - position < header + size:
                break
            start = position + header
            position = start + size
            self._frame(first & 0x0F, bytes(buffer[start:position]))
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        """A socket that went without a close frame was closed abnormally."""
        if not self._closed.done():
            self._closed.set_result(ABNORMAL_CLOSURE)

    def _upgrade(self) -> bool:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(self._buffer[:head_end]).decode("latin-1").split("\r\n")
        del self._buffer[: head_end + 4]
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        fields = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in head[1:])}
        if not head[0].startswith("HTTP/1.1 101") or fields.get("sec-websocket-accept") != accept:
            raise RuntimeError(f"the server refused the upgrade: {head[0]}")
        self._upgraded = True
        self._send(_TEXT, _AUTH)
        return True

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == _TEXT and self._authenticated:
            self._subscriber.text(payload)
        elif opcode == _TEXT:
            if msgspec.json.decode(payload) != {"type": "auth_success"}:
                raise RuntimeError(f"the handshake answered {payload!r}")
            self._authenticated = True
            self._send(_TEXT, self._message)
            self._subscriber.subscribed()
        elif opcode == _PING:
            self._send(_PONG, payload)
        elif opcode == _CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else _NO_STATUS
            if not self._closed.done():
                self._closed.set_result(code)
            self._send(_CLOSE, payload[:2])
        elif opcode != _PONG:
            raise RuntimeError(f"unexpected frame (opcode {opcode}): the server fragments?")

    def _send(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_client_frame(opcode, payload))


_AUTH = b'{"type":"auth","token":null}'


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
    async with anyio.create_task_group() as tg:
        for subscriber, plan in zip(subscribers, plans, strict=True):
            tg.start_soon(subscriber.run, url, subscribe_message(plan.filter))
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
