"""The retrying HTTP client: schedules, retryable failures, jitter and readable errors."""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from localevents._exceptions import (
    AuthenticationError,
    ConfigurationError,
    EventTooLarge,
    HTTPStatusError,
    InvalidEventError,
    InvalidPageToken,
    InvalidRequestError,
    LocalEventsError,
    RequestTooLarge,
    ServiceUnavailable,
)
from localevents._settings import Settings, temporary_settings
from localevents.client._http import RetryingAsyncClient, error_for_response

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

SCHEDULE = [2.0, 4.0, 8.0, 16.0, 32.0]
RETRYABLE_EXCEPTIONS = [
    httpx.ReadTimeout,
    httpx.PoolTimeout,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
]


@pytest.fixture(autouse=True)
def default_settings() -> Iterator[Settings]:
    """Every test starts from the documented defaults, whatever the environment says."""
    with temporary_settings(Settings()) as settings:
        yield settings


class SleepRecorder:
    """A fake ``sleep`` that records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Script:
    """A MockTransport handler that plays its outcomes in a cycle and records the requests."""

    def __init__(self, *outcomes: Callable[[httpx.Request], httpx.Response]) -> None:
        self._outcomes = itertools.cycle(outcomes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return next(self._outcomes)(request)


def answer(
    code: int, headers: dict[str, str] | None = None, **body: Any
) -> Callable[[httpx.Request], httpx.Response]:
    """An outcome answering ``code`` (with a JSON body when keywords are given)."""
    return lambda _: httpx.Response(code, headers=headers, json=body or None)


def fail(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """An outcome raising ``exc_type`` as a transport would."""

    def outcome(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return outcome


def client_for(script: Script, sleep: SleepRecorder, **options: Any) -> RetryingAsyncClient:
    options.setdefault("jitter_factor", 0)
    return RetryingAsyncClient(
        transport=httpx.MockTransport(script), base_url="http://test", sleep=sleep, **options
    )


@pytest.mark.parametrize("code", [408, 429, 502, 503])
async def test_retryable_status_gets_max_retries_plus_one_attempts_and_no_final_sleep(
    code: int,
) -> None:
    """A retryable status is tried 6 times, sleeping 2, 4, 8, 16, 32 and not after the last."""
    script, sleep = Script(answer(code)), SleepRecorder()
    async with client_for(script, sleep, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == code
    assert len(script.requests) == 6
    assert sleep.delays == SCHEDULE


async def test_exhausted_retryable_status_raises_without_final_sleep() -> None:
    """With raise_on_error, the last 503 raises ServiceUnavailable right after the last attempt."""
    script, sleep = Script(answer(503, detail="draining")), SleepRecorder()
    async with client_for(script, sleep) as client:
        with pytest.raises(ServiceUnavailable, match="draining"):
            await client.get("/")
    assert sleep.delays == SCHEDULE


async def test_success_after_retries_is_returned() -> None:
    """A success after retryable answers is returned, with one sleep per failed attempt."""
    script, sleep = Script(answer(502), answer(429), answer(200, ok=True)), SleepRecorder()
    async with client_for(script, sleep) as client:
        response = await client.get("/")
    assert response.json() == {"ok": True}
    assert sleep.delays == [2.0, 4.0]


@pytest.mark.parametrize("code", [400, 404, 409, 500, 501, 504])
async def test_non_retryable_status_gets_one_attempt(code: int) -> None:
    """A status outside the retryable set is answered after a single attempt and no sleep."""
    script, sleep = Script(answer(code)), SleepRecorder()
    async with client_for(script, sleep, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == code
    assert len(script.requests) == 1
    assert sleep.delays == []


async def test_extra_codes_from_settings_are_retried() -> None:
    """LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES adds statuses to the retryable set."""
    script, sleep = Script(answer(404)), SleepRecorder()
    with temporary_settings(client_retry_extra_codes=frozenset({404})):
        client = client_for(script, sleep, max_retries=2, raise_on_error=False)
    async with client:
        await client.get("/")
    assert len(script.requests) == 3
    assert sleep.delays == [2.0, 4.0]


async def test_extra_codes_argument_is_retried() -> None:
    """The extra_retry_codes argument adds statuses to the retryable set."""
    script, sleep = Script(answer(500)), SleepRecorder()
    async with client_for(script, sleep, max_retries=1, extra_retry_codes=[500]) as client:
        with pytest.raises(HTTPStatusError):
            await client.get("/")
    assert len(script.requests) == 2


async def test_settings_provide_the_retry_budget() -> None:
    """Without arguments the budget and jitter come from the active settings."""
    script, sleep = Script(answer(503)), SleepRecorder()
    with temporary_settings(client_max_retries=2, client_retry_jitter_factor=0.0):
        client = RetryingAsyncClient(transport=httpx.MockTransport(script), sleep=sleep)
    async with client:
        with pytest.raises(ServiceUnavailable):
            await client.get("http://test/")
    assert sleep.delays == [2.0, 4.0]


@pytest.mark.parametrize("exc_type", RETRYABLE_EXCEPTIONS)
async def test_retryable_exception_is_retried_then_reraised_without_final_sleep(
    exc_type: type[httpx.TransportError],
) -> None:
    """A retryable transport error is retried, then the last one raised with no extra sleep."""
    script, sleep = Script(fail(exc_type)), SleepRecorder()
    async with client_for(script, sleep, max_retries=3) as client:
        with pytest.raises(exc_type):
            await client.get("/")
    assert len(script.requests) == 4
    assert sleep.delays == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("exc_type", [httpx.UnsupportedProtocol, httpx.ProxyError])
async def test_other_exceptions_propagate_immediately(
    exc_type: type[httpx.TransportError],
) -> None:
    """A transport error outside the retryable set is raised after one attempt."""
    script, sleep = Script(fail(exc_type)), SleepRecorder()
    async with client_for(script, sleep) as client:
        with pytest.raises(exc_type):
            await client.get("/")
    assert len(script.requests) == 1
    assert sleep.delays == []


async def test_connect_error_is_not_retried_on_a_fresh_client() -> None:
    """A client that never reached the server fails fast on ConnectError (likely a wrong URL)."""
    script, sleep = Script(fail(httpx.ConnectError)), SleepRecorder()
    async with client_for(script, sleep) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
    assert len(script.requests) == 1
    assert sleep.delays == []


async def test_connect_error_is_retried_after_a_completed_request() -> None:
    """Once a request completed, ConnectError is retried (the server may be restarting)."""
    outcomes = answer(200), fail(httpx.ConnectError), fail(httpx.ConnectError), answer(200)
    script, sleep = Script(*outcomes), SleepRecorder()
    async with client_for(script, sleep) as client:
        await client.get("/")
        response = await client.get("/")
    assert response.status_code == 200
    assert sleep.delays == [2.0, 4.0]


async def test_retry_after_in_seconds_is_the_delay() -> None:
    """A Retry-After in (fractional) seconds replaces the exponential delay."""
    script, sleep = Script(answer(429, {"Retry-After": "7.5"}), answer(200)), SleepRecorder()
    async with client_for(script, sleep) as client:
        await client.get("/")
    assert sleep.delays == [7.5]


async def test_retry_after_as_http_date_is_the_delay() -> None:
    """A Retry-After HTTP date waits until that moment."""
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script, sleep = Script(answer(503, {"Retry-After": when}), answer(200)), SleepRecorder()
    async with client_for(script, sleep) as client:
        await client.get("/")
    assert len(sleep.delays) == 1
    assert sleep.delays[0] == pytest.approx(30, abs=1)


async def test_retry_after_in_the_past_means_no_wait() -> None:
    """A Retry-After date in the past (or negative seconds) means retrying at once."""
    past = email.utils.format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    outcomes = answer(503, {"Retry-After": past}), answer(503, {"Retry-After": "-5"}), answer(200)
    script, sleep = Script(*outcomes), SleepRecorder()
    async with client_for(script, sleep, jitter_factor=0.2) as client:
        await client.get("/")
    assert sleep.delays == [0.0, 0.0]


@pytest.mark.parametrize("value", ["soon", "", "nan", "Mon, 99 Foo 2024 99:99:99 GMT"])
async def test_malformed_retry_after_falls_back_to_exponential(value: str) -> None:
    """An unreadable Retry-After is ignored in favour of the exponential delay."""
    script, sleep = Script(answer(503, {"Retry-After": value}), answer(200)), SleepRecorder()
    async with client_for(script, sleep) as client:
        await client.get("/")
    assert sleep.delays == [2.0]


@pytest.mark.parametrize("value", ["3600", "1e308"])
async def test_retry_after_is_capped_at_sixty_seconds_by_default(value: str) -> None:
    """A Retry-After of an hour waits the default maximum of 60 s, jitter included; so does
    one whose jitter would overflow a float (it raised ValueError)."""
    script, sleep = Script(answer(503, {"Retry-After": value}), answer(200)), SleepRecorder()
    async with client_for(script, sleep, jitter_factor=0.2) as client:
        await client.get("/")
    assert sleep.delays == [60.0]


async def test_custom_maximum_delay_caps_the_exponential_schedule() -> None:
    """maximum_delay caps every exponential delay."""
    script, sleep = Script(answer(503)), SleepRecorder()
    async with client_for(script, sleep, maximum_delay=5, raise_on_error=False) as client:
        await client.get("/")
    assert sleep.delays == [2.0, 4.0, 5.0, 5.0, 5.0]


async def test_jitter_on_retry_after_never_waits_less_than_asked() -> None:
    """With Retry-After, jittered delays lie in [d, 1.2 d] and actually vary."""
    script, sleep = Script(answer(503, {"Retry-After": "10"})), SleepRecorder()
    options = {"max_retries": 300, "jitter_factor": 0.2, "rng": random.Random(1234)}
    async with client_for(script, sleep, raise_on_error=False, **options) as client:
        await client.get("/")
    assert len(sleep.delays) == 300
    assert all(10 <= delay <= 12 for delay in sleep.delays)
    assert max(sleep.delays) - min(sleep.delays) > 1


async def test_jitter_on_exponential_delay_stays_near_the_delay() -> None:
    """Without Retry-After, jittered delays lie in [0.82 d, 1.2 d] with a mean close to d."""
    script, sleep = Script(answer(503), answer(200)), SleepRecorder()
    async with client_for(script, sleep, jitter_factor=0.2, rng=random.Random(99)) as client:
        for _ in range(300):
            await client.get("/")
    ratios = [delay / 2 for delay in sleep.delays]
    assert len(ratios) == 300
    assert all(0.82 <= ratio <= 1.2 for ratio in ratios)
    assert statistics.mean(ratios) == pytest.approx(1, abs=0.03)
    assert max(ratios) - min(ratios) > 0.2


async def test_maintenance_answers_do_not_consume_the_budget() -> None:
    """Retryable answers marked Prefect-Maintenance: true are retried without counting."""
    maintenance = answer(503, {"Prefect-Maintenance": "true"})
    script = Script(maintenance, maintenance, maintenance, answer(503), answer(503))
    sleep = SleepRecorder()
    async with client_for(script, sleep, max_retries=1, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert len(script.requests) == 5
    assert sleep.delays == [1.0, 1.0, 1.0, 2.0]


async def test_maintenance_answer_with_non_retryable_status_is_returned() -> None:
    """The maintenance header alone does not make a status retryable."""
    script, sleep = Script(answer(500, {"Prefect-Maintenance": "true"})), SleepRecorder()
    async with client_for(script, sleep, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert len(script.requests) == 1


async def test_zero_max_retries_means_one_attempt() -> None:
    """max_retries=0 makes exactly one attempt and never sleeps."""
    script, sleep = Script(answer(503)), SleepRecorder()
    async with client_for(script, sleep, max_retries=0, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert len(script.requests) == 1
    assert sleep.delays == []


async def test_each_retry_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry logs the reason, the delay and the attempt number on localevents.client."""
    script, sleep = Script(answer(503), fail(httpx.ReadError), answer(200)), SleepRecorder()
    with caplog.at_level(logging.DEBUG, logger="localevents.client"):
        async with client_for(script, sleep) as client:
            await client.get("/")
    messages = [r.getMessage() for r in caplog.records if r.name == "localevents.client"]
    assert messages == [
        "Received response with retryable status code 503. "
        "Another attempt will be made in 2.00s. This is attempt 1/6.",
        "Encountered retryable exception during request (ReadError: boom). "
        "Another attempt will be made in 4.00s. This is attempt 2/6.",
    ]


