"""The Litestar application factory.

``create_app()`` builds the API under ``/api`` over the events file named by the settings;
``litestar --app localevents.server:create_app run`` and ``localevents serve`` both use it.
The app holds the process-wide store for its lifespan (opened by the first app on a path,
closed by the last), so several apps and threads share one DuckDB instance.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.plugins.core import MsgspecDIPlugin

from localevents._exceptions import domain_error
from localevents._settings import Settings, get_settings
from localevents.server._auth import ApiKeyMiddleware
from localevents.server._errors import exception_handlers
from localevents.server._export_routes import EXPORT_ROUTES
from localevents.server._metrics_route import METRICS_ROUTES
from localevents.server._openapi import add_body_schemas
from localevents.server._origins import OriginMiddleware
from localevents.server._paths import API_PREFIX
from localevents.server._retention import retention_lifespan
from localevents.server._routes import ROUTES
from localevents.server._websockets import WEBSOCKETS
from localevents.storage._engine import open_store, release

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar.plugins import PluginProtocol
    from litestar.types import (
        LifeSpanReceive,
        LifeSpanScope,
        LifeSpanSend,
        LifeSpanSendMessage,
        Receive,
        Scope,
        Send,
    )

__all__ = ("API_PREFIX", "create_app")

_VERSION = "0.1.0"


_OPENAPI = OpenAPIConfig(
    title="localevents",
    version=_VERSION,
    description="An embeddable event store speaking the Prefect events protocol.",
    path=f"{API_PREFIX}/docs",
    render_plugins=[ScalarRenderPlugin()],
    use_handler_docstrings=True,
)


def _lifespan(settings: Settings) -> Any:
    @contextlib.asynccontextmanager
    async def hold_store(app: Litestar) -> AsyncIterator[None]:
        store = await anyio.to_thread.run_sync(open_store, settings.database_path)
        app.state.store = store
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release, store)
            # An app outlives its lifespan (ephemeral mode keeps it for the next one): a
            # closed store left in its state would hold DuckDB's objects until the
            # interpreter ends, which then reports each of them as leaked.
            del app.state.store

    return hold_store


class _App(Litestar):
    """Litestar with msgspec's plugin alone.

    Every model of the API is a msgspec Struct. Litestar adds its pydantic and attrs
    plugins whenever those libraries are installed, importing them into every process that
    builds an app: with pydantic installed (as beside Prefect) that took ~100 ms of an
    ephemeral start-up here, and attrs 18-21 ms. An app built by this factory has no use
    for them; a user's own plugins (none today) would still be kept.
    """

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        plugins.append(MsgspecDIPlugin())
        return plugins

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        """Serve ``scope``; a start-up that fails for a reason localevents explains (a held
        or missing events file) tells the server that reason alone (see
        :func:`_explained_startup_failure`)."""
        if scope["type"] == "lifespan":
            send = _explained_startup_failure(cast("LifeSpanSend", send))
        await super().__call__(scope, receive, send)


def _explained_startup_failure(send: LifeSpanSend) -> LifeSpanSend:
    """``send``, with a failed start-up's message cut to the error's own line when that is
    a :class:`~localevents.LocalEventsError`: Litestar sends the whole formatted traceback,
    which uvicorn prints (67 lines around "the events file ... is in use by PID 123" under
    ``litestar run``). Another failure, a bug, keeps its traceback."""

    async def sending(message: LifeSpanSendMessage) -> None:
        if message["type"] == "lifespan.startup.failed":
            explained = domain_error(sys.exc_info()[1])  # sent while Litestar handles it
            if explained is not None:
                message = {"type": "lifespan.startup.failed", "message": str(explained)}
        await send(message)

    return sending


def create_app(
    settings: Settings | None = None, *, database: str | None = None, docs: bool = True
) -> Litestar:
    """Build the events API over ``database`` (default: the settings' events file).

    ``docs=False`` leaves out the OpenAPI document and its pages (in-process apps).
    """
    settings = settings or get_settings()
    if database is not None:
        settings = settings.replace(database=database)
    middleware: list[Any] = [lambda app: OriginMiddleware(app, settings.server_allowed_origins)]
    if settings.api_key:
        key = settings.api_key
        middleware.append(lambda app: ApiKeyMiddleware(app, key))
    api = Router(
        path=API_PREFIX,
        route_handlers=[*ROUTES, *EXPORT_ROUTES, *WEBSOCKETS, *METRICS_ROUTES],
        tags=["Events"],
    )
    app = _App(
        route_handlers=[api],
        lifespan=[_lifespan(settings), retention_lifespan(settings)],
        middleware=middleware,
        exception_handlers=exception_handlers,
        request_max_body_size=settings.server_maximum_body_bytes,
        logging_config=None,
        openapi_config=_OPENAPI if docs else None,
    )
    app.state.settings = settings
    if docs:
        add_body_schemas(app)
    return app
