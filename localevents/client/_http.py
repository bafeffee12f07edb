"""An httpx client that retries transient failures and turns error answers into readable errors.

What is retried and how long to wait is the shared policy of ``_retries`` (SPEC B 5.11 with
D14); the sync twin is ``_sync_http.RetryingClient``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from localevents.client._http_errors import error_for_response, transport_failure
from localevents.client._retries import CAUGHT_EXCEPTIONS, RetryPolicy, default_timeout

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Iterable

    from httpx._client import UseClientDefault
    from httpx._types import AuthTypes

__all__ = ("RetryingAsyncClient", "error_for_response")


class RetryingAsyncClient(httpx.AsyncClient):
    """An :class:`httpx.AsyncClient` whose ``send`` retries transient failures with backoff.

    Arguments left as ``None`` come from :func:`~localevents._settings.get_settings`, and
    so does ``timeout`` when not given (``LOCALEVENTS_CLIENT_TIMEOUT``). With
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
        self.retry_policy = RetryPolicy(
            max_retries=max_retries,
            jitter_factor=jitter_factor,
            extra_retry_codes=extra_retry_codes,
            maximum_delay=maximum_delay,
            rng=rng,
        )
        kwargs.setdefault("timeout", default_timeout())
        super().__init__(*args, **kwargs)
        self._sleep = sleep if sleep is not None else anyio.sleep
        self._raise_on_error = raise_on_error
        # ConnectError is only retried once the URL has proven right (RetryAttempts).
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
        attempts = self.retry_policy.attempts()
        while True:
            try:
                response = await send()
            except CAUGHT_EXCEPTIONS as exc:
                delay = attempts.after_exception(exc, connected=self._has_completed_request)
                if delay is None:
                    failure = transport_failure(exc, attempts.made)
                    if failure is exc:
                        raise
                    raise failure from exc
            else:
                self._has_completed_request = True
                delay = attempts.after_response(response)
                if delay is None:
                    return response
                await response.aclose()
            await self._sleep(delay)
