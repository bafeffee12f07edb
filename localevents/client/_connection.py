"""Where the SDK's requests go: a server's URL, or an application inside this process.

``client`` never imports ``server``. The in-process application is provided by
``localevents.ephemeral``, which registers a provider here when it is imported, and pins
every client to the in-process store while an ``ephemeral()`` block is open.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import msgspec

from localevents._exceptions import ConfigurationError
from localevents._settings import (
    ServerType,
    Settings,
    api_key_problem,
    determine_server_type,
    get_settings,
)

__all__ = (
    "EPHEMERAL_API_URL",
    "Connection",
    "Destination",
    "InProcessProvider",
    "auth_headers",
    "connect",
    "pin_in_process",
    "register_in_process_provider",
    "resolve_connection",
    "resolve_destination",
    "unpin_in_process",
)

EPHEMERAL_API_URL = "http://ephemeral-localevents/api"


class InProcessProvider(Protocol):
    """Returns the ASGI application serving ``database`` inside this process."""

    def __call__(self, database: str) -> Any: ...


class Connection(msgspec.Struct, frozen=True, kw_only=True):
    """A resolved destination: the API URL, the key to send, and the in-process app, if any."""

    api_url: str
    api_key: str | None = None
    app: Any = None

    @property
    def server_type(self) -> ServerType:
        """EPHEMERAL for an in-process app, else SERVER."""
        return ServerType.EPHEMERAL if self.app is not None else ServerType.SERVER


_lock = threading.Lock()
_provider: list[InProcessProvider] = []
_pinned: list[str] = []


def register_in_process_provider(provider: InProcessProvider) -> None:
    """Install the function that builds the in-process app (done by ``localevents.ephemeral``)."""
    with _lock:
        _provider[:] = [provider]


def pin_in_process(database: str) -> None:
    """Route every new client to the in-process store on ``database`` until unpinned."""
    with _lock:
        _pinned.append(database)


def unpin_in_process(database: str) -> None:
    """Undo the innermost matching :func:`pin_in_process`."""
    with _lock:
        for i in range(len(_pinned) - 1, -1, -1):
            if _pinned[i] == database:
                del _pinned[i]
                return


def _in_process(database: str) -> Connection:
    if not _provider:
        raise ConfigurationError(
            "ephemeral mode needs the server extras: import localevents (not only "
            "localevents.client) so the in-process application is registered"
        )
    return Connection(api_url=EPHEMERAL_API_URL, app=_provider[0](database))


class Destination(msgspec.Struct, frozen=True, kw_only=True):
    """Where requests go, decided but not connected: a server's URL (and key), or the
    in-process store on ``database``. Hashable, so it can key things per destination."""

    api_url: str | None = None
    api_key: str | None = None
    database: str | None = None


def resolve_destination(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
) -> Destination:
    """Decide where requests go: an explicit URL, an open ``ephemeral()`` block, the
    configured server, or the in-process store on the default database."""
    settings = settings or get_settings()
    if api_url is not None:
        return Destination(api_url=api_url, api_key=api_key or settings.api_key)
    with _lock:
        pinned = _pinned[-1] if _pinned else None
    if pinned is not None:
        return Destination(database=pinned)
    server_type = determine_server_type(settings)
    if server_type is ServerType.SERVER:
        return Destination(api_url=settings.api_url, api_key=api_key or settings.api_key)
    if server_type is ServerType.EPHEMERAL:
        return Destination(database=settings.database_path)
    raise ConfigurationError(
        "no events API configured: set LOCALEVENTS_API_URL to a server's URL (ending in "
        "/api), or allow ephemeral mode with LOCALEVENTS_EPHEMERAL=true"
    )


def connect(destination: Destination) -> Connection:
    """The connection to ``destination`` from this thread (the in-process app is per thread)."""
    if destination.database is not None:
        return _in_process(destination.database)
    assert destination.api_url is not None
    if destination.api_key is not None:
        _check_key(destination.api_key)
    return Connection(api_url=destination.api_url, api_key=destination.api_key)


def _check_key(api_key: str) -> None:
    """Refuse a key that an HTTP header cannot carry (a newline read from a file, say),
    naming the character and where it is, never the key: sent, it failed as a transient
    protocol error, retried for a minute, with the key in the message and the logs."""
    problem = api_key_problem(api_key)
    if problem is not None:
        raise ConfigurationError(f"the API key (api_key=, else LOCALEVENTS_API_KEY) {problem}")


def resolve_connection(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
) -> Connection:
    """Decide where requests go (see :func:`resolve_destination`) and connect from this thread."""
    return connect(resolve_destination(api_url=api_url, api_key=api_key, settings=settings))


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header for a key (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
