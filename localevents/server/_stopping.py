"""What a request still running when ``localevents serve`` stops is told.

A stopping uvicorn waits a grace period for the requests in progress (a client still
uploading its body, a long export), then cancels their tasks. Left alone, that reached the
client as ``500 Internal Server Error``, which the SDK does not retry, and the log as a
fifty-line traceback. :class:`AnswerCutRequests` wraps the app ``serve`` hands uvicorn:
a request cut before its answer started gets 503 (retry later: the SDK retries it, and an
event already stored is not stored twice, D2) and one warning line; an answer already
under way (a streamed export) ends short with one warning line instead.

A WebSocket's client has been told already: a stopping uvicorn closes every open socket
with 1012 (service restart: the SDK reconnects, and resumes where it was) as the stop
begins. Its task may still run past the grace period, waiting for a read that takes until
the query time limit (a subscriber's backfill): cancelled, it ends with one warning line
too, instead of a traceback.

Only ``serve`` uses it: there, uvicorn's stop is the one thing that cancels a request's
task. In process (``ephemeral()``), a request runs in its caller's task, whose
cancellation must reach the caller.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from localevents._exceptions import ServiceUnavailable
from localevents.server._errors import send_error

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("CUT_DETAIL", "AnswerCutRequests")

logger = logging.getLogger("localevents.server")

CUT_DETAIL = (
    "the server stopped before it finished this request; retry it (an event already "
    "stored is not stored twice)"
)


class AnswerCutRequests:
    """ASGI wrapper answering 503 to an HTTP request whose task the server cancelled, and
    ending a WebSocket's the same way without a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request; if the server cancels it, answer or end it as said above."""
        if scope["type"] != ScopeType.HTTP:
            await self._socket(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except asyncio.CancelledError:
            _uncancel()
            where = f"{scope['method']} {scope['path']}"
            if started:
                logger.warning("%s: the answer was cut short, the server is stopping", where)
                return
            logger.warning("%s: answered 503, the server stopped before it finished", where)
            error = (503, CUT_DETAIL, ServiceUnavailable.__name__)
            await send_error(
                scope, receive, send, error, {"Retry-After": "1", "Connection": "close"}
            )

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a WebSocket or the lifespan; if the server cancels a WebSocket, end it with
        one line (its client was closed with 1012 as the stop began). A second stop signal
        makes uvicorn skip the application's shutdown and the lifespan is then cancelled:
        one line says so too, not the traceback the application reports its failure with
        (nothing stored is lost)."""
        kind: object = scope["type"]  # "lifespan" too, which Scope does not list
        lifespan = kind == "lifespan"
        if lifespan:
            send = _lifespan_sender(send)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if lifespan:  # said by its sender; the loop is closing
                _uncancel()
                return
            if scope["type"] != ScopeType.WEBSOCKET:
                raise
            _uncancel()
            where = f"WebSocket {scope['path']}"
            logger.warning("%s: ended, the server stopped before it finished", where)


def _uncancel() -> None:
    """Take back the server's cancellation of this task, which ends as it returns."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _lifespan_sender(send: Send) -> Send:
    """``send`` for the lifespan, but for a shutdown failure caused by its cancellation."""

    async def sending(message: Message) -> None:
        kind: object = message["type"]  # a lifespan message, which Message does not list
        task = asyncio.current_task()
        if kind == "lifespan.shutdown.failed" and task is not None and task.cancelling():
            logger.warning("stopped at once by a second signal, without the usual shutdown")
            return
        await send(message)

    return sending
