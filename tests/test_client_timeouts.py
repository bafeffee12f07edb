"""The SDK's timeout (``LOCALEVENTS_CLIENT_TIMEOUT``): its default outlasts the server's query
time limit, a request that gets no answer fails with one readable line once its retries are
spent, and a Parquet export waits for the server's snapshot however long it takes. An export
whose answer is cut short says so in one line, too."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import httpx
import pytest
from _cli import run
from _servers import free_port, spawn, taken_port, uvicorn_command

from localevents import RetryingAsyncClient, RetryingClient, get_client
from localevents._settings import Settings, temporary_settings
from localevents.samples import write_sample_database

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _servers import ServerProcess

SAMPLE = 40
DELAY = "1.0"
"""Seconds the slow server waits before answering an export, against a timeout of 0.3 s."""


async def _no_sleep(_: float) -> None:
    """Retry at once (the backoff is not what these tests are about)."""


def _message(method: str, url: str, attempts: str) -> str:
    return (
        f"{method} {url}: no answer came within 0.2 s, {attempts} (LOCALEVENTS_CLIENT_TIMEOUT "
        "sets the SDK's timeout, or pass timeout= to the client)"
    )


def test_the_default_timeout_outlasts_the_servers_query_limit() -> None:
    defaults = Settings()
    assert defaults.client_timeout > defaults.server_query_timeout
    with temporary_settings(defaults):
        assert RetryingAsyncClient().timeout == httpx.Timeout(60.0)
        assert RetryingClient().timeout == httpx.Timeout(60.0)


def test_the_clients_take_their_timeout_from_the_setting_unless_given_one() -> None:
    with temporary_settings(client_timeout="7s"):
        assert RetryingAsyncClient().timeout == httpx.Timeout(7.0)
        assert RetryingClient().timeout == httpx.Timeout(7.0)
        assert RetryingClient(timeout=3.0).timeout == httpx.Timeout(3.0)
        assert get_client(api_url="http://127.0.0.1:9/api").http.timeout == httpx.Timeout(7.0)
        assert get_client(api_url="http://127.0.0.1:9/api", timeout=2.0).http.timeout == (
            httpx.Timeout(2.0)
        )


@pytest.mark.anyio
async def test_a_request_that_gets_no_answer_fails_with_one_readable_line() -> None:
    """A server that takes the connection and never answers: after the retries, one
    ``httpx.ReadTimeout`` (still caught as such) that says what waited how long."""
    with taken_port() as port, temporary_settings(client_timeout="0.2s"):
        url = f"http://127.0.0.1:{port}/api/events/filter"
        async with RetryingAsyncClient(max_retries=1, sleep=_no_sleep) as client:
            with pytest.raises(httpx.ReadTimeout) as caught:
                await client.post(url, json={})
    assert str(caught.value) == _message("POST", url, "on each of 2 attempts")
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_the_sync_client_fails_alike() -> None:
    with taken_port() as port, temporary_settings(client_timeout="0.2s"):
        url = f"http://127.0.0.1:{port}/api/health"
        with RetryingClient(max_retries=0) as client, pytest.raises(httpx.ReadTimeout) as caught:
            client.get(url)
    assert str(caught.value) == _message("GET", url, "once")


@contextlib.contextmanager
def _export_server(folder: Path, factory: str, **env: str) -> Iterator[ServerProcess]:
    """``_slow_app``'s ``factory`` over a small file in ``folder``, its exports delayed or
    cut. The tests only read from it (each into a folder of its own), so the tests of this
    module share each such server."""
    database = folder / "events.duckdb"
    write_sample_database(database, SAMPLE)
    port = free_port()
    command = uvicorn_command(f"_slow_app:{factory}", port, "--factory")
    env |= {
        "LOCALEVENTS_DATABASE": str(database),
        "LOCALEVENTS_HOME": str(folder / "home"),
        "SLOW_PATH": "/events/export",
    }
    with spawn(command, port, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The events API over a small file, answering exports one second late."""
    folder = tmp_path_factory.mktemp("slow-server")
    with _export_server(folder, "create", SLOW_SECONDS=DELAY) as server:
        yield server


@pytest.mark.anyio
async def test_a_parquet_export_waits_for_the_snapshot_past_the_timeout(
    slow_server: ServerProcess, tmp_path: Path
) -> None:
    with temporary_settings(client_timeout="0.3s", client_max_retries=0):
        async with get_client(api_url=slow_server.url) as client:
            count = await client.export_events(tmp_path / "parquet", format="parquet")
            with pytest.raises(httpx.ReadTimeout, match=r"no answer came within 0\.3 s, once"):
                await client.export_events(tmp_path / "events.ndjson", format="ndjson")
    assert count == SAMPLE
    assert len(list((tmp_path / "parquet").rglob("*.parquet"))) >= 1
    assert not (tmp_path / "events.ndjson").exists()


@pytest.fixture(scope="module")
def cutting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The events API over a small file, dropping the connection after an export's first
    chunk."""
    folder = tmp_path_factory.mktemp("cutting-server")
    with _export_server(folder, "create_cut") as server:
        yield server


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "got"), [("ndjson", f"{SAMPLE} events"), ("parquet", "part of the snapshot")]
)
async def test_an_export_cut_short_says_how_far_it_got_and_leaves_nothing(
    cutting_server: ServerProcess, tmp_path: Path, kind: str, got: str
) -> None:
    """Was httpx's bare "peer closed connection without sending complete message body"."""
    destination = tmp_path / f"events.{kind}"
    async with get_client(api_url=cutting_server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.export_events(destination, format=kind)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"the {kind} export was cut off after {got}: "), message
    assert "its log says why" in message
    assert f"nothing was written to {destination}" in message
    assert not _left_over(destination)


def test_the_command_line_says_an_export_was_cut_off_not_that_the_server_is_unreachable(
    cutting_server: ServerProcess, tmp_path: Path
) -> None:
    """`localevents export` cut short by the server says it lost the connection, and how far
    it got (it said "cannot reach the events API", which it had reached)."""
    destination = tmp_path / "events.ndjson"
    result = run("export", destination, "--api-url", cutting_server.url)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: lost the connection to the events API at {cutting_server.url}: "
    ), result.stderr
    assert f"the ndjson export was cut off after {SAMPLE} events" in result.stderr
    assert not _left_over(destination)


def _left_over(destination: Path) -> list[str]:
    """What an export left beside ``destination``: itself, or its partial download."""
    return [path.name for path in destination.parent.iterdir() if destination.name in path.name]
