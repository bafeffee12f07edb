"""The sync twin of ``RetryingAsyncClient``: an :class:`httpx.Client` with the same retries
(the shared policy of ``_retries``) and the same readable errors, for scripts and notebooks."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import httpx

from localevents.client._http_errors import error_for_response, transport_failure
from localevents.client._retries import CAUGHT_EXCEPTIONS, RetryPolicy, default_timeout

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterable

    from httpx._client import UseClientDefault
    from httpx._types import AuthTypes

__all__ = ("RetryingClient",)


class RetryingClient(httpx.Client):
    """An :class:`httpx.Client` whose ``send`` retries transient failures with backoff.

    The same options, schedule and errors as :class:`~localevents.RetryingAsyncClient`;
    ``sleep`` is a plain function (default :func:`time.sleep`).
    """

    def __init__(
        self,
        *args: Any,
        max_retries: int | None = None,
        jitter_factor: float | None = None,
        extra_retry_codes: Iterable[int] | None = None,
        maximum_delay: float | None = None,
        sleep: Callable[[float], None] | None = None,
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
        self._sleep = sleep if sleep is not None else time.sleep
        self._raise_on_error = raise_on_error
        self._has_completed_request = False

    def send(
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
        response = self._send_with_retries(send)
        if self._raise_on_error and response.is_error:
            response.read()
            raise error_for_response(response)
        return response

    def _send_with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        # The twin of RetryingAsyncClient._send_with_retries: only the I/O differs.
        attempts = self.retry_policy.attempts()
        while True:
            try:
                response = send()
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
                response.close()
            self._sleep(delay)
