"""The ids of recent writes, in memory, so that the duplicate check of a batch (D2) rarely
has to read the file.

Event ids are UUIDv7: time-ordered, but only by each producer's clock. Two producers whose
clocks differ by a few milliseconds interleave their ids, so a batch often holds ids below
the newest one stored, and each such id could be a repeat of any stored event. Looking
them up in DuckDB (a semi-join over the id column) cost about 9 ms per 1000-event batch,
two thirds of the batch's own commit. :class:`RecentIds` answers for every id above its
:attr:`~RecentIds.horizon` from a set of the ids stored since, exactly, and leaves only
the ids at or below it to the file.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("RECENT_IDS", "RecentIds")

RECENT_IDS = 131_072
"""How many recently stored ids are kept (about 10 MB): three seconds of ingest at full
speed, minutes at the rates producers usually send."""


class RecentIds:
    """Every stored id above :attr:`horizon` (ids as integers), as a set.

    The invariant: an id above the horizon is stored if and only if it is in the set. It
    starts true with the horizon at the newest stored id and the set empty; :meth:`add`
    keeps it (given the ids each commit stored), and so does dropping the oldest batches
    once there are more than ``capacity`` ids, because the horizon rises to the largest id
    dropped. A deletion breaks it: call :meth:`forget` afterwards.

    Not thread-safe: the store's writer is its only user.
    """

    def __init__(self, newest: int, capacity: int = RECENT_IDS) -> None:
        self.horizon = newest
        """Ids at or below this are for the file to answer."""
        self.newest = newest
        """The largest id stored (-1 when none is)."""
        self._capacity = capacity
        self._ids: set[int] = set()
        self._batches: collections.deque[list[int]] = collections.deque()

    def known(self, ids: Sequence[int]) -> tuple[set[int], list[int]]:
        """Of ``ids``: those known to be stored, and those at or below the horizon (the
        rest are known not to be stored)."""
        horizon = self.horizon
        return self._ids.intersection(ids), [i for i in ids if i <= horizon]

    def add(self, stored: Sequence[int]) -> None:
        """Note the ids that a commit stored (each one new)."""
        if not stored:
            return
        above = [i for i in stored if i > self.horizon]
        self._ids.update(above)
        self._batches.append(above)
        self.newest = max(self.newest, *stored)
        while len(self._ids) > self._capacity:
            dropped = self._batches.popleft()
            self._ids.difference_update(dropped)
            self.horizon = max(self.horizon, max(dropped, default=self.horizon))

    def forget(self) -> None:
        """Start again from the newest id, after a deletion: the file then answers for
        every id so far, and a deleted event's id is new again."""
        self.horizon = self.newest
        self._ids.clear()
        self._batches.clear()

    def __len__(self) -> int:
        return len(self._ids)
