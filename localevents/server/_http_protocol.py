"""uvicorn's HTTP protocol (h11), with a deadline for a request's headers.

uvicorn times out a keep-alive connection that stays idle between requests, but not one
that never finishes sending a request's headers (or sends nothing at all): each such
connection holds a file descriptor for good, and a few thousand of them (slowloris) left
a server reachable beyond loopback answering nothing ("Too many open files"). This
protocol closes a connection whose request headers are not complete
:attr:`~HeaderDeadlineH11Protocol.headers_timeout` seconds
(``LOCALEVENTS_SERVER_HEADERS_TIMEOUT``, 10 s) after it opened, or after the first bytes of
a later request arrived. A body that is slow to come is the app's to wait for (the request is
then under way, and counted by the server).

``localevents serve`` uses it (``http=with_headers_timeout(seconds)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = ("HeaderDeadlineH11Protocol", "with_headers_timeout")


class HeaderDeadlineH11Protocol(H11Protocol):
    """Close a connection whose request headers are overdue (see the module)."""

    headers_timeout = 10.0
    """Seconds a client has to send a request's headers, from the connection's opening or
    the first bytes of the request."""
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept as uvicorn does, and start waiting for the first request's headers."""
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        """Take the bytes as uvicorn does; the deadline runs while headers are incomplete."""
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # part of a request line or its headers
            self._expect_headers()
        else:
            self._headers_arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline, then close as uvicorn does."""
        self._headers_arrived()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        if self._headers_deadline is None:
            self._headers_deadline = self.loop.call_later(self.headers_timeout, self._overdue)

    def _headers_arrived(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _overdue(self) -> None:
        self._headers_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_headers_timeout(seconds: float) -> type[HeaderDeadlineH11Protocol]:
    """The protocol with ``seconds`` for a request's headers (uvicorn takes a class)."""
    return type(
        "HeaderDeadlineH11Protocol", (HeaderDeadlineH11Protocol,), {"headers_timeout": seconds}
    )
