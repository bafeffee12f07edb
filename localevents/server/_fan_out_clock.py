"""Where the live hub's fan-out spends its time, in all and matching each filter, so that
it can tell which filters hold it back when it falls behind the commits (see ``_hub``)."""

from __future__ import annotations

import threading
from time import perf_counter

__all__ = ("FanOutClock",)


class FanOutClock:
    """Where the hub's thread spent its time since the fan-out last caught up (see
    :meth:`restart`): in all, and matching each filter (by :attr:`Subscription.key`), the
    commit and the matching under way included. Two clock readings per commit and per
    filter matched, never per event; written by the hub's thread, read by committers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0.0
        self._spent: dict[bytes, float] = {}
        self._tested: dict[bytes, int] = {}
        self._commit_since: float | None = None
        self._matching: tuple[bytes, float] | None = None

    def start_commit(self) -> None:
        with self._lock:
            self._commit_since = perf_counter()

    def end_commit(self) -> None:
        with self._lock:
            if self._commit_since is not None:
                self._busy += perf_counter() - self._commit_since
            self._commit_since = None

    def start_matching(self, key: bytes, tested: int) -> None:
        """The filter ``key`` is about to be tested on ``tested`` events."""
        with self._lock:
            self._matching = key, perf_counter()
            self._tested[key] = self._tested.get(key, 0) + tested

    def end_matching(self) -> None:
        with self._lock:
            if self._matching is not None:
                key, since = self._matching
                self._spent[key] = self._spent.get(key, 0.0) + perf_counter() - since
            self._matching = None

    def restart(self) -> None:
        """Count from now on (what is under way, from now)."""
        with self._lock:
            now = perf_counter()
            self._busy, self._spent, self._tested = 0.0, {}, {}
            if self._commit_since is not None:
                self._commit_since = now
            if self._matching is not None:
                self._matching = self._matching[0], now

    def spent(self) -> tuple[float, dict[bytes, float]]:
        """The seconds the fan-out has worked, and those it spent matching each filter
        (on its own tests: see :meth:`CommitMatcher.candidates`)."""
        with self._lock:
            now = perf_counter()
            busy, spent = self._busy, dict(self._spent)
            if self._commit_since is not None:
                busy += now - self._commit_since
            if self._matching is not None:
                key, since = self._matching
                spent[key] = spent.get(key, 0.0) + now - since
        return busy, spent

    def per_event(self, key: bytes, seconds: float) -> float:
        """The seconds per event tested (or being tested) of the filter ``key``, which
        took ``seconds``."""
        with self._lock:
            return seconds / max(self._tested.get(key, 0), 1)
