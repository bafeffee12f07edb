"""Real server processes: ``localevents serve`` and ``litestar run``, crashes, a held file.

These start subprocesses (a real uvicorn each), so they are plain synchronous tests. A test
that stops, kills or configures its server starts its own; the others share one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _servers import clean_environ, free_port, localevents_command, serve, spawn, taken_port
from _stored import ids_in_file
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from localevents._cli._serve import _listening_socket
from localevents._exceptions import ConfigurationError, DatabaseInUseError
from localevents._settings import settings_from_environ
from localevents.server._stopping import CUT_DETAIL
from localevents.storage import open_store, release

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _servers import ServerProcess

PATIENCE = 60.0
"""Seconds a server may take to do what a test asks (generous: CI machines are slow)."""

WIDE = {"occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}}


def make_event(**changes: Any) -> dict[str, Any]:
    """A valid event as JSON, with ``changes`` applied."""
    event: dict[str, Any] = {
        "occurred": datetime.now(UTC).isoformat(),
        "event": "acme.widget.made",
        "resource": {"prefect.resource.id": "acme.widget.1"},
        "id": str(uuid.uuid4()),
    }
    event.update(changes)
    return event


def post_blobs(client: httpx.Client, name: str, *, batches: int, per_batch: int, blob: int) -> None:
    """Store ``batches`` batches of ``per_batch`` events named ``name.<batch>``, each with a
    payload of ``blob`` bytes (enough of them fill a connection that is not read)."""
    for batch in range(batches):
        events = [
            make_event(event=f"{name}.{batch}", payload={"blob": "x" * blob})
            for _ in range(per_batch)
        ]
        assert client.post("/events", json=events).status_code == 204


def stored_ids(client: httpx.Client, url: str) -> list[str]:
    """The id of every stored event, in the order served (duplicates would show twice)."""
    response = client.post(f"{url}/events/filter", json={"filter": WIDE, "limit": 1000})
    response.raise_for_status()
    page = response.json()
    ids = [e["id"] for e in page["events"]]
    while page["next_page"]:
        page = client.get(page["next_page"]).raise_for_status().json()
        ids += [e["id"] for e in page["events"]]
    return ids


@pytest.fixture(scope="module")
def shared_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The events file of the module's shared server."""
    return tmp_path_factory.mktemp("shared") / "events.duckdb"


HEADERS_TIMEOUT_S = 2
"""The shared server's deadline for a request's headers (LOCALEVENTS_SERVER_HEADERS_TIMEOUT;
10 s by default)."""


@pytest.fixture(scope="module")
def shared_server(shared_database: Path) -> Iterator[ServerProcess]:
    """One `localevents serve` for the tests that neither stop it nor change its settings
    (its headers deadline aside); each stores only events of its own name, if any."""
    env = {"LOCALEVENTS_SERVER_HEADERS_TIMEOUT": f"{HEADERS_TIMEOUT_S}s"}
    with serve(shared_database, env=env) as process:
        yield process


def test_serve_stores_and_queries_events_and_says_where(
    shared_server: ServerProcess, shared_database: Path
) -> None:
    """`localevents serve` answers health, stores and queries events, and prints where it
    serves and which events file it holds."""
    server = shared_server
    event = make_event(event="acme.widget.served")
    query = {"filter": {**WIDE, "event": {"name": [event["event"]]}}}
    with httpx.Client() as client:
        health = client.get(f"{server.url}/health")
        written = client.post(f"{server.url}/events", json=[event])
        page = client.post(f"{server.url}/events/filter", json=query).json()
        output = server.output()

    assert (health.status_code, health.json()) == (200, True)
    assert written.status_code == 204, written.text
    assert [e["id"] for e in page["events"]] == [event["id"]]
    assert f"serving {server.url} from {shared_database}" in output


