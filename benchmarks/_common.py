"""What every benchmark shares: the standard events, the command line, timers.

Events come from the sample-data generator, ``localevents.events._samples``, through two
thin adapters: :func:`sample_events` (``generate_events``: a realistic mix of families,
names, labels and rhythms, for the query workloads) and :class:`StandardEvents` (the
generator's *standard event*, the typical event ingest is measured with, made in bulk).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from benchmarks._report import RESULTS_DIR
from localevents import Event, ReceivedEvent
from localevents.events._samples import generate_events, standard_event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from types import TracebackType

__all__ = (
    "SAMPLES_SOURCE",
    "Options",
    "StandardEvents",
    "Timer",
    "as_received",
    "chunks",
    "frozen_heap",
    "parse_args",
    "rate",
    "sample_events",
    "time_each",
)

SAMPLES_SOURCE = "localevents.events._samples"
_encode = msgspec.json.Encoder().encode

# -- the events ------------------------------------------------------------------------------


def sample_events(
    count: int, *, seed: int = 0, start: datetime | None = None, span: timedelta | None = None
) -> list[Event]:
    """``generate_events``: ``count`` realistic events over ``[start, start + span)``
    (default: the span before now), in ``occurred`` order; the same for the same arguments."""
    span = span or timedelta(days=28)
    begin = start or datetime.now(UTC) - span
    return list(generate_events(count, seed=seed, start=begin, span=span))


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # odd: multiplying by it permutes 64-bit values


def _uuid7_text(ms: int, i: int, seed: int) -> str:
    """A UUIDv7 of millisecond ``ms`` whose random bits are a permutation of ``i`` (so every
    index has its own id), as canonical text."""
    bits = ((i ^ seed << 48) * _GOLDEN) & _MASK64
    h = f"{ms & 0xFFFF_FFFF_FFFF:012x}{bits:016x}"
    return f"{h[:8]}-{h[8:12]}-7{h[12:15]}-{'89ab'[bits & 3]}{h[15:18]}-{h[18:28]}{ms & 0xFF:02x}"


class StandardEvents:
    """The generator's standard events by index, fast enough for millions.

    Event ``i`` is standard event ``i % POOL`` (``standard_event``: a flow-run state change
    with five labels, two related resources and a small payload, about 790 bytes of JSON)
    with its own time-ordered id and ``occurred = start + i * step``. The pool is built and
    encoded once, around placeholders for those two values; after that an event's JSON
    costs two short strings and a join, so bodies for millions of events take seconds.
    """

    POOL = 10_000
    _OCCURRED = "@@occurred@@"
    _ID = "@@id@@"

    def __init__(
        self, seed: int = 0, start: datetime | None = None, step: timedelta | None = None
    ) -> None:
        self.seed = seed
        self.start = start or datetime.now(UTC) - timedelta(hours=1)
        self.step_us = (step or timedelta(milliseconds=1)) // timedelta(microseconds=1)
        self._start_us = (self.start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1
        )
        pool = (standard_event(i, seed=seed) for i in range(self.POOL))
        self._pool: list[dict[str, Any]] = [msgspec.to_builtins(e) for e in pool]
        self._templates = [self._template(event) for event in self._pool]
        self._seconds: dict[int, bytes] = {}

    def _template(self, event: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
        text = _encode({**event, "occurred": self._OCCURRED, "id": self._ID})
        head, _, rest = text.partition(self._OCCURRED.encode())
        middle, _, tail = rest.partition(self._ID.encode())
        return head, middle, tail

    def _values(self, i: int) -> tuple[bytes, bytes]:
        """Event ``i``'s occurred (RFC 3339, UTC) and id, as ASCII."""
        us = self._start_us + i * self.step_us
        second, fraction = divmod(us, 1_000_000)
        prefix = self._seconds.get(second)
        if prefix is None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            prefix = self._seconds[second] = stamp.encode()
        occurred = b"%s.%06dZ" % (prefix, fraction)
        return occurred, _uuid7_text(us // 1000, i, self.seed).encode()

    def json(self, first: int, count: int) -> list[bytes]:
        """Events ``first`` to ``first + count - 1``, each as compact JSON."""
        found = []
        for i in range(first, first + count):
            head, middle, tail = self._templates[i % self.POOL]
            occurred, id_ = self._values(i)
            found.append(b"".join((head, occurred, middle, id_, tail)))
        return found

    def events(self, first: int, count: int) -> list[Event]:
        """The same events as validated :class:`~localevents.Event` objects."""
        return msgspec.json.decode(
            b"[" + b",".join(self.json(first, count)) + b"]", type=list[Event]
        )

    def bodies(self, first: int, count: int, batch: int) -> list[bytes]:
        """Request bodies (JSON arrays) of ``batch`` events each."""
        events = self.json(first, count)
        return [b"[" + b",".join(events[i : i + batch]) + b"]" for i in range(0, count, batch)]

    def frames(self, first: int, count: int) -> list[str]:
        """One JSON text frame per event."""
        return [event.decode() for event in self.json(first, count)]


def as_received(events: Sequence[Event], at: datetime | None = None) -> list[ReceivedEvent]:
    """The events as the store receives them, ``at`` (default: 5 ms after each occurred)."""
    fields = ("occurred", "event", "resource", "related", "payload", "id", "follows")
    lag = timedelta(milliseconds=5)
    return [
        ReceivedEvent(
            **{name: getattr(event, name) for name in fields},
            received=event.occurred + lag if at is None else at,
        )
        for event in events
    ]


# -- the command line ------------------------------------------------------------------------


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """What every benchmark is told: ``quick`` sizes, the ``seed``, where JSON goes, and
    anything its own ``add_arguments`` added (in ``extra``)."""

    quick: bool
    seed: int
    out: Path
    extra: dict[str, Any] = {}


def parse_args(
    description: str | None,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Options:
    """The options every benchmark takes, plus its own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a CI smoke run (seconds)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated events")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results"
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = vars(parser.parse_args(argv))
    quick, seed, out = args.pop("quick"), args.pop("seed"), args.pop("out")
    return Options(quick=quick, seed=seed, out=out, extra=args)


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
    items: Iterable[Any], operation: Callable[[Any], object]
) -> tuple[float, list[float]]:
    """Run ``operation`` on each item: total seconds and each call's seconds."""
    latencies = []
    with Timer() as total:
        for item in items:
            started = time.perf_counter()
            operation(item)
            latencies.append(time.perf_counter() - started)
    return total.elapsed, latencies


_Item = TypeVar("_Item")


def chunks(items: Sequence[_Item], size: int) -> list[Sequence[_Item]]:
    """``items`` cut into consecutive pieces of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def rate(count: int, seconds: float) -> float:
    """Items per second."""
    return count / seconds if seconds > 0 else math.inf