class Chunks(httpx.AsyncByteStream):
    """A response body that arrives in pieces, like one from the network."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def streamed_ok(_: httpx.Request) -> httpx.Response:
    """An outcome answering 200 with a body still to be read."""
    return httpx.Response(200, stream=Chunks(b'{"ok":', b"true}"))


async def test_streamed_success_is_left_unread() -> None:
    """A streamed success (after a retry) reaches the caller with its body still to read."""
    script, sleep = Script(answer(503), streamed_ok), SleepRecorder()
    async with client_for(script, sleep) as client, client.stream("GET", "/") as response:
        assert not response.is_stream_consumed
        assert await response.aread() == b'{"ok":true}'
    assert sleep.delays == [2.0]


async def test_streamed_error_raises_with_the_server_message() -> None:
    """A streamed error answer is read so that its error carries the server's detail."""
    body = Chunks(b'{"detail": "limit must', b' be <= 50"}')
    script, sleep = Script(lambda _: httpx.Response(422, stream=body)), SleepRecorder()
    async with client_for(script, sleep) as client:
        with pytest.raises(InvalidRequestError, match="limit must be <= 50"):
            async with client.stream("GET", "/"):
                pass


async def test_raise_on_error_false_returns_the_error_response() -> None:
    """With raise_on_error=False an error answer is returned, not raised."""
    script, sleep = Script(answer(401, detail="no key")), SleepRecorder()
    async with client_for(script, sleep, raise_on_error=False) as client:
        response = await client.get("/")
    assert response.status_code == 401
    assert response.json() == {"detail": "no key"}


