"""The store's own threads that work inside DuckDB, stopped before the interpreter finalizes.

Python ends a daemon thread that takes the GIL back during finalization where it stands.
One that is inside DuckDB then (a cache release right after a large commit, a retention
pass) is ended in the middle of DuckDB's C++, and the process aborts ("FATAL: exception not
rethrown", exit 134) after the program itself has finished: a program that ends with a
store still open (an ephemeral block left open in a daemon thread, say). So at exit each
such thread is stopped, the work in progress finishing first.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Protocol

__all__ = ("Stoppable", "stop_at_exit")


class Stoppable(Protocol):
    """What owns such a thread."""

    def stop(self) -> None:
        """Stop the thread, waiting for the work in progress."""


_OWNERS: weakref.WeakSet[Stoppable] = weakref.WeakSet()


def stop_at_exit(owner: Stoppable) -> None:
    """Have ``owner.stop()`` called at interpreter exit, if ``owner`` still lives."""
    _OWNERS.add(owner)


def _stop_all() -> None:
    for owner in list(_OWNERS):
        owner.stop()


atexit.register(_stop_all)
