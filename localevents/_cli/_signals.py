"""How ``localevents serve`` stops on SIGTERM or Ctrl-C with its events file closed.

uvicorn handles both signals while it serves, shuts down gracefully, then raises the
signal again so that the process ends the way the signal asks. Left to Python's defaults,
that ended the process at once on SIGTERM (the usual stop from systemd, Docker or ``kill``)
before the events file was closed: DuckDB never folded its write-ahead log into the file,
so a copy of ``events.duckdb`` alone, taken after a clean stop, held none of the events
in that log (up to 64 MB of them). Ctrl-C closed the file but ended with "Aborted!" and
exit status 1.

:class:`StopSignals` turns the signal raised again into an exception that unwinds
``serve`` through its ``finally`` (which closes the file), then ends the process by that
same signal, as uvicorn meant. While the file closes, a second signal ends the process at
once, as a crash would: nothing stored is lost, the log is folded in at the next open.

:class:`DeferredStop` serves ``import``, whose own code runs the store's writes in this
thread: an exception raised wherever the signal lands could cut the store's bookkeeping
around a commit short (leaving it waiting for ever as it closes). The signal is noted and
acted on between batches.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import FrameType, TracebackType

__all__ = ("DeferredStop", "StopSignals")

_STOPPING = (signal.SIGINT, signal.SIGTERM)


class _Stop(BaseException):
    """A stop signal, raised in the main thread by :class:`StopSignals`' handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM handled by :meth:`_handle` in the block; on leaving, a signal
    that came (:attr:`signum`) is delivered again with the system's default action (the
    process ends by it), whatever exception it turned into on the way.

    Outside the main thread (where Python cannot handle signals) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in _STOPPING}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def finishing(self) -> None:
        """From now on, a stop signal ends the process without unwinding anything."""
        for sig in self._previous:
            signal.signal(sig, signal.SIG_DFL)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal() returned
        # A signal that came inside a DuckDB statement reaches here as DuckDB's own error
        # ("Query interrupted"), not as the exception the handler raised.
        if self.signum is not None:
            signal.signal(self.signum, signal.SIG_DFL)
            signal.raise_signal(self.signum)
            return True  # not reached: the default action ends the process
        return False


class StopSignals(_Signals):
    """In the block, SIGINT and SIGTERM raise an exception instead of ending the process
    (and :attr:`signum` says which came); :meth:`finishing` makes a further one end it at
    once; on leaving, the signal is delivered again (see :class:`_Signals`)."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        raise _Stop(signum)


class DeferredStop(_Signals):
    """In the block, the first SIGINT or SIGTERM is noted (:attr:`signum`) and acted on
    only where the work calls :meth:`check`, between steps that must not be cut (a commit
    and the store's bookkeeping around it); a second one ends the process at once. On
    leaving, a noted signal is delivered again (see :class:`_Signals`)."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.finishing()  # a second one: the user insists

    def check(self) -> None:
        """Raise (unwinding the block) if a stop signal came."""
        if self.signum is not None:
            raise _Stop(self.signum)
