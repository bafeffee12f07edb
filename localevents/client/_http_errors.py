"""Readable errors for error answers: one line, as the class the server named (shared by the
async and the sync HTTP client and the WebSocket handshake)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from localevents import _exceptions
from localevents._exceptions import HTTPStatusError, LocalEventsError, ServerUnreachable

__all__ = ("error_for_response", "server_explanation", "transport_failure", "unreachable_error")

_STATUS_ERRORS: dict[int, type[LocalEventsError]] = {
    401: _exceptions.AuthenticationError,
    413: _exceptions.RequestTooLarge,
    422: _exceptions.InvalidRequestError,
    503: _exceptions.ServiceUnavailable,
}
_MAXIMUM_TEXT = 500


def error_for_response(response: httpx.Response) -> HTTPStatusError:
    """One readable line for an error answer, as the :class:`HTTPStatusError` matching its body.

    The body must have been read. The class is also the domain class the server named in the
    body's ``"error"`` key, else the one its status implies, so ``except InvalidPageToken`` works.
    """
    request = response.request
    message = f"{response.status_code} {response.reason_phrase} for {request.method} {request.url}"
    body = _json_body(response)
    explanation = _server_message(response, body)
    if explanation:
        message = f"{message}: {explanation}"
    domain = _domain_class(response.status_code, body)
    error_class = HTTPStatusError if domain is None else _HTTP_ERRORS[domain]
    return error_class(message, request=request, response=response)


class _ServerUnreachable(ServerUnreachable, httpx.ConnectError):
    """:class:`ServerUnreachable` that code catching ``httpx.ConnectError`` still catches
    (shown as ``localevents.ServerUnreachable`` in tracebacks)."""


_ServerUnreachable.__name__ = _ServerUnreachable.__qualname__ = "ServerUnreachable"
_ServerUnreachable.__module__ = "localevents"


def unreachable_error(exc: httpx.ConnectError) -> ServerUnreachable:
    """One readable line for a connection that failed for good: the URL, the cause, and the
    setting that chooses the server."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # raised outside a request
        request = None
    where = (
        "the server" if request is None else f"{request.url.scheme}://{request.url.netloc.decode()}"
    )
    cause = " ".join(str(exc).split()) or type(exc).__name__
    message = (
        f"could not connect to {where} ({cause}); is a localevents server running there? "
        "The client's api_url, else LOCALEVENTS_API_URL, chooses the server (with neither, the "
        "SDK serves the default events file in this process)"
    )
    return _ServerUnreachable(message, request=request)


_TIMEOUTS: dict[type[httpx.TimeoutException], tuple[str, str]] = {
    httpx.ConnectTimeout: ("connect", "connecting to the server took longer than"),
    httpx.ReadTimeout: ("read", "no answer came within"),
    httpx.WriteTimeout: ("write", "sending the request took longer than"),
    httpx.PoolTimeout: ("pool", "no connection of the client's pool was free within"),
}


def transport_failure(exc: httpx.TransportError, attempts: int) -> Exception:
    """What a request that failed for good after ``attempts`` attempts raises: for a
    connection that failed, :func:`unreachable_error`; for a timeout, the same httpx class
    with one readable line (the request, which step, how long, how often, the setting);
    otherwise ``exc`` itself."""
    if isinstance(exc, httpx.ConnectError):
        return unreachable_error(exc)
    if not isinstance(exc, httpx.TimeoutException):
        return exc
    try:
        request = exc.request
    except RuntimeError:  # raised outside a request
        return exc
    step, what = next(
        (found for kind, found in _TIMEOUTS.items() if isinstance(exc, kind)),
        ("read", "the request timed out after"),
    )
    seconds = request.extensions.get("timeout", {}).get(step)
    limit = "its timeout" if seconds is None else f"{seconds:g} s"
    tries = "once" if attempts == 1 else f"on each of {attempts} attempts"
    message = (
        f"{request.method} {request.url}: {what} {limit}, {tries} (LOCALEVENTS_CLIENT_TIMEOUT "
        "sets the SDK's timeout, or pass timeout= to the client)"
    )
    return type(exc)(message, request=request)


def server_explanation(response: httpx.Response) -> str:
    """The server's own words in an error answer (its ``detail``, or its text), one line."""
    return _server_message(response, _json_body(response))


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return {}
    return body if isinstance(body, dict) else {}


def _server_message(response: httpx.Response, body: dict[str, Any]) -> str:
    if isinstance(body.get("detail"), str):
        text = body["detail"]
    elif "exception_message" in body or "exception_detail" in body:
        detail = body.get("exception_detail")
        text = f"{body.get('exception_message', '')} {'' if detail is None else json.dumps(detail)}"
    else:
        try:
            text = response.text[:_MAXIMUM_TEXT]
        except httpx.ResponseNotRead:
            text = ""
    return " ".join(text.split())


def _domain_class(status: int, body: dict[str, Any]) -> type[LocalEventsError] | None:
    name = body.get("error")
    if isinstance(name, str) and name in _HTTP_ERRORS_BY_NAME:
        return _HTTP_ERRORS_BY_NAME[name]
    return _STATUS_ERRORS.get(status)


def _http_error_class(domain: type[LocalEventsError]) -> type[HTTPStatusError]:
    # Built once: a class that is both the HTTP error and the domain error, so callers catch
    # either; HTTPStatusError.__init__ bypasses the domain class's own __init__ signature.
    return type(f"HTTP{domain.__name__}", (HTTPStatusError, domain), {"__module__": __name__})


def _is_domain_class(candidate: object) -> bool:
    return (
        isinstance(candidate, type)
        and issubclass(candidate, LocalEventsError)
        and not issubclass(candidate, (HTTPStatusError, ServerUnreachable))  # not answers
    )


_HTTP_ERRORS: dict[type[LocalEventsError], type[HTTPStatusError]] = {
    cls: _http_error_class(cls)
    for cls in (getattr(_exceptions, name) for name in _exceptions.__all__)
    if _is_domain_class(cls)
}
_HTTP_ERRORS_BY_NAME = {domain.__name__: domain for domain in _HTTP_ERRORS}
