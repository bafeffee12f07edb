"""Every error answer has one shape: ``{"detail": <one readable line>, "error": <class>}``.

Validation errors (422) also carry Prefect's keys, ``exception_message`` and
``exception_detail``, so Prefect clients print them the way they print Prefect's own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar import MediaType, Response
from litestar.exceptions import HTTPException, ValidationException

from localevents._exceptions import InvalidRequestError, LocalEventsError, RequestTooLarge
from localevents._log_records import ANSWERED
from localevents.server._paths import API_PREFIX

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar import Request
    from litestar.types import ExceptionHandlersMap, Receive, Scope, Send

__all__ = ("error_response", "exception_handlers", "send_error")

logger = logging.getLogger("localevents.server")


_BATCH_PATHS = (f"{API_PREFIX}/events", f"{API_PREFIX}/events/")
"""Where a body is a batch of events, limited by the setting (other bodies are queries)."""


def error_response(status: int, detail: str, error: str, **extra: Any) -> Response[Any]:
    """A JSON error answer."""
    return Response(
        content={"detail": detail, "error": error, **extra},
        status_code=status,
        media_type=MediaType.JSON,
    )


async def send_error(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: tuple[int, str, str],
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer an HTTP request with the JSON error ``(status, detail, error class)`` from
    outside Litestar's routing (an ASGI middleware or wrapper), with ``headers``."""
    response = error_response(*error)
    response.headers.update(headers or {})
    await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]


def _localevents_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, LocalEventsError)
    status = exc.status_code
    if status == 503:  # expected and explained (closed, or busy): the reason is enough
        logger.warning("request refused: %s", exc, extra=ANSWERED)
    elif status == 504:  # a query past the time limit: likewise
        logger.warning("query stopped: %s", exc, extra=ANSWERED)
    elif status >= 500:
        logger.error("request failed: %s", exc, exc_info=exc)
    extra: dict[str, Any] = {}
    if status == 422:
        extra = {
            "exception_message": "Invalid request received.",
            "exception_detail": [{"msg": str(exc), "type": type(exc).__name__}],
        }
    response = error_response(status, str(exc), type(exc).__name__, **extra)
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


def _http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        advice = (
            "(LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES); send smaller batches"
            if request.scope["path"].endswith(_BATCH_PATHS)
            else "for a query"
        )
        return _localevents_error(
            request,
            RequestTooLarge(f"the request body is larger than the limit of {limit} bytes {advice}"),
        )
    if isinstance(exc, ValidationException):  # e.g. a missing query parameter: 422, as Prefect
        return _localevents_error(request, InvalidRequestError(str(exc.detail)))
    path = request.scope["path"]  # not request.url: a Host header it cannot parse is no 500
    if exc.status_code == 404 and path != API_PREFIX and not path.startswith(f"{API_PREFIX}/"):
        # Most likely an API URL without its /api (LOCALEVENTS_API_URL=http://host:4200).
        detail = (
            f"nothing is served at {path}: the events API is under {API_PREFIX} (for example "
            f"POST {API_PREFIX}/events), so an API URL ends in {API_PREFIX}"
        )
        return error_response(404, detail, type(exc).__name__)
    return error_response(exc.status_code, str(exc.detail), type(exc).__name__)


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.error("unexpected error", exc_info=exc)
    return error_response(500, "Internal Server Error", "InternalServerError")


exception_handlers: ExceptionHandlersMap = {
    LocalEventsError: _localevents_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