async def test_error_is_one_readable_line_with_its_context() -> None:
    """The error names status, reason, method, URL and the server's detail on one line."""
    body: dict[str, Any] = {"detail": "page token\nwas tampered with", "error": "InvalidPageToken"}
    script, sleep = Script(answer(403, **body)), SleepRecorder()
    async with client_for(script, sleep) as client:
        with pytest.raises(InvalidPageToken) as caught:
            await client.get("/api/events/filter/next", params={"page-token": "x"})
    error = caught.value
    assert str(error) == (
        "403 Forbidden for GET http://test/api/events/filter/next?page-token=x: "
        "page token was tampered with"
    )
    assert isinstance(error, HTTPStatusError)
    assert error.request.url.path == "/api/events/filter/next"
    assert error.status == 403


def error_for(code: int, **body: Any) -> HTTPStatusError:
    """The error for a POST /api/events/filter answered with ``code`` and a JSON ``body``."""
    request = httpx.Request("POST", "http://test/api/events/filter")
    return error_for_response(httpx.Response(code, json=body or None, request=request))


@pytest.mark.parametrize(
    ("code", "domain"),
    [
        (401, AuthenticationError),
        (413, RequestTooLarge),
        (422, InvalidRequestError),
        (503, ServiceUnavailable),
    ],
)
def test_status_maps_to_the_domain_class(code: int, domain: type[LocalEventsError]) -> None:
    """Without an error name, 401/413/422/503 map to their domain classes."""
    error = error_for(code, detail="nope")
    assert isinstance(error, domain)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == code


