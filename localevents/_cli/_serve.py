"""``localevents serve``: the events API on a real server (uvicorn), until interrupted."""

from __future__ import annotations

import gc
import logging
import socket
from typing import Any

import click

from localevents._cli._signals import StopSignals
from localevents._exceptions import LocalEventsError
from localevents._settings import get_settings, temporary_settings

__all__ = ("serve",)

logger = logging.getLogger("localevents")


YOUNG_OBJECTS = 20_000
"""New container objects between two collections of the youngest generation (Python's
default is 700)."""


def _tune_collector() -> None:
    """Set the garbage collector for a long-running server (this process is ours; in
    process, localevents leaves the interpreter's settings alone).

    What startup built (modules, the app) is frozen out of every later collection, and
    the youngest generation is collected after :data:`YOUNG_OBJECTS` new objects instead
    of 700. A request of 1000 events allocates tens of thousands of objects, so with the
    defaults the collector ran dozens of times per request, and every so often walked
    every object alive: about a tenth of the server's CPU under ingest beside 100
    subscribers (perf). Measured in interleaved pairs: 42.5 -> 37.4 ms of server CPU per
    1000-event request beside them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (uvicorn listens on it), so that a port in use
    is one clear line before anything claims to serve.

    It is made with its protocol named (``IPPROTO_TCP``, not the default 0): asyncio turns
    Nagle's algorithm off (``TCP_NODELAY``) only on connections whose socket says TCP.
    With Nagle on, a frame or response written while the client had not yet acknowledged
    the previous one waited for the client's delayed acknowledgement: about 2% of live
    events reached their subscriber 25-35 ms late.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise click.ClickException(
            f"cannot listen on {host} port {port}: {reason} (another server there? choose "
            "another port with --port or LOCALEVENTS_SERVER_PORT)"
        ) from exc
    sock.set_inheritable(True)
    return sock


def _log_as_uvicorn_does(level: str) -> None:
    """Write localevents' log lines as uvicorn writes its own (``WARNING:  `` and the
    message, in colour on a terminal), with the logger's name: one log, one format."""
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


@click.command()
@click.option("--host", help="Interface to bind (default LOCALEVENTS_SERVER_HOST, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port (default LOCALEVENTS_SERVER_PORT, 4200; 0 picks a free one).",
)
@click.option(
    "--database",
    help="Events file (default LOCALEVENTS_DATABASE, else ~/.localevents/events.duckdb); "
    "its folder must exist.",
)
@click.option("--api-key", help="Require this key from clients (default LOCALEVENTS_API_KEY).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log a line per request and WebSocket (uvicorn's access log); without it, info "
    "lines are localevents' own.",
)
def serve(  # noqa: PLR0917 - click passes every option by keyword
    host: str | None,
    port: int | None,
    database: str | None,
    api_key: str | None,
    log_level: str,
    access_log: bool,
) -> None:
    """Serve the events API (under /api) until interrupted."""
    import uvicorn

    from localevents.server import CheckpointWSProtocol, create_app
    from localevents.server._http_protocol import with_headers_timeout
    from localevents.server._origins import LoopbackHosts, is_loopback_host
    from localevents.server._stopping import AnswerCutRequests
    from localevents.server._ws_protocol import websocket_message_limit
    from localevents.storage import open_store, release

    changes: dict[str, Any] = {
        name: value
        for name, value in {
            "server_host": host,
            "server_port": port,
            "database": database,
            "api_key": api_key,
        }.items()
        if value is not None
    }
    _log_as_uvicorn_does(log_level)
    try:  # the environment and the options are read here: a bad one is one line
        chosen = get_settings().replace(**changes)
    except LocalEventsError as exc:
        raise click.ClickException(str(exc)) from exc
    with temporary_settings(chosen) as settings, StopSignals() as stopping:
        if not settings.api_key and not is_loopback_host(settings.server_host):
            logger.warning(
                "serving on %s without an API key: anyone who can reach it can read and "
                "write events; set LOCALEVENTS_API_KEY",
                settings.server_host,
            )
        # the port first, then the file: neither a port in use nor a held file leaves
        # anything behind (a new events file would otherwise be made for nothing), and
        # both are one clear line, not a failed startup
        host = settings.server_host
        with _listening_socket(host, settings.server_port) as sock:
            try:
                store = open_store(settings.database_path)
            except LocalEventsError as exc:
                raise click.ClickException(str(exc)) from exc
            try:
                port = sock.getsockname()[1]  # the one picked for port 0
                url = f"http://{f'[{host}]' if ':' in host else host}:{port}/api"
                click.echo(f"localevents: serving {url} from {settings.database_path}", err=True)
                click.echo(f"localevents: API docs at {url}/docs", err=True)
                app: Any = AnswerCutRequests(create_app(settings))  # a 503 for what a stop cuts
                if is_loopback_host(host):  # no other site's name, even one made to resolve here
                    app = LoopbackHosts(app)
                config = uvicorn.Config(
                    app,
                    log_level=log_level,
                    access_log=access_log,
                    lifespan="on",
                    # a request's headers have LOCALEVENTS_SERVER_HEADERS_TIMEOUT to come
                    http=with_headers_timeout(settings.server_headers_timeout.total_seconds()),
                    ws=CheckpointWSProtocol,  # a pong means "every frame before the ping stored"
                    ws_max_size=websocket_message_limit(settings),
                    # a connection whose peer vanished (no FIN) is closed, its task ended
                    ws_ping_interval=settings.server_websocket_ping_interval.total_seconds(),
                    ws_ping_timeout=settings.server_websocket_ping_timeout.total_seconds(),
                    # a subscriber that stopped reading would otherwise hold a stop up for ever
                    timeout_graceful_shutdown=round(
                        settings.server_shutdown_timeout.total_seconds()
                    ),
                )
                _tune_collector()
                uvicorn.Server(config).run(sockets=[sock])
            finally:  # on a stop signal too (see StopSignals): a closed file holds everything
                stopping.finishing()
                release(store)
