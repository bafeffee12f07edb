"""The sync retrying HTTP client: the same schedules, retryable failures, jitter and readable
errors as the async one (the cases of test_http_retries, played against RetryingClient)."""

from __future__ import annotations

import email.utils
import logging
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from test_http_retries import RETRYABLE_EXCEPTIONS, SCHEDULE, Script, answer, fail

from localevents._exceptions import (
    ConfigurationError,
    HTTPStatusError,
    InvalidPageToken,
    InvalidRequestError,
    ServiceUnavailable,
)
from localevents._settings import Settings, temporary_settings
from localevents.client import RetryingClient

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def default_settings() -> Iterator[Settings]:
    """Every test starts from the documented defaults, whatever the environment says."""
    with temporary_settings(Settings()) as settings:
        yield settings


class SleepRecorder:
    """A fake ``time.sleep`` that records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client_for(script: Script, sleep: SleepRecorder, **options: Any) -> RetryingClient:
    options.setdefault("jitter_factor", 0)
    return RetryingClient(
        transport=httpx.MockTransport(script), base_url="http://test", sleep=sleep, **options
    )


@pytest.mark.parametrize("code", [408, 429, 502, 503])
def test_retryable_status_gets_max_retries_plus_one_attempts_and_no_final_sleep(
    code: int,
) -> None:
    """A retryable status is tried 6 times, sleeping 2, 4, 8, 16, 32 and not after the last."""
    script, sleep = Script(answer(code)), SleepRecorder()
    with client_for(script, sleep, raise_on_error=False) as client:
        response = client.get("/")
    assert response.status_code == code
    assert len(script.requests) == 6
    assert sleep.delays == SCHEDULE


def test_exhausted_retryable_status_raises_without_final_sleep() -> None:
    """With raise_on_error, the last 503 raises ServiceUnavailable right after the last attempt."""
    script, sleep = Script(answer(503, detail="draining")), SleepRecorder()
    with client_for(script, sleep) as client, pytest.raises(ServiceUnavailable, match="draining"):
        client.get("/")
    assert sleep.delays == SCHEDULE


def test_success_after_retries_is_returned() -> None:
    """A success after retryable answers is returned, with one sleep per failed attempt."""
    script, sleep = Script(answer(502), answer(429), answer(200, ok=True)), SleepRecorder()
    with client_for(script, sleep) as client:
        response = client.get("/")
    assert response.json() == {"ok": True}
    assert sleep.delays == [2.0, 4.0]


@pytest.mark.parametrize("code", [400, 404, 409, 500, 501, 504])
def test_non_retryable_status_gets_one_attempt(code: int) -> None:
    """A status outside the retryable set is answered after a single attempt and no sleep."""
    script, sleep = Script(answer(code)), SleepRecorder()
    with client_for(script, sleep, raise_on_error=False) as client:
        response = client.get("/")
    assert response.status_code == code
    assert len(script.requests) == 1
    assert sleep.delays == []


def test_extra_codes_from_settings_and_argument_are_retried() -> None:
    """LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES and extra_retry_codes add retryable statuses."""
    script, sleep = Script(answer(404)), SleepRecorder()
    with temporary_settings(client_retry_extra_codes=frozenset({404})):
        client = client_for(script, sleep, max_retries=2, raise_on_error=False)
    with client:
        client.get("/")
    assert len(script.requests) == 3
    script, sleep = Script(answer(500)), SleepRecorder()
    client = client_for(script, sleep, max_retries=1, extra_retry_codes=[500])
    with client, pytest.raises(HTTPStatusError):
        client.get("/")
    assert len(script.requests) == 2


def test_settings_provide_the_retry_budget() -> None:
    """Without arguments the budget and jitter come from the active settings."""
    script, sleep = Script(answer(503)), SleepRecorder()
    with temporary_settings(client_max_retries=2, client_retry_jitter_factor=0.0):
        client = RetryingClient(transport=httpx.MockTransport(script), sleep=sleep)
    with client, pytest.raises(ServiceUnavailable):
        client.get("http://test/")
    assert sleep.delays == [2.0, 4.0]


@pytest.mark.parametrize("exc_type", RETRYABLE_EXCEPTIONS)
def test_retryable_exception_is_retried_then_reraised_without_final_sleep(
    exc_type: type[httpx.TransportError],
) -> None:
    """A retryable transport error is retried, then the last one raised with no extra sleep."""
    script, sleep = Script(fail(exc_type)), SleepRecorder()
    with client_for(script, sleep, max_retries=3) as client, pytest.raises(exc_type):
        client.get("/")
    assert len(script.requests) == 4
    assert sleep.delays == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("exc_type", [httpx.UnsupportedProtocol, httpx.ProxyError])
def test_other_exceptions_propagate_immediately(exc_type: type[httpx.TransportError]) -> None:
    """A transport error outside the retryable set is raised after one attempt."""
    script, sleep = Script(fail(exc_type)), SleepRecorder()
    with client_for(script, sleep) as client, pytest.raises(exc_type):
        client.get("/")
    assert len(script.requests) == 1
    assert sleep.delays == []


def test_connect_error_fails_fast_on_a_fresh_client_and_is_retried_after_a_request() -> None:
    """ConnectError is raised at once by a client that never connected (a wrong URL is
    likely), and retried once a request has completed (a restart is likely)."""
    script, sleep = Script(fail(httpx.ConnectError)), SleepRecorder()
    with client_for(script, sleep) as client, pytest.raises(httpx.ConnectError):
        client.get("/")
    assert (len(script.requests), sleep.delays) == (1, [])
    outcomes = answer(200), fail(httpx.ConnectError), fail(httpx.ConnectError), answer(200)
    script, sleep = Script(*outcomes), SleepRecorder()
    with client_for(script, sleep) as client:
        client.get("/")
        assert client.get("/").status_code == 200
    assert sleep.delays == [2.0, 4.0]


def http_date(offset: timedelta) -> str:
    """An HTTP date ``offset`` from now."""
    return email.utils.format_datetime(datetime.now(UTC) + offset, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("7.5", 7.5),
        ("-5", 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # a date in the past
        ("soon", 2.0),
        ("nan", 2.0),
        ("", 2.0),
        ("3600", 60.0),
    ],
)
def test_retry_after_sets_the_delay(retry_after: str, expected: float) -> None:
    """Retry-After in seconds replaces the backoff (never below 0, capped at 60 s); an
    unreadable one falls back to the exponential delay."""
    script = Script(answer(503, {"Retry-After": retry_after}), answer(200))
    sleep = SleepRecorder()
    with client_for(script, sleep) as client:
        client.get("/")
    assert sleep.delays == [expected]


def test_retry_after_as_http_date_is_the_delay() -> None:
    """A Retry-After HTTP date waits until that moment."""
    script = Script(answer(503, {"Retry-After": http_date(timedelta(seconds=30))}), answer(200))
    sleep = SleepRecorder()
    with client_for(script, sleep) as client:
        client.get("/")
    assert sleep.delays == [pytest.approx(30, abs=1)]


def test_custom_maximum_delay_caps_the_exponential_schedule() -> None:
    """maximum_delay caps every exponential delay."""
    script, sleep = Script(answer(503)), SleepRecorder()
    with client_for(script, sleep, maximum_delay=5, raise_on_error=False) as client:
        client.get("/")
    assert sleep.delays == [2.0, 4.0, 5.0, 5.0, 5.0]


def test_jitter_stays_within_its_bounds() -> None:
    """Jittered Retry-After delays lie in [d, 1.2 d]; jittered backoff in [0.82 d, 1.2 d]
    around d; both vary."""
    script, sleep = Script(answer(503, {"Retry-After": "10"})), SleepRecorder()
    options = {"max_retries": 300, "jitter_factor": 0.2, "rng": random.Random(1234)}
    with client_for(script, sleep, raise_on_error=False, **options) as client:
        client.get("/")
    assert all(10 <= delay <= 12 for delay in sleep.delays)
    assert max(sleep.delays) - min(sleep.delays) > 1
    script, sleep = Script(answer(503), answer(200)), SleepRecorder()
    with client_for(script, sleep, jitter_factor=0.2, rng=random.Random(99)) as client:
        for _ in range(300):
            client.get("/")
    ratios = [delay / 2 for delay in sleep.delays]
    assert all(0.82 <= ratio <= 1.2 for ratio in ratios)
    assert statistics.mean(ratios) == pytest.approx(1, abs=0.03)


def test_maintenance_answers_do_not_consume_the_budget() -> None:
    """Retryable answers marked Prefect-Maintenance: true are retried without counting."""
    maintenance = answer(503, {"Prefect-Maintenance": "true"})
    script = Script(maintenance, maintenance, maintenance, answer(503), answer(503))
    sleep = SleepRecorder()
    with client_for(script, sleep, max_retries=1, raise_on_error=False) as client:
        response = client.get("/")
    assert response.status_code == 503
    assert len(script.requests) == 5
    assert sleep.delays == [1.0, 1.0, 1.0, 2.0]


def test_zero_max_retries_means_one_attempt() -> None:
    """max_retries=0 makes exactly one attempt and never sleeps."""
    script, sleep = Script(answer(503)), SleepRecorder()
    with client_for(script, sleep, max_retries=0, raise_on_error=False) as client:
        assert client.get("/").status_code == 503
    assert (len(script.requests), sleep.delays) == (1, [])


def test_each_retry_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry logs the same line as the async client, on localevents.client."""
    script, sleep = Script(answer(503), fail(httpx.ReadError), answer(200)), SleepRecorder()
    with (
        caplog.at_level(logging.DEBUG, logger="localevents.client"),
        client_for(script, sleep) as client,
    ):
        client.get("/")
    messages = [r.getMessage() for r in caplog.records if r.name == "localevents.client"]
    assert messages == [
        "Received response with retryable status code 503. "
        "Another attempt will be made in 2.00s. This is attempt 1/6.",
        "Encountered retryable exception during request (ReadError: boom). "
        "Another attempt will be made in 4.00s. This is attempt 2/6.",
    ]