@pytest.mark.parametrize("body", [{"detail": "forbidden"}, {"error": "NoSuchError"}, {}])
def test_403_without_a_known_error_name_is_a_plain_http_error(body: dict[str, Any]) -> None:
    """A 403 is not assumed to be a page-token error: it stays a plain HTTPStatusError."""
    assert type(error_for(403, **body)) is HTTPStatusError


def test_error_name_in_the_body_wins_over_the_status() -> None:
    """The body's "error" class name picks the class, even one whose __init__ differs."""
    error = error_for(422, detail="Event is too large", error="EventTooLarge")
    assert isinstance(error, EventTooLarge)
    assert isinstance(error, InvalidEventError)
    assert type(error) is type(error_for(422, error="EventTooLarge"))


def test_prefect_validation_body_is_summarised() -> None:
    """Prefect's 422 shape contributes exception_message and exception_detail to the line."""
    detail = [{"loc": ["body", "limit"], "msg": "too big"}]
    error = error_for(422, exception_message="Invalid request received.", exception_detail=detail)
    assert str(error) == (
        "422 Unprocessable Entity for POST http://test/api/events/filter: "
        'Invalid request received. [{"loc": ["body", "limit"], "msg": "too big"}]'
    )


def test_text_body_is_cut_and_kept_on_one_line() -> None:
    """A non-JSON body is cut to about 500 characters with its newlines folded."""
    request = httpx.Request("GET", "http://test/")
    response = httpx.Response(500, text="line\n" * 400, request=request)
    message = str(error_for_response(response))
    assert message.startswith("500 Internal Server Error for GET http://test/: line line")
    assert "\n" not in message
    assert len(message) < 600


def test_negative_retry_options_are_rejected() -> None:
    """A negative retry budget, jitter or cap is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RetryingAsyncClient(max_retries=-1)
