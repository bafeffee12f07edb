"""Which web pages may use the API from a browser, and which host names a loopback server
answers to.

A browser lets any page send a POST, or open a WebSocket, to any address, including
``http://127.0.0.1:4200``: a server without a key (the default) would store what a page
of any site sent and stream the operator's events to it. Every such request carries the
page's ``Origin``; programs (the SDK, Prefect's clients, curl) send none.
:class:`OriginMiddleware` refuses a request whose ``Origin`` is neither the server's own
(its docs page) nor one named in ``LOCALEVENTS_SERVER_ALLOWED_ORIGINS``: 403, and a
WebSocket is refused before it is accepted (403 too).

A page can still reach a loopback server under a name of its own site that it made resolve
to 127.0.0.1 (DNS rebinding): then its requests are same-origin. :class:`LoopbackHosts`,
which ``localevents serve`` puts in front of the app when it listens on a loopback address,
answers only requests whose ``Host`` is a loopback name (``localhost``, ``*.localhost``,
``127.0.0.1``, ``[::1]``, any port); others get 400.
"""

from __future__ import annotations

import ipaddress
from http import HTTPStatus
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from localevents.server._errors import send_error
from localevents.server._handshake import close_reason

if TYPE_CHECKING:
    from collections.abc import Collection

    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ("LoopbackHosts", "OriginMiddleware", "is_loopback_host")

_ANY = "*"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _own_origin(scope: Scope) -> str | None:
    """The origin a page served by this server has, from the request's scheme and Host."""
    host = _header(scope, b"host")
    if host is None:
        return None
    scheme = "https" if scope["scheme"] in ("https", "wss") else "http"
    return f"{scheme}://{host}".lower()


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """Answer ``status`` with ``detail`` (the error named as HTTP names the status); a
    WebSocket is refused before it is accepted (a real server answers 403)."""
    if scope["type"] == ScopeType.WEBSOCKET:
        await receive()  # websocket.connect: refuse only after it
        await send({"type": "websocket.close", "code": 1008, "reason": close_reason(detail)})
        return
    await send_error(
        scope, receive, send, (status, detail, HTTPStatus(status).phrase.replace(" ", ""))
    )


class OriginMiddleware:
    """ASGI middleware refusing requests sent by a web page of another origin (403)."""

    def __init__(self, app: ASGIApp, allowed: Collection[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on unless its ``Origin`` is refused."""
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            origin = _header(scope, b"origin")
            if origin is not None and not self._allows(origin.rstrip("/").lower(), scope):
                detail = (
                    f"a web page at {origin} may not use this API: requests from other "
                    "sites are refused unless LOCALEVENTS_SERVER_ALLOWED_ORIGINS names them"
                )
                await _refuse(scope, receive, send, 403, detail)
                return
        await self.app(scope, receive, send)

    def _allows(self, origin: str, scope: Scope) -> bool:
        return _ANY in self.allowed or origin in self.allowed or origin == _own_origin(scope)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or address, no port) names this machine's loopback."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name or address of a ``Host`` header, without its port."""
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if ":" in host_header else host_header


class LoopbackHosts:
    """ASGI wrapper answering only requests whose ``Host`` names the loopback (400)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on if its ``Host`` is a loopback name (or absent: HTTP/1.0)."""
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            host = _header(scope, b"host")
            if host is not None and not is_loopback_host(_host_name(host)):
                detail = (
                    f"this server listens on a loopback address and answers only to "
                    f"localhost, 127.0.0.1 and [::1], not to the Host {host!r}"
                )
                await _refuse(scope, receive, send, 400, detail)
                return
        await self.app(scope, receive, send)