def test_acknowledged_events_survive_a_crash(tmp_path: Path) -> None:
    """Every event acknowledged with 204 is stored exactly once after a SIGKILL (D1, D2)."""
    database = tmp_path / "events.duckdb"
    batches = [[make_event() for _ in range(50)] for _ in range(20)]
    acknowledged: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()

    def post(client: httpx.Client, url: str, batch: list[dict[str, Any]]) -> None:
        try:
            response = client.post(f"{url}/events", json=batch)
        except httpx.TransportError:  # in flight when the server died: not acknowledged
            return
        if response.status_code == 204:
            with lock:
                acknowledged.update(e["id"] for e in batch)
                if len(acknowledged) >= 12 * 50:
                    enough.set()

    with serve(database) as server, httpx.Client(timeout=30) as client:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for batch in batches:
                pool.submit(post, client, server.url, batch)
            enough.wait(timeout=60)
            server.kill()  # no graceful shutdown: requests may still be in flight
        assert server.process.returncode == -9

    sent = {e["id"] for batch in batches for e in batch}
    with serve(database) as server, httpx.Client(timeout=30) as client:
        ids = stored_ids(client, server.url)

    assert len(acknowledged) >= 12 * 50
    assert acknowledged <= set(ids) <= sent
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(sys.platform != "linux", reason="anonymous files in memory are Linux's")
def test_a_killed_server_leaves_no_batch_file_in_the_temporary_folder(tmp_path: Path) -> None:
    """A server's commits hand DuckDB their batches through a file with no name: a server
    killed with SIGKILL leaves no copy of its last batch in the temporary folder."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with serve(tmp_path / "events.duckdb", env={"TMPDIR": str(scratch)}) as server:
        with httpx.Client() as client:
            batch = [make_event() for _ in range(20)]
            client.post(f"{server.url}/events", json=batch).raise_for_status()
        server.kill()

    assert server.process.returncode == -9
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_reposted_events_stay_single_across_a_restart(tmp_path: Path) -> None:
    """Events posted again after a restart are not stored twice; the first version wins (D2)."""
    database = tmp_path / "events.duckdb"
    batch = [make_event(event="acme.first") for _ in range(10)]
    with serve(database) as server, httpx.Client() as client:
        client.post(f"{server.url}/events", json=batch).raise_for_status()
    again = [e | {"event": "acme.second"} for e in batch]
    with serve(database) as server, httpx.Client() as client:
        client.post(f"{server.url}/events", json=again).raise_for_status()
        page = client.post(f"{server.url}/events/filter", json={"filter": WIDE}).json()

    assert page["total"] == 10
    assert sorted(e["id"] for e in page["events"]) == sorted(e["id"] for e in batch)
    assert {e["event"] for e in page["events"]} == {"acme.first"}


def test_a_second_server_on_a_held_file_exits_naming_the_holder(
    shared_server: ServerProcess, shared_database: Path
) -> None:
    """A second `localevents serve` on a file another server holds exits non-zero with a
    message naming the file and the holder's PID."""
    second = subprocess.run(
        localevents_command(free_port(), shared_database),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environ(),
        check=False,
    )

    assert second.returncode != 0
    assert str(shared_database.resolve()) in second.stderr
    assert f"PID {shared_server.pid}" in second.stderr


