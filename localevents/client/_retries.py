"""The retry policy of the HTTP clients, shared by the async and the sync one (pure, no I/O).

The rules follow Prefect's client (SPEC B 5.11) with three fixes (SPEC A.2 D14): no sleep
after the last attempt, ``Retry-After`` read both as seconds and as an HTTP date, and every
delay capped at ``maximum_delay``. A client asks a :class:`RetryPolicy` for the
:class:`RetryAttempts` of each ``send`` and reports every outcome to it; the answer is the
delay before the next attempt, or ``None`` to stop. Only sending and sleeping differ between
the two clients.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from localevents._exceptions import ConfigurationError
from localevents._settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = (
    "CAUGHT_EXCEPTIONS",
    "RETRYABLE_EXCEPTIONS",
    "RETRYABLE_STATUS_CODES",
    "RetryAttempts",
    "RetryPolicy",
    "default_timeout",
    "parse_retry_after",
)

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
CAUGHT_EXCEPTIONS: tuple[type[httpx.TransportError], ...] = (
    *RETRYABLE_EXCEPTIONS,
    httpx.ConnectError,
)
"""What a client catches around each attempt and hands to :meth:`RetryAttempts.after_exception`."""

_RETRY_MESSAGE = "%s. Another attempt will be made in %.2fs. This is attempt %d/%d."


class RetryPolicy:
    """Which failures to retry, how often, and how long to wait: one per client.

    Arguments left as ``None`` come from :func:`~localevents._settings.get_settings`.
    """

    def __init__(
        self,
        *,
        max_retries: int | None = None,
        jitter_factor: float | None = None,
        extra_retry_codes: Iterable[int] | None = None,
        maximum_delay: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = get_settings()
        self.max_retries = settings.client_max_retries if max_retries is None else max_retries
        self.jitter_factor = (
            settings.client_retry_jitter_factor if jitter_factor is None else jitter_factor
        )
        self.maximum_delay = (
            settings.client_retry_maximum_delay if maximum_delay is None else maximum_delay
        )
        extra = (
            settings.client_retry_extra_codes if extra_retry_codes is None else extra_retry_codes
        )
        self.retry_codes = RETRYABLE_STATUS_CODES | frozenset(extra)
        if min(self.max_retries, self.jitter_factor, self.maximum_delay) < 0:
            raise ConfigurationError("max_retries, jitter_factor and maximum_delay must be >= 0")
        self.rng = rng if rng is not None else random.Random()

    def attempts(self) -> RetryAttempts:
        """A fresh budget for one ``send``."""
        return RetryAttempts(self)

    def delay(self, attempt: int, *, retry_after: str | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        asked = parse_retry_after(retry_after) if retry_after is not None else None
        # A bounded exponent: a huge max_retries must not overflow a float (the cap wins anyway).
        delay = 2.0 ** min(attempt, 32) if asked is None else asked
        delay = min(delay, self.maximum_delay)  # first: the jitter of 1e308 s overflows
        if self.jitter_factor > 0 and delay > 0:
            delay = _jitter(delay, self.jitter_factor, at_least=asked is not None, rng=self.rng)
        return min(delay, self.maximum_delay)


def default_timeout() -> httpx.Timeout:
    """How long a request may take at each step (connecting, sending, waiting for the
    answer, waiting for a pooled connection): ``LOCALEVENTS_CLIENT_TIMEOUT``. It is longer
    than a localevents server's query time limit, so a query too slow for the server gets
    the server's answer, not a timeout here and a retry that piles another copy on it."""
    return httpx.Timeout(get_settings().client_timeout.total_seconds())


class RetryAttempts:
    """The retry decisions of one ``send``: report each outcome, get the delay or ``None``."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._attempt = 0

    @property
    def made(self) -> int:
        """Attempts made so far."""
        return self._attempt

    def after_exception(self, exc: httpx.TransportError, *, connected: bool) -> float | None:
        """The delay before retrying after ``exc``, or ``None`` to raise it.

        ``connected`` says whether this client has completed a request before: a fresh
        client failing to connect most likely has a wrong URL, so it fails fast; once it has
        reached the server, a refused connection is more likely a restart worth waiting out.
        """
        self._attempt += 1
        retryable = not isinstance(exc, httpx.ConnectError) or connected
        if not retryable or self._attempt > self._policy.max_retries:
            return None
        reason = f"Encountered retryable exception during request ({_describe(exc)})"
        return self._announce(reason, self._policy.delay(self._attempt, retry_after=None))

    def after_response(self, response: httpx.Response) -> float | None:
        """The delay before retrying after ``response``, or ``None`` to return it.

        Answers marked ``Prefect-Maintenance: true`` do not use up the budget.
        """
        if response.headers.get("Prefect-Maintenance") != "true":
            self._attempt += 1
        status = response.status_code
        if status not in self._policy.retry_codes or self._attempt > self._policy.max_retries:
            return None
        retry_after = response.headers.get("Retry-After")
        delay = self._policy.delay(self._attempt, retry_after=retry_after)
        return self._announce(f"Received response with retryable status code {status}", delay)

    def _announce(self, reason: str, delay: float) -> float:
        logger.debug(_RETRY_MESSAGE, reason, delay, self._attempt, self._policy.max_retries + 1)
        return delay


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def parse_retry_after(value: str) -> float | None:
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
