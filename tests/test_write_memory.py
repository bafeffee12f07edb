"""A memory limit too small to open the file: a configuration error naming it. Too small
for a commit: said at open, and each write refused as
"service unavailable" naming the setting, with nothing stored, over HTTP (503, which
clients retry) and over ``/events/in`` (1013) alike. DuckDB reads a batch through 32 MiB
buffers, one per thread up to two, so a commit needs 48 MB with one thread, 80 MB with two.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest
from _servers import clean_environ
from httpx_ws import WebSocketDisconnect, aconnect_ws

from localevents import ConfigurationError, ReceivedEvent, ServiceUnavailable
from localevents._settings import temporary_settings
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.events._filters import EventFilter
from localevents.events._samples import standard_event
from localevents.server import create_app
from localevents.storage import open_store, query_events, release

if TYPE_CHECKING:
    from pathlib import Path

SETTING = "LOCALEVENTS_DATABASE_MEMORY_LIMIT"
TOO_SMALL = "64MB"
WIDE = {"occurred": {"since": "2000-01-01T00:00:00Z", "until": "2200-01-01T00:00:00Z"}}


def events(count: int) -> list[ReceivedEvent]:
    """Standard events (about 800 bytes of JSON each), received now."""
    now = datetime.now(UTC)
    fields = ("occurred", "event", "resource", "related", "payload", "id", "follows")
    made = [standard_event(i) for i in range(count)]
    return [ReceivedEvent(**{f: getattr(e, f) for f in fields}, received=now) for e in made]


def stored_total(path: Path) -> int:
    store = open_store(str(path))
    try:
        return query_events(store, msgspec.convert(WIDE, EventFilter), 1).total
    finally:
        release(store)


def test_a_store_below_the_floor_says_so_and_refuses_writes_naming_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.duckdb"
    with temporary_settings(database_memory_limit=TOO_SMALL, database_threads=2):
        with caplog.at_level(logging.WARNING, "localevents.storage"):
            store = open_store(str(path))
        try:
            with pytest.raises(ServiceUnavailable) as raised:
                store.write_events(events(100))
            page = query_events(store, msgspec.convert(WIDE, EventFilter), 10)  # still reads
        finally:
            release(store)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{SETTING}='64MB' leaves too little memory" in w for w in warnings)
    assert any("at least 80MB with 2 DuckDB threads" in w for w in warnings)
    message = str(raised.value)
    assert f"{SETTING}={TOO_SMALL}" in message
    assert "a commit needs at least 80MB with 2 DuckDB threads" in message
    assert page.total == 0


@pytest.mark.parametrize(("limit", "threads"), [("48MB", 1), ("80MB", 2)])
def test_at_its_floor_a_store_stores_events_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limit: str, threads: int
) -> None:
    path = tmp_path / "events.duckdb"
    with temporary_settings(database_memory_limit=limit, database_threads=threads):
        with caplog.at_level(logging.WARNING, "localevents.storage"):
            store = open_store(str(path))
        try:
            for _ in range(3):
                store.write_events(events(1000))  # the same ids again: each time a commit
        finally:
            release(store)
        assert stored_total(path) == 1000
    assert not [r for r in caplog.records if SETTING in r.getMessage()]


def test_a_limit_too_small_to_open_the_file_is_a_configuration_error_naming_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.duckdb"
    with (
        temporary_settings(database_memory_limit="1MB"),
        pytest.raises(ConfigurationError) as raised,
    ):
        open_store(str(path))
    assert f"{SETTING}='1MB' is too little memory for DuckDB to open" in str(raised.value)
    store = open_store(str(path))  # the file was left as it was: it opens with the default
    try:
        store.write_events(events(10))
    finally:
        release(store)
    assert stored_total(path) == 10


@pytest.mark.anyio
async def test_the_server_answers_503_to_a_write_short_of_memory_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.duckdb"
    body = msgspec.json.encode([msgspec.to_builtins(e) for e in events(10)])
    with temporary_settings(database_memory_limit=TOO_SMALL, database_threads=2):
        app = create_app(None, database=str(path), docs=False)
        transport = InProcessWebSocketTransport(app)
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://test/api/") as http,
        ):
            answer = await http.post(
                "events", content=body, headers={"content-type": "application/json"}
            )
            frame = msgspec.json.encode(msgspec.to_builtins(events(1)[0])).decode()
            async with aconnect_ws("events/in", http, subprotocols=["prefect"]) as ws:
                await ws.send_json({"type": "auth", "token": None})
                assert await ws.receive_json() == {"type": "auth_success"}
                await ws.send_text(frame)
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_text()
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert answer.json()["error"] == "ServiceUnavailable"
    assert f"{SETTING}={TOO_SMALL}" in answer.json()["detail"]
    assert closed.value.code == 1013
    assert f"{SETTING}={TOO_SMALL}" in (closed.value.reason or "")
    assert stored_total(path) == 0


def test_the_command_line_says_a_refused_write_once(tmp_path: Path) -> None:
    """`localevents emit` into a file whose memory limit is too low says so in one warning
    and one error line: the app, running in its process, logged each refused attempt too."""
    completed = subprocess.run(
        [sys.executable, "-m", "localevents", "emit", "acme.made", "acme.r"],
        env=clean_environ(
            {
                "LOCALEVENTS_DATABASE": str(tmp_path / "events.duckdb"),
                "LOCALEVENTS_DATABASE_MEMORY_LIMIT": "20MB",
                "LOCALEVENTS_CLIENT_MAX_RETRIES": "1",
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = completed.stderr.splitlines()
    assert completed.returncode == 1, completed.stderr
    assert len(said) == 2, completed.stderr
    assert said[0].startswith("LOCALEVENTS_DATABASE_MEMORY_LIMIT='20MB' leaves too little")
    assert said[1].startswith("Error: could not store the events: the commit needed more")