def test_a_port_in_use_stops_serve_with_one_line_and_no_claim_to_serve(tmp_path: Path) -> None:
    """`localevents serve` on a port something else listens on exits 1 naming the port,
    before printing that it serves, and without making its events file."""
    database = tmp_path / "events.duckdb"
    with taken_port() as port:
        result = subprocess.run(
            localevents_command(port, database),
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_environ(),
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert "serving" not in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_turns_nagle_off_on_every_connection() -> None:
    """The socket `localevents serve` hands uvicorn gives each accepted connection
    TCP_NODELAY (as uvicorn's asyncio server accepts them): with Nagle's algorithm on, a
    live frame written before the subscriber acknowledged the previous one waited for its
    delayed acknowledgement, tens of milliseconds."""
    accepted: list[int] = []

    async def accept_one() -> None:
        connected = asyncio.Event()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            connected.set()

        listening = _listening_socket("127.0.0.1", 0)
        server = await asyncio.start_server(on_connect, sock=listening)
        async with server:
            port = listening.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.wait_for(connected.wait(), 10)
            writer.close()

    asyncio.run(accept_one())
    assert accepted == [1]


def test_a_misspelt_setting_stops_serve_with_one_line(tmp_path: Path) -> None:
    """`localevents serve` with an unknown LOCALEVENTS_* name exits 1 naming it, in one
    line, as every other command does (not with a traceback)."""
    result = subprocess.run(
        localevents_command(free_port(), tmp_path / "events.duckdb"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_environ(), "LOCALEVENTS_DATABSE": str(tmp_path / "x.duckdb")},
        check=False,
    )
    assert result.returncode == 1
    assert "unknown setting LOCALEVENTS_DATABSE" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_opening_a_held_file_raises_database_in_use(
    shared_server: ServerProcess, shared_database: Path
) -> None:
    """open_store on a file a server holds raises DatabaseInUseError naming the holder's PID."""
    with pytest.raises(DatabaseInUseError) as raised:
        open_store(str(shared_database))

    assert raised.value.pid == shared_server.pid
    assert f"PID {shared_server.pid}" in str(raised.value)
    assert str(shared_database.resolve()) in str(raised.value)


def test_the_api_key_option_makes_the_server_require_the_key(tmp_path: Path) -> None:
    """`localevents serve --api-key` refuses requests without the key (401) and accepts
    them with it (204)."""
    with serve(tmp_path / "events.duckdb", "--api-key", "s3cret") as server, httpx.Client() as c:
        refused = c.post(f"{server.url}/events", json=[make_event()])
        accepted = c.post(
            f"{server.url}/events",
            json=[make_event()],
            headers={"authorization": "Bearer s3cret"},
        )
        health = c.get(f"{server.url}/health")

    assert refused.status_code == 401
    assert accepted.status_code == 204, accepted.text
    assert health.status_code == 200


def test_litestar_run_serves_the_same_api(tmp_path: Path) -> None:
    """`litestar --app localevents.server:create_app run` serves the API over
    LOCALEVENTS_DATABASE."""
    database = tmp_path / "events.duckdb"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "litestar",
        "--app",
        "localevents.server:create_app",
        "run",
        "--port",
        str(port),
    ]
    event = make_event()
    env = {"LOCALEVENTS_DATABASE": str(database)}
    with spawn(command, port, env=env) as server, httpx.Client() as client:
        written = client.post(f"{server.url}/events", json=[event])
        ids = stored_ids(client, server.url)

    assert written.status_code == 204, written.text
    assert ids == [event["id"]]
    assert database.exists()


def test_litestar_run_on_a_held_file_says_so_in_one_line(tmp_path: Path) -> None:
    """`litestar run` over an events file another process holds fails to start with the
    reason naming the holder, not a traceback of 67 lines around it."""
    database = tmp_path / "events.duckdb"
    command = [sys.executable, "-m", "litestar", "--app", "localevents.server:create_app"]
    holder = open_store(str(database))
    try:
        result = subprocess.run(
            [*command, "run", "--port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            env=clean_environ({"LOCALEVENTS_DATABASE": str(database)}),
            check=False,
        )
    finally:
        release(holder)
    assert result.returncode != 0
    assert f"ERROR:    the events file {database} is in use by PID {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_loopback_server_answers_only_to_loopback_host_names(
    shared_server: ServerProcess,
) -> None:
    """`serve` on 127.0.0.1 refuses a request whose Host is another name (a site whose name
    was made to resolve to 127.0.0.1: DNS rebinding makes its page same-origin) with 400,
    HTTP and WebSocket alike, and serves localhost, 127.0.0.1 and [::1] names."""
    server = shared_server
    event = make_event(event="acme.widget.rebound")
    with httpx.Client(timeout=PATIENCE) as client:
        rebound = {"Host": f"rebind.evil.example:{server.port}"}
        refused = client.post(f"{server.url}/events", json=[event], headers=rebound)
        answered = [
            client.get(f"{server.url}/health", headers={"Host": f"{name}:{server.port}"})
            for name in ("localhost", "127.0.0.1", "[::1]", "app.localhost")
        ]
        upgrade = _upgrade_answer(server.port, f"rebind.evil.example:{server.port}")
        found = stored_ids(client, server.url)

    assert refused.status_code == 400
    assert "answers only to localhost, 127.0.0.1 and [::1]" in refused.json()["detail"]
    assert [response.status_code for response in answered] == [200, 200, 200, 200]
    assert upgrade.startswith(b"HTTP/1.1 403")
    assert event["id"] not in found


