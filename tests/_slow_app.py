"""The events API (over ``LOCALEVENTS_DATABASE``) behind a delay, for client timeout tests:
a request whose path ends with ``SLOW_PATH`` waits ``SLOW_SECONDS`` before the app gets it,
as a server writing a large Parquet snapshot (or running a long query) would. Serve it with
``uvicorn --factory _slow_app:create``."""

from __future__ import annotations

import os
from typing import Any

import anyio

from localevents.server import create_app


def create() -> Any:
    """The delayed app (see the module docstring)."""
    app = create_app(docs=False)
    path = os.environ["SLOW_PATH"]
    seconds = float(os.environ["SLOW_SECONDS"])

    async def delayed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith(path):
            await anyio.sleep(seconds)
        await app(scope, receive, send)

    return delayed
