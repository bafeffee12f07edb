"""An httpx client that retries transient failures and turns error answers into readable errors.

The retry rules follow Prefect's client (SPEC B 5.11) with three fixes (SPEC A.2 D14): no sleep
after the last attempt, ``Retry-After`` read both as seconds and as an HTTP date, and every delay
capped at ``maximum_delay``.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from localevents import _exceptions
from localevents._exceptions import ConfigurationError, HTTPStatusError, LocalEventsError
from localevents._settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from httpx._client import UseClientDefault
    from httpx._types import AuthTypes

__all__ = ("RetryingAsyncClient", "error_for_response")

logger = logging.getLogger("localevents.client")

RETRYABLE_STATUS_CODES = frozenset({408, 429, 502, 503})
RETRYABLE_EXCEPTIONS: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadTimeout,
    httpx.PoolTimeout,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
)
_CAUGHT: tuple[type[httpx.TransportError], ...] = (*RETRYABLE_EXCEPTIONS, httpx.ConnectError)
_STATUS_ERRORS: dict[int, type[LocalEventsError]] = {
    401: _exceptions.AuthenticationError,
    413: _exceptions.RequestTooLarge,
    422: _exceptions.InvalidRequestError,
    503: _exceptions.ServiceUnavailable,
}
_MAXIMUM_TEXT = 500
_RETRY_MESSAGE = "%s. Another attempt will be made in %.2fs. This is attempt %d/%d."


class RetryingAsyncClient(httpx.AsyncClient):
    """An :class:`httpx.AsyncClient` whose ``send`` retries transient failures with backoff.

    Arguments left as ``None`` come from :func:`~localevents._settings.get_settings`. With
    ``raise_on_error`` an error answer (status >= 400) raises :func:`error_for_response`.
    """

    def __init__(
        self,
        *args: Any,
        max_retries: int | None = None,
        jitter_factor: float | None = None,
        extra_retry_codes: Iterable[int] | None = None,
        maximum_delay: float | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        raise_on_error: bool = True,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._max_retries = settings.client_max_retries if max_retries is None else max_retries
        self._jitter_factor = (
            settings.client_retry_jitter_factor if jitter_factor is None else jitter_factor
        )
        self._maximum_delay = (
            settings.client_retry_maximum_delay if maximum_delay is None else maximum_delay
        )
        extra = (
            settings.client_retry_extra_codes if extra_retry_codes is None else extra_retry_codes
        )
        self._retry_codes = RETRYABLE_STATUS_CODES | frozenset(extra)
        if min(self._max_retries, self._jitter_factor, self._maximum_delay) < 0:
            raise ConfigurationError("max_retries, jitter_factor and maximum_delay must be >= 0")
        self._sleep = sleep if sleep is not None else anyio.sleep
        self._raise_on_error = raise_on_error
        self._rng = rng if rng is not None else random.Random()
        # ConnectError is only retried once the URL has proven right (see _is_retryable).
        self._has_completed_request = False

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send ``request``, retrying transient failures; raise for an error answer if asked."""
        send = functools.partial(
            super().send, request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )
        response = await self._send_with_retries(send)
        if self._raise_on_error and response.is_error:
            await response.aread()
            raise error_for_response(response)
        return response

    async def _send_with_retries(
        self, send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await send()
            except _CAUGHT as exc:
                attempt += 1
                if not self._is_retryable(exc) or attempt > self._max_retries:
                    raise
                reason = f"Encountered retryable exception during request ({_describe(exc)})"
                delay = self._delay(attempt, retry_after=None)
            else:
                self._has_completed_request = True
                if response.headers.get("Prefect-Maintenance") != "true":
                    attempt += 1
                if response.status_code not in self._retry_codes or attempt > self._max_retries:
                    return response
                reason = f"Received response with retryable status code {response.status_code}"
                delay = self._delay(attempt, retry_after=response.headers.get("Retry-After"))
                await response.aclose()
            logger.debug(_RETRY_MESSAGE, reason, delay, attempt, self._max_retries + 1)
            await self._sleep(delay)

    def _is_retryable(self, exc: httpx.TransportError) -> bool:
        # A fresh client failing to connect most likely has a wrong URL: fail fast. Once it has
        # reached the server, a refused connection is more likely a restart worth waiting out.
        return not isinstance(exc, httpx.ConnectError) or self._has_completed_request

    def _delay(self, attempt: int, *, retry_after: str | None) -> float:
        asked = _parse_retry_after(retry_after) if retry_after is not None else None
        # A bounded exponent: a huge max_retries must not overflow a float (the cap wins anyway).
        delay = 2.0 ** min(attempt, 32) if asked is None else asked
        if self._jitter_factor > 0 and delay > 0:
            delay = _jitter(delay, self._jitter_factor, at_least=asked is not None, rng=self._rng)
        return min(delay, self._maximum_delay)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or HTTP date); None if malformed."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _jitter(delay: float, factor: float, *, at_least: bool, rng: random.Random) -> float:
    # A server's Retry-After is a minimum, so only ever wait longer than it asks; our own backoff
    # spreads both ways around the delay so that many clients do not retry in lockstep.
    if at_least:
        return _bounded_poisson(delay, delay * (1 + factor), rng)
    return _clamped_poisson(delay, factor, rng)


def _clamped_poisson(average: float, clamp: float, rng: random.Random) -> float:
    """An exponential draw with mean ≈ ``average``, at most ``(1 + clamp) * average``.

    The lower bound ``log2(2^k / (2^k - 1)) * average`` with ``k = 1 + clamp`` is the one that
    keeps the mean of the truncated distribution at ``average`` (≈ 0.824 for ``clamp = 0.2``).
    """
    k = 1 + clamp
    lower = 0.0 if k >= 50 else math.log2(2**k / (2**k - 1)) * average
    return _exponential_between(average, lower, average * k, rng)


def _bounded_poisson(lower: float, upper: float, rng: random.Random) -> float:
    """An exponential draw in ``[lower, upper]`` around their midpoint."""
    return _exponential_between((lower + upper) / 2, lower, upper, rng)


def _exponential_between(average: float, lower: float, upper: float, rng: random.Random) -> float:
    # Inverse-transform sampling of an exponential distribution truncated to [lower, upper]:
    # draw its CDF uniformly between the CDF of both bounds and map back.
    u = rng.uniform(1 - math.exp(-lower / average), 1 - math.exp(-upper / average))
    return -math.log(max(1 - u, 1e-10)) * average


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
        and not issubclass(candidate, HTTPStatusError)
    )


_HTTP_ERRORS: dict[type[LocalEventsError], type[HTTPStatusError]] = {
    cls: _http_error_class(cls)
    for cls in (getattr(_exceptions, name) for name in _exceptions.__all__)
    if _is_domain_class(cls)
}
_HTTP_ERRORS_BY_NAME = {domain.__name__: domain for domain in _HTTP_ERRORS}