def test_a_websocket_from_a_page_of_another_site_is_refused(shared_server: ServerProcess) -> None:
    """A WebSocket a browser opens from another site's page (its Origin) is refused before
    it is accepted (403): a server without a key streamed every event to any page."""
    host = f"127.0.0.1:{shared_server.port}"
    upgrade = _upgrade_answer(shared_server.port, host, "Origin: https://evil.example")
    assert upgrade.startswith(b"HTTP/1.1 403")


def _upgrade_answer(port: int, host: str, *headers: str) -> bytes:
    """The first bytes of the answer to a WebSocket upgrade to /api/events/out sent with
    the ``Host`` header ``host`` and ``headers``."""
    lines = [
        "GET /api/events/out HTTP/1.1",
        f"Host: {host}",
        *headers,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096)


def test_a_connection_whose_request_headers_never_end_is_closed(
    shared_server: ServerProcess,
) -> None:
    """A connection that sends part of a request's headers, or nothing, is closed once the
    headers are overdue (LOCALEVENTS_SERVER_HEADERS_TIMEOUT; slowloris: such connections
    stayed open for good, each with its file descriptor), while a request that completes
    is answered."""
    server = shared_server
    # past the setting's 2 s, well short of the default 10 s: the setting is what closes them
    waited = 3 * HEADERS_TIMEOUT_S
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=waited)
    partial = socket.create_connection(("127.0.0.1", server.port), timeout=waited)
    with silent, partial, httpx.Client() as client:
        partial.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
        assert client.get(f"{server.url}/health").status_code == 200
        # closed by the server (a recv still waiting after `waited` fails the test)
        assert silent.recv(1024) == b""
        assert partial.recv(1024) == b""


def test_the_headers_and_shutdown_timeouts_are_read_as_durations() -> None:
    """`serve`'s deadline for a request's headers and its wait for connections when it
    stops are durations; a wait for connections shorter than a second (uvicorn counts whole
    seconds) or a headers deadline of nothing is refused, naming the setting."""
    settings = settings_from_environ(
        {
            "LOCALEVENTS_SERVER_HEADERS_TIMEOUT": "1.5",
            "LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT": "2m",
        }
    )
    assert settings.server_headers_timeout == timedelta(seconds=1.5)
    assert settings.server_shutdown_timeout == timedelta(minutes=2)
    with pytest.raises(ConfigurationError, match="LOCALEVENTS_SERVER_HEADERS_TIMEOUT must be"):
        settings_from_environ({"LOCALEVENTS_SERVER_HEADERS_TIMEOUT": "0"})
    with pytest.raises(ConfigurationError, match="LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT must be"):
        settings_from_environ({"LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT": "0.5"})


def _stuck_subscriber(port: int) -> socket.socket:
    """A subscriber to every live event that never reads once it is subscribed (a paused
    or hung consumer), on a raw socket with a small receive buffer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(
        ws.send(
            Request(host=f"127.0.0.1:{port}", target="/api/events/out", subprotocols=["prefect"])
        )
    )
    wanted: list[type[Any]] = [AcceptConnection, TextMessage]
    while wanted:
        ws.receive_data(sock.recv(65536))
        for event in ws.events():
            if isinstance(event, wanted[0]):
                wanted.pop(0)
                if wanted:  # accepted: authenticate (no key), then wait for auth_success
                    sock.sendall(ws.send(TextMessage(json.dumps({"type": "auth", "token": None}))))
    subscribe = {"type": "filter", "filter": {}, "backfill": False}
    sock.sendall(ws.send(TextMessage(json.dumps(subscribe))))
    return sock


SHUTDOWN = {"LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT": "1s"}
"""A stopping server's wait for open connections (5 s by default)."""