class Chunks(httpx.SyncByteStream):
    """A response body that arrives in pieces, like one from the network."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks


def streamed_ok(_: httpx.Request) -> httpx.Response:
    """An outcome answering 200 with a body still to be read."""
    return httpx.Response(200, stream=Chunks(b'{"ok":', b"true}"))


def test_streamed_success_is_left_unread() -> None:
    """A streamed success (after a retry) reaches the caller with its body still to read."""
    script, sleep = Script(answer(503), streamed_ok), SleepRecorder()
    with client_for(script, sleep) as client, client.stream("GET", "/") as response:
        assert not response.is_stream_consumed
        assert response.read() == b'{"ok":true}'
    assert sleep.delays == [2.0]


def test_streamed_error_raises_with_the_server_message() -> None:
    """A streamed error answer is read so that its error carries the server's detail."""
    body = Chunks(b'{"detail": "limit must', b' be <= 50"}')
    script, sleep = Script(lambda _: httpx.Response(422, stream=body)), SleepRecorder()
    with (
        client_for(script, sleep) as client,
        pytest.raises(InvalidRequestError, match="limit must be <= 50"),
        client.stream("GET", "/"),
    ):
        pass


def test_raise_on_error_false_returns_the_error_response() -> None:
    """With raise_on_error=False an error answer is returned, not raised."""
    script, sleep = Script(answer(401, detail="no key")), SleepRecorder()
    with client_for(script, sleep, raise_on_error=False) as client:
        response = client.get("/")
    assert response.status_code == 401


def test_error_is_the_same_readable_line_as_the_async_clients() -> None:
    """The error names status, reason, method, URL and the server's detail on one line, as
    the domain class the server named."""
    body: dict[str, Any] = {"detail": "page token\nwas tampered with", "error": "InvalidPageToken"}
    script, sleep = Script(answer(403, **body)), SleepRecorder()
    with client_for(script, sleep) as client, pytest.raises(InvalidPageToken) as caught:
        client.get("/api/events/filter/next", params={"page-token": "x"})
    assert str(caught.value) == (
        "403 Forbidden for GET http://test/api/events/filter/next?page-token=x: "
        "page token was tampered with"
    )
    assert isinstance(caught.value, HTTPStatusError)
    assert caught.value.status == 403


def test_negative_retry_options_are_rejected() -> None:
    """A negative retry budget, jitter or cap is a ConfigurationError."""
    for option in ("max_retries", "jitter_factor", "maximum_delay"):
        with pytest.raises(ConfigurationError):
            RetryingClient(**{option: -1})
