"""The physical limit of live fan-out on this machine: frames through loopback, nothing else.

:func:`measure` sends the same bytes (one request's WebSocket frames, as a subscriber of
every event gets them) to each of N loopback TCP connections, one ``sendall`` per
connection, while another process (this module run as a program) reads all N with a
selector into one buffer and does nothing with what it reads. No HTTP, no WebSocket
parsing, no matching, no queues: what the kernel, two processes and the two cores cost to
move the bytes. A server that delivers every event to N subscribers cannot beat this rate,
so over a run longer than its subscribers' queues absorb, ingest beside them cannot exceed
``frames/s / N`` events/s.

    python -m benchmarks._fanout_floor PORT CONNECTIONS BYTES_PER_ROUND ROUNDS  (the reader)
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("FloorRound", "measure")

_READ_BUFFER = 1 << 20


class FloorRound(msgspec.Struct, frozen=True):
    """One round: every connection got the whole payload. Seconds of wall time from the
    first send until the reader had every byte, and of CPU in the sending thread and in
    the reader's process."""

    wall_s: float
    sender_cpu_s: float
    reader_cpu_s: float


def measure(payload: bytes, connections: int, rounds: int) -> list[FloorRound]:
    """Send ``payload`` to each of ``connections`` loopback connections, ``rounds`` times
    (after one round of warm-up), a reader process reading them all; one result per round.
    Blocking: run it in a worker thread."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(30)  # a reader that never connects fails the run, not hangs it
        command = [sys.executable, "-m", "benchmarks._fanout_floor"]
        command += [str(port), str(connections), str(len(payload)), str(rounds + 1)]
        with subprocess.Popen(command, stdout=subprocess.PIPE) as reader:
            try:
                measured = _rounds(listener, connections, payload, rounds + 1, reader)
                reader.wait(timeout=30)
            finally:
                if reader.poll() is None:
                    reader.kill()
    return measured[1:]


def _rounds(
    listener: socket.socket,
    connections: int,
    payload: bytes,
    rounds: int,
    reader: subprocess.Popen[bytes],
) -> list[FloorRound]:
    if reader.stdout is None:
        raise RuntimeError("the reader process has no stdout pipe")
    with contextlib.ExitStack() as closing:
        accepted = [closing.enter_context(listener.accept()[0]) for _ in range(connections)]
        for connection in accepted:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _expect(reader.stdout, b"connected")
        return [_round(accepted, payload, reader.stdout) for _ in range(rounds)]


def _round(connections: Sequence[socket.socket], payload: bytes, lines: IO[bytes]) -> FloorRound:
    started, cpu = time.perf_counter(), time.thread_time()
    for connection in connections:
        connection.sendall(payload)
    sender_cpu = time.thread_time() - cpu
    reader_cpu = float(_expect(lines, b"read"))
    return FloorRound(time.perf_counter() - started, sender_cpu, reader_cpu)


def _expect(lines: IO[bytes], word: bytes) -> bytes:
    """The rest of the reader's next line, which must begin with ``word``."""
    line = lines.readline()
    head, _, rest = line.strip().partition(b" ")
    if head != word:
        raise RuntimeError(f"the fan-out reader said {line!r}, expected {word!r}")
    return rest


def _read(port: int, connections: int, per_round: int, rounds: int) -> None:
    """The reader: connect, then each round read ``per_round`` bytes from every connection
    and say how much CPU that took."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    view = memoryview(bytearray(_READ_BUFFER))
    with selectors.DefaultSelector() as selector:
        print("connected", flush=True)
        for _ in range(rounds):
            cpu = time.process_time()
            left = dict.fromkeys(sockets, per_round)
            for sock in sockets:
                selector.register(sock, selectors.EVENT_READ, sock)
            while left:
                for key, _ in selector.select():
                    sock = key.data
                    got = sock.recv_into(view)
                    if not got:
                        raise RuntimeError("the sender closed a connection early")
                    left[sock] -= got
                    if left[sock] <= 0:
                        del left[sock]
                        selector.unregister(sock)
            print(f"read {time.process_time() - cpu}", flush=True)
    for sock in sockets:
        sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the reader (see the module docstring)."""
    port, connections, per_round, rounds = map(int, argv or sys.argv[1:])
    _read(port, connections, per_round, rounds)


if __name__ == "__main__":
    main()