def test_serve_stops_on_sigterm_beside_a_subscriber_that_stopped_reading(tmp_path: Path) -> None:
    """SIGTERM stops the server even while a subscriber has stopped reading and the events
    meant for it fill the connection: after a grace period the connection is closed (it
    used to wait for that subscriber for ever, until SIGKILL)."""
    with serve(tmp_path / "events.duckdb", env=SHUTDOWN) as server:
        stuck = _stuck_subscriber(server.port)
        with stuck, httpx.Client(base_url=server.url, timeout=PATIENCE) as client:
            post_blobs(client, "stuck", batches=5, per_batch=200, blob=20_000)
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(timeout=PATIENCE)
    assert code == -signal.SIGTERM  # uvicorn raises the signal again once it has shut down


def test_an_upload_cut_by_a_stop_is_answered_503_without_a_traceback(tmp_path: Path) -> None:
    """SIGTERM while a client is still sending its body: after the grace period the request
    is answered 503 with Retry-After (the SDK retries it; it used to get 500, which it does
    not retry) and the log says so in one line, without a traceback."""
    with serve(tmp_path / "events.duckdb", env=SHUTDOWN) as server:
        head = (
            "POST /api/events HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
            sock.sendall(head.encode())
            time.sleep(0.2)  # the request has reached the app, which waits for the body
            server.process.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        server.process.wait(timeout=PATIENCE)
    status, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert b"retry-after: 1" in headers.lower()
    assert json.loads(body) == {"detail": CUT_DETAIL, "error": "ServiceUnavailable"}
    output = server.output()
    said = "POST /api/events: answered 503, the server stopped before it finished"
    assert f"\nWARNING:  localevents.server: {said}\n" in output  # as uvicorn's lines are
    assert "Traceback" not in output


def test_an_export_cut_by_a_stop_ends_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """SIGTERM while an export is streamed to a client that reads nothing: after the grace
    period (LOCALEVENTS_SERVER_SHUTDOWN_TIMEOUT) the answer ends short, and the log says so
    in one line, without a traceback."""
    with serve(tmp_path / "events.duckdb", env=SHUTDOWN) as server:
        with httpx.Client(base_url=server.url, timeout=PATIENCE) as client:
            post_blobs(client, "exported", batches=5, per_batch=200, blob=20_000)
        with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            head = (
                "POST /api/events/export HTTP/1.1\r\nHost: localhost\r\n"
                "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )
            sock.sendall(head.encode())
            assert sock.recv(64).startswith(b"HTTP/1.1 200 OK")  # then read no more
            server.process.send_signal(signal.SIGTERM)
            # it waits the setting's 1 s for the reader, not the default's 5 s
            server.process.wait(timeout=4.0)
    output = server.output()
    assert "POST /api/events/export: the answer was cut short, the server is stopping" in output
    assert "Traceback" not in output


def _metric(client: httpx.Client, name: str) -> float:
    """The value of the unlabelled metric ``name`` on the server's /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _read_to_the_end(sock: socket.socket) -> None:
    while sock.recv(1 << 20):
        pass


def test_a_subscriber_that_stopped_reading_is_closed_once_it_falls_behind(
    tmp_path: Path,
) -> None:
    """A subscriber whose connection is full (its client reads nothing) and whose queue then
    overflows is closed, its connection cut, and counted as fallen behind. Its task waited
    for the connection to drain for good: the subscriber stayed, with megabytes queued for
    it, until the server stopped (and stopping took the whole grace period)."""
    pytest.importorskip("prometheus_client")
    settings = {"LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_SIZE": "100"}
    with serve(tmp_path / "events.duckdb", env=settings) as server:
        stuck = _stuck_subscriber(server.port)
        with stuck, httpx.Client(base_url=server.url, timeout=PATIENCE) as client:
            post_blobs(client, "stuck", batches=10, per_batch=500, blob=2_000)
            deadline = time.monotonic() + PATIENCE
            while _metric(client, "localevents_server_subscribers") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _metric(client, "localevents_server_subscribers") == 0
            assert _metric(client, "localevents_server_subscribers_fell_behind_total") == 1
            stuck.settimeout(PATIENCE)
            with pytest.raises(ConnectionResetError):  # cut: nothing more will come
                _read_to_the_end(stuck)
    said = [line for line in server.output().splitlines() if "fell behind" in line]
    assert len(said) == 1
    assert "closed a subscriber of /events/out (127.0.0.1:" in said[0]
    assert "more than 100 events" in said[0]


@pytest.mark.parametrize("access_log", [True, False], ids=["default", "no-access-log"])
def test_the_access_log_can_be_turned_off_alone(tmp_path: Path, access_log: bool) -> None:
    """`serve --no-access-log` drops uvicorn's line per request, and keeps the rest of the
    info lines (an operator had to go to --log-level warning, losing those too)."""
    args = () if access_log else ("--no-access-log",)
    with (
        serve(tmp_path / "events.duckdb", *args) as server,
        httpx.Client(base_url=server.url, timeout=PATIENCE) as client,
    ):
        assert client.post("/events", json=[make_event()]).status_code == 204
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=PATIENCE)
    output = server.output()
    assert ('"POST /api/events HTTP/1.1" 204' in output) is access_log
    assert "Application startup complete" in output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_server_leaves_everything_in_the_events_file(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """A server stopped by SIGTERM or Ctrl-C closes its events file before it ends (by that
    signal, quietly): the file alone, copied without its write-ahead log, holds every event.
    On SIGTERM it used to end before closing the file, leaving the events in the log."""
    database = tmp_path / "events.duckdb"
    with serve(database) as server, httpx.Client(base_url=server.url, timeout=PATIENCE) as client:
        posted = [make_event() for _ in range(3)]
        assert client.post("/events", json=posted).status_code == 204
        server.process.send_signal(stop)
        code = server.process.wait(timeout=PATIENCE)
    assert code == -stop
    assert not database.with_name("events.duckdb.wal").exists()
    for noise in ("Traceback", "Aborted", "leaked"):
        assert noise not in server.output()
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(database.read_bytes())
    assert ids_in_file(copy) == {event["id"] for event in posted}


def test_a_second_ctrl_c_stops_at_once_with_one_line_and_loses_nothing(tmp_path: Path) -> None:
    """Ctrl-C twice makes uvicorn skip the application's shutdown, whose cancelled lifespan
    was reported as a 40-line traceback ("Exception in 'lifespan' protocol"). One line now
    says the server stopped at once; the process still ends by the signal, and every event
    it acknowledged is in the file."""
    database = tmp_path / "events.duckdb"
    head = "POST /api/events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n["
    with serve(database) as server, httpx.Client(base_url=server.url, timeout=PATIENCE) as client:
        posted = [make_event() for _ in range(3)]
        assert client.post("/events", json=posted).status_code == 204
        # An upload under way holds the graceful stop open (up to 5 s) for the second one.
        with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
            sock.sendall(head.encode())
            server.process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + PATIENCE
            while "Waiting for connections to close" not in server.output():
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.02)
            server.process.send_signal(signal.SIGINT)
            code = server.process.wait(timeout=PATIENCE)
    output = server.output()
    assert code == -signal.SIGINT
    assert "Traceback" not in output
    assert "stopped at once by a second signal, without the usual shutdown" in output
    assert ids_in_file(database) == {event["id"] for event in posted}
