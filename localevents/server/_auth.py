"""API-key authentication of HTTP requests (D12).

With a key configured, every HTTP route but the health and readiness probes requires
``Authorization: Bearer <key>``, or HTTP Basic whose decoded credential is the key (so
Prefect clients configured with an auth string work too). Keys are compared in constant
time. WebSockets authenticate in-band, in their handshake.
"""

from __future__ import annotations

import base64
import hmac
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from localevents._exceptions import AuthenticationError
from localevents.server._errors import send_error

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ("OPEN_PATHS", "ApiKeyMiddleware", "key_matches")

OPEN_PATHS = frozenset({"/api/health", "/api/ready"})


def key_matches(given: str | None, key: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode(), key.encode())


def _presented_key(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer":
        return credentials
    if scheme == "basic":
        try:
            return base64.b64decode(credentials, validate=True).decode()
        except ValueError:  # not base64 (non-ASCII characters too), or not UTF-8
            return None
    return None


class ApiKeyMiddleware:
    """ASGI middleware refusing HTTP requests without the API key (401)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key, then pass the request on (or answer 401)."""
        if scope["type"] != ScopeType.HTTP or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        if key_matches(_presented_key(authorization), self.key):
            await self.app(scope, receive, send)
            return
        reason = "a wrong API key was given" if authorization else "no API key was given"
        detail = f"{reason}: send 'Authorization: Bearer <LOCALEVENTS_API_KEY>'"
        error = (401, detail, AuthenticationError.__name__)
        challenge = {"WWW-Authenticate": 'Bearer realm="localevents"'}
        await send_error(scope, receive, send, error, challenge)
