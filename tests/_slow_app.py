"""The events API (over ``LOCALEVENTS_DATABASE``) behind a delay, for client timeout tests:
a request whose path ends with ``SLOW_PATH`` waits ``SLOW_SECONDS`` before the app gets it,
as a server writing a large Parquet snapshot (or running a long query) would. Serve it with
``uvicorn --factory _slow_app:create``; ``_slow_app:create_cut`` cuts such answers short
instead."""

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


def create_cut() -> Any:
    """The events API whose answers on ``SLOW_PATH`` stop after their first body chunk, as
    an export does when a later page fails on the server (past the query time limit, say):
    the connection is dropped with the answer unfinished."""
    app = create_app(docs=False)
    path = os.environ["SLOW_PATH"]

    async def cut(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(path):
            await app(scope, receive, send)
            return
        chunks = 0

        async def first_chunk_only(message: dict[str, Any]) -> None:
            nonlocal chunks
            if message["type"] == "http.response.body":
                chunks += 1
                if chunks > 1:
                    raise RuntimeError("a later page of the answer failed")
            await send(message)

        await app(scope, receive, first_chunk_only)

    return cut
