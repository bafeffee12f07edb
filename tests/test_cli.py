"""The command line: emit, tail, query and count against a real server (one per module),
their output formats, and their errors and exit codes."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec
import pytest
from _cli import against as run_against
from _cli import run
from _servers import clean_environ, free_port, serve

from localevents import (
    Event,
    EventCount,
    EventFilter,
    EventOccurredFilter,
    EventSubscriber,
    ReceivedEvent,
    temporary_settings,
)
from localevents.client import get_sync_client
from localevents.client._websocket import QUICK_RECONNECTS, RECONNECT_DELAY

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _servers import ServerProcess
    from click.testing import Result

pytestmark = pytest.mark.slow  # the module shares one real server (and runs a few CLIs)

KEY = "s3cret"
ID = "prefect.resource.id"
ROLE = "prefect.resource.role"
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
"""When the tests' events happened: recent enough for the default 180-day window."""
DAY = START.strftime("%Y-%m-%d")
PATIENCE = 60.0
"""Seconds a subprocess may take to answer (generous: CI machines are slow)."""

T = TypeVar("T")
_names = itertools.count()


@pytest.fixture(scope="module")
def server_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The events file of the module's server."""
    return tmp_path_factory.mktemp("cli") / "events.duckdb"


@pytest.fixture(scope="module")
def server(server_database: Path) -> Iterator[ServerProcess]:
    """One server with an API key for the whole module; each test uses its own names."""
    with serve(server_database, "--api-key", KEY) as process:
        yield process


@pytest.fixture
def prefix() -> str:
    """Event names and resource ids no other test of the module uses."""
    return f"t{next(_names)}"


def against(server: ServerProcess, *args: str, key: str = KEY) -> Result:
    """The CLI talking to ``server``."""
    return run_against(server, *args, key=key)


def store(server: ServerProcess, *events: Event) -> None:
    with get_sync_client(api_url=server.url, api_key=KEY) as client:
        client.create_events(events)


def stored(server: ServerProcess, resource_prefix: str) -> list[ReceivedEvent]:
    """Events whose resource id starts with ``resource_prefix``, oldest first."""
    window = EventFilter(occurred=EventOccurredFilter(since=START - timedelta(days=1)))
    with get_sync_client(api_url=server.url, api_key=KEY) as client:
        found = client.iter_events(msgspec.structs.replace(window, order="ASC"))
        return [e for e in found if e.resource.id.startswith(resource_prefix)]


def ndjson(text: str, type_: type[T]) -> list[T]:
    """Each line of ``text`` decoded as ``type_``."""
    return [msgspec.json.decode(line, type=type_) for line in text.splitlines()]


def test_emit_stores_the_event_and_prints_its_id(server: ServerProcess, prefix: str) -> None:
    """emit stores the name, resource labels, related resources and payload it is given,
    and prints the new event's id."""
    result = against(
        server,
        "emit",
        f"{prefix}.order.shipped",
        f"{prefix}.order.42",
        "-l",
        "customer=7",
        "--related",
        f"tag={prefix}.tag.express",
        "--related",
        json.dumps({ID: f"{prefix}.user.1", ROLE: "buyer", "name": "Ada"}),
        "--payload",
        '{"items": 3}',
    )
    assert result.exit_code == 0, result.output
    (event,) = stored(server, prefix)
    assert result.stdout.strip() == str(event.id)
    assert event.event == f"{prefix}.order.shipped"
    assert dict(event.resource) == {ID: f"{prefix}.order.42", "customer": "7"}
    assert [dict(r) for r in event.related] == [
        {ID: f"{prefix}.tag.express", ROLE: "tag"},
        {ID: f"{prefix}.user.1", ROLE: "buyer", "name": "Ada"},
    ]
    assert event.payload == {"items": 3}


def test_emit_json_prints_the_event(server: ServerProcess, prefix: str) -> None:
    """emit --json prints the stored event as one JSON object, with the given time and id."""
    event_id = "01a201c7-0000-7000-8000-000000000001"
    result = against(
        server, "emit", "acme.x", f"{prefix}.r", "--occurred", START.isoformat(), "--id", event_id
    )
    assert result.exit_code == 0, result.output
    (event,) = stored(server, prefix)
    assert (str(event.id), event.occurred) == (event_id, START)
    printed = against(server, "emit", "acme.y", f"{prefix}.s", "--json")
    assert printed.exit_code == 0, printed.output
    assert msgspec.json.decode(printed.stdout, type=Event).resource.id == f"{prefix}.s"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["-l", "customer"], "'customer' is not KEY=VALUE"),
        (["-l", "=7"], "'=7' is not KEY=VALUE"),
        (["--payload", "{items: 3}"], "is not valid JSON"),
        (["--payload", "[1, 2]"], "is not a JSON object"),
        (["--related", "tag"], "'tag' is not ROLE=ID"),
        (["--related", json.dumps({ID: "x"})], "prefect.resource.role"),
        (["--occurred", "yesterday"], "neither an ISO 8601 time"),
        (["--id", "not-a-uuid"], "not a valid UUID"),
    ],
)
def test_bad_emit_arguments_exit_2_and_store_nothing(
    server: ServerProcess, prefix: str, args: list[str], complaint: str
) -> None:
    """A malformed label, payload, related resource, time or id exits with 2, says what is
    wrong, and stores nothing."""
    result = against(server, "emit", "acme.bad", f"{prefix}.r", *args)
    assert result.exit_code == 2
    assert complaint in result.stderr
    assert stored(server, prefix) == []


def test_invalid_event_exits_2(server: ServerProcess) -> None:
    """An event that breaks a rule of the protocol (an empty resource id) exits with 2."""
    result = against(server, "emit", "acme.bad", "")
    assert result.exit_code == 2
    assert "prefect.resource.id label must be non-empty" in result.stderr


@pytest.mark.parametrize(
    "command", [["emit", "acme.x", "r"], ["tail"], ["query"], ["count", "event"]]
)
def test_wrong_api_key_exits_1_with_the_servers_reason(
    server: ServerProcess, command: list[str]
) -> None:
    """A refused key is one line naming the 401 and the URL, exit code 1, no traceback."""
    result = against(server, *command, key="wrong")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert f"401 Unauthorized for POST {server.url}/events" in result.stderr
    assert "Traceback" not in result.output


def event_at(prefix: str, minutes: int, name: str = "step", **labels: str) -> Event:
    return Event(
        event=f"{prefix}.{name}",
        resource={ID: f"{prefix}.widget.{minutes}", **labels},
        occurred=START + timedelta(minutes=minutes),
    )


def test_query_prints_one_line_per_event_newest_first(server: ServerProcess, prefix: str) -> None:
    """query prints time, name, resource, related and payload on one line per event."""
    related = {ID: f"{prefix}.tag.a", ROLE: "tag"}
    store(
        server,
        event_at(prefix, 0),
        Event(
            event=f"{prefix}.done",
            resource={ID: f"{prefix}.widget.9"},
            related=[related],
            payload={"ok": True, "note": "[not markup]"},
            occurred=START + timedelta(minutes=1),
        ),
    )
    result = against(server, "query", "-r", f"{prefix}.*")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{DAY} {START:%H}:01:00.000Z  {prefix}.done  {prefix}.widget.9  tag={prefix}.tag.a  "
        '{"ok":true,"note":"[not markup]"}',
        f"{DAY} {START:%H}:00:00.000Z  {prefix}.step  {prefix}.widget.0",
    ]
    assert "2 shown of 2 matching events" in result.stderr


def test_query_json_is_ndjson_of_stored_events(server: ServerProcess, prefix: str) -> None:
    """query --json prints one stored event per line, each readable as a ReceivedEvent."""
    written = [event_at(prefix, i) for i in range(3)]
    store(server, *written)
    result = against(server, "query", "-r", f"{prefix}.*", "--order", "asc", "--json")
    assert result.exit_code == 0, result.output
    read = ndjson(result.stdout, ReceivedEvent)
    assert [e.id for e in read] == [e.id for e in written]


def test_query_pages_by_token_and_all(server: ServerProcess, prefix: str) -> None:
    """Without --all a query shows one page and the command for the next; --page-token
    continues there; --all follows every page."""
    written = [event_at(prefix, i) for i in range(5)]
    store(server, *written)
    first = against(server, "query", "-r", f"{prefix}.*", "--order", "asc", "-n", "2", "--json")
    assert first.exit_code == 0, first.output
    token = re.search(r"--page-token (\S+)", first.stderr)
    assert token is not None
    second = against(server, "query", "--page-token", token[1], "--json")
    assert second.exit_code == 0, second.output
    everything = against(server, "query", "-r", f"{prefix}.*", "-n", "2", "--all", "--json")
    assert everything.exit_code == 0, everything.output
    ids = [e.id for e in written]
    assert [e.id for e in ndjson(first.stdout, ReceivedEvent)] == ids[:2]
    assert [e.id for e in ndjson(second.stdout, ReceivedEvent)] == ids[2:4]
    assert [e.id for e in ndjson(everything.stdout, ReceivedEvent)] == ids[::-1]
    assert "next page" not in everything.stderr


def test_the_next_page_command_works_as_printed_on_an_events_file(tmp_path: Path) -> None:
    """The printed next-page command names the same --database: run as printed (split like
    a shell would), it continues the query instead of meeting another store."""
    database = tmp_path / "with space.duckdb"
    written = [event_at("acme.paged", n) for n in range(3)]
    with temporary_settings(database=str(database), api_url=None), get_sync_client() as client:
        client.create_events(written)
    first = run("query", "--database", database, "-n", "2", "--json")
    assert first.exit_code == 0, first.output
    command = re.search(r"next page: (localevents query .*)", first.stderr)
    assert command is not None, first.stderr
    words = shlex.split(command[1])
    assert words[2:4] == ["--database", str(database)]
    second = run(*words[1:], "--json")
    assert second.exit_code == 0, second.output
    ids = [e.id for e in ndjson(first.stdout + second.stdout, ReceivedEvent)]
    assert sorted(ids) == sorted(e.id for e in written)


def test_page_token_with_filter_options_exits_2(server: ServerProcess) -> None:
    """A page token carries its query: adding filter options is a usage error."""
    result = against(server, "query", "--page-token", "abc", "-e", "acme.x")
    assert result.exit_code == 2
    assert "--page-token continues an earlier query" in result.stderr


@pytest.mark.parametrize(("option", "named"), [("-n", "-n/--limit"), ("--order", "--order")])
def test_page_token_with_a_limit_or_an_order_exits_2(
    tmp_path: Path, option: str, named: str
) -> None:
    """The page size and order are part of the token (the store signs them), so -n or
    --order with --page-token cannot be honoured: a usage error naming the option, rather
    than a page of another size or order than asked for."""
    database = tmp_path / "events.duckdb"
    with temporary_settings(database=str(database), api_url=None), get_sync_client() as client:
        client.create_events([event_at("acme.paged", n) for n in range(5)])
    first = run("query", "--database", database, "-n", "2", "--json")
    token = re.search(r"--page-token (\S+)", first.stderr)
    assert token is not None, first.stderr
    value = "1" if option == "-n" else "asc"
    result = run("query", "--database", database, "--page-token", token[1], option, value)
    assert result.exit_code == 2
    assert f"drop {named}" in result.stderr
    assert result.stdout == ""


def test_tampered_page_token_exits_1(server: ServerProcess) -> None:
    """A token the server did not issue is the server's 403 explanation, exit code 1."""
    result = against(server, "query", "--page-token", "forged")
    assert result.exit_code == 1
    assert "403 Forbidden" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-e", "{p}.start", "-e", "{p}.stop"], [0, 2]),
        (["-p", "{p}.st"], [0, 2, 3]),
        (["-r", "{p}.widget.1"], [1]),
        (["-r", "{p}.widget.[12]", "-r", "{p}.widget.?"], [0, 1, 2, 3]),
        (["-l", "env=prod"], [0, 1]),
        (["-l", "env=!prod"], [2]),
        (["--related", "{p}.tag.*", "--related-role", "tag"], [3]),
        (["-t", "mars"], [3]),
        (["--since", "{start}+1m", "--until", "{start}+2m"], [1, 2]),
    ],
)
def test_filter_options_select_the_matching_events(
    server: ServerProcess, prefix: str, args: list[str], expected: list[int]
) -> None:
    """Each filter option narrows the query as documented (repeats OR, options AND, globs)."""
    store(
        server,
        event_at(prefix, 0, "start", env="prod"),
        event_at(prefix, 1, "ping", env="prod"),
        event_at(prefix, 2, "stop", env="dev"),
        Event(
            event=f"{prefix}.steer",
            resource={ID: f"{prefix}.widget.3"},
            related=[{ID: f"{prefix}.tag.x", ROLE: "tag"}],
            payload={"to": "Mars"},
            occurred=START + timedelta(minutes=3),
        ),
    )
    moments = {
        "{start}+1m": START + timedelta(minutes=1),
        "{start}+2m": START + timedelta(minutes=2),
    }
    filled = [moments[arg].isoformat() if arg in moments else arg.format(p=prefix) for arg in args]
    window = ["--since", DAY] if "--since" not in args else []
    result = against(server, "query", *filled, *window, "--order", "asc", "--json")
    assert result.exit_code == 0, result.output
    found = [e.resource.id for e in ndjson(result.stdout, ReceivedEvent)]
    in_test = [rid for rid in found if rid.startswith(f"{prefix}.")]
    assert in_test == [f"{prefix}.widget.{i}" for i in expected]


def test_since_after_until_exits_2(server: ServerProcess) -> None:
    """A window that ends before it starts is a usage error."""
    result = against(server, "query", "--since", "1h", "--until", "2h")
    assert result.exit_code == 2
    assert "--since must not be after --until" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["query"], ["count", "event"], ["export", "out.ndjson"], ["emit", "acme.x", "acme.r"]],
)
def test_a_bare_number_as_a_time_exits_2_showing_the_forms(
    tmp_path: Path, command: list[str]
) -> None:
    """`--since 2026` is not read as 2026 seconds ago: a number without a unit is a usage
    error that shows the date and the duration the user may have meant."""
    option = "--occurred" if command[0] == "emit" else "--since"
    args = [str(tmp_path / arg) if arg.endswith(".ndjson") else arg for arg in command]
    result = run(*args, option, "2026", "--database", tmp_path / "events.duckdb")
    assert result.exit_code == 2
    assert "'2026' is a bare number: write a date (2026-01-01)" in result.stderr
    assert "(2026s, 15m, 2h, 3d)" in result.stderr
    assert not (tmp_path / "events.duckdb").exists()


@pytest.mark.parametrize(
    "since",
    [
        "2026-01-05",
        "20260105",
        "2026-01-05T10:00",
        "2026-01-05T10:00:00+02:00",
        "90s",
        "15m",
        "2h",
        "3d",
        "1.5 hours",
        "now",
    ],
)
def test_every_documented_time_form_is_accepted(tmp_path: Path, since: str) -> None:
    """The forms --since's help lists (ISO dates and times, durations ago with a unit, now)
    all still read as times."""
    database = tmp_path / "events.duckdb"
    assert run("emit", "acme.e", "acme.r", "--database", database).exit_code == 0
    result = run("query", "--since", since, "--database", database)
    assert result.exit_code == 0, result.output
    assert "(90s, 15m, 2h, 3d)" in " ".join(run("query", "--help").stdout.split())


def test_count_time_draws_a_bar_per_bucket(server: ServerProcess, prefix: str) -> None:
    """count time prints each bucket's start, its count, and a bar as long as its share."""
    minutes = [0, 5, 10, 65, 130, 135]  # 3 in the first hour, 1 in the second, 2 in the third
    store(server, *(event_at(prefix, m) for m in minutes))
    until = START + timedelta(hours=2, minutes=59)
    window = ["--since", START.isoformat(), "--until", until.isoformat()]
    result = against(server, "count", "time", "-p", f"{prefix}.", "--unit", "hour", *window)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines()}
    hours = [f"{START + timedelta(hours=h):%H}:00" for h in range(3)]
    assert list(rows) == hours
    bars = [line.count("█") for line in rows.values()]
    assert bars[0] > bars[2] > bars[1] > 0
    assert [line.split()[2] for line in rows.values()] == ["3", "1", "2"]


def test_count_event_json_is_ndjson_of_counts(server: ServerProcess, prefix: str) -> None:
    """count event --json prints one EventCount per line, the most frequent first."""
    store(server, event_at(prefix, 0, "a"), event_at(prefix, 1, "b"), event_at(prefix, 2, "b"))
    result = against(server, "count", "event", "-p", f"{prefix}.", "--since", DAY, "--json")
    assert result.exit_code == 0, result.output
    counts = ndjson(result.stdout, EventCount)
    assert [(c.value, c.count) for c in counts] == [(f"{prefix}.b", 2), (f"{prefix}.a", 1)]


def test_bad_countable_and_interval_exit_2(server: ServerProcess) -> None:
    """An unknown countable or an interval below the minimum is a usage error."""
    assert against(server, "count", "weekday").exit_code == 2
    assert against(server, "count", "time", "--interval", "0").exit_code == 2


def test_tail_prints_only_matching_events(server: ServerProcess, prefix: str) -> None:
    """tail prints the events that match its filters, one readable line each."""
    outcome: list[Result] = []
    args = ("tail", "-p", f"{prefix}.", "-l", "env=prod", "-n", "1")
    tail = threading.Thread(target=lambda: outcome.append(against(server, *args)), daemon=True)
    tail.start()
    skipped = Event(event=f"{prefix}.skipped", resource={ID: f"{prefix}.r.1", "env": "dev"})
    wanted = Event(event=f"{prefix}.wanted", resource={ID: f"{prefix}.r.2", "env": "prod"})
    store(server, skipped)
    store(server, wanted)
    tail.join(PATIENCE)
    (result,) = outcome
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.endswith(f"Z  {prefix}.wanted  {prefix}.r.2")


def tail_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "localevents", "tail", *args]


_DEFAULT_ATTEMPTS: int = (
    inspect.signature(EventSubscriber).parameters["reconnection_attempts"].default
)
SDK_RECONNECT_BUDGET_S = (1 + _DEFAULT_ATTEMPTS - QUICK_RECONNECTS) * RECONNECT_DELAY
"""Seconds after a lost connection by which a subscriber with the default attempts has given
up on a server that refuses connections: a pause (nothing was delivered on the connection),
then its quick reconnects, then one delay before each further attempt."""


def test_tail_receives_an_event_emitted_after_it_starts(server: ServerProcess, prefix: str) -> None:
    """`python -m localevents tail --json`, configured by LOCALEVENTS_API_URL and _KEY, prints
    an event emitted once it is following, as one JSON line."""
    env = clean_environ({"LOCALEVENTS_API_URL": server.url, "LOCALEVENTS_API_KEY": KEY})
    with subprocess.Popen(
        tail_command("--json", "-n", "1", "-p", f"{prefix}."),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        assert process.stderr is not None
        assert "tailing" in process.stderr.readline()
        emitted = against(server, "emit", f"{prefix}.live", f"{prefix}.r")
        assert emitted.exit_code == 0, emitted.output
        out, err = process.communicate(timeout=PATIENCE)
    assert process.returncode == 0, err
    (event,) = ndjson(out, ReceivedEvent)
    assert str(event.id) == emitted.stdout.strip()


def test_tail_follows_a_server_restart_longer_than_the_sdks_budget_and_says_so(
    tmp_path: Path,
) -> None:
    """tail, like `tail -F`, keeps reconnecting to a server that stays down longer than the
    subscriber's default ten attempts (about 10 s here), saying on stderr that the
    connection was lost and that it is back, then prints what the restarted server takes."""
    database = tmp_path / "events.duckdb"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serve(database))
        process = stack.enter_context(
            subprocess.Popen(
                tail_command("--json", "-n", "1", "-p", "restart."),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_environ({"LOCALEVENTS_API_URL": first.url}),
            )
        )
        stack.callback(process.kill)  # whatever happens, before the wait for it to end
        assert process.stderr is not None
        assert "tailing" in process.stderr.readline()
        first.stop()
        assert "connection lost" in process.stderr.readline()  # the server said 1001
        time.sleep(SDK_RECONNECT_BUDGET_S + 1.0)  # down for longer than the SDK would wait
        assert process.poll() is None, process.communicate()
        with serve(database, port=first.port) as second:
            emitted = run("emit", "restart.after", "restart.r", "--api-url", second.url)
            assert emitted.exit_code == 0, emitted.output
            out, err = process.communicate(timeout=PATIENCE)
    assert process.returncode == 0, err
    assert "reconnected" in err
    (event,) = ndjson(out, ReceivedEvent)
    assert str(event.id) == emitted.stdout.strip()


def test_unreachable_server_exits_1_naming_the_url() -> None:
    """A server nobody listens at is one line naming its URL, exit code 1, no traceback."""
    url = f"http://127.0.0.1:{free_port()}/api"
    finished = subprocess.run(
        [sys.executable, "-m", "localevents", "query", "--api-url", url],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=PATIENCE,
        check=False,
    )
    assert finished.returncode == 1
    assert f"cannot reach the events API at {url}" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.parametrize("command", [["emit", "acme.x", "r"], ["tail"], ["count", "day"]])
def test_every_command_reports_an_unreachable_server(command: list[str]) -> None:
    """emit, tail and count fail fast on an unreachable server, naming it, with exit code 1."""
    url = f"http://127.0.0.1:{free_port()}/api"
    result = run(*command, "--api-url", url)
    assert result.exit_code == 1
    assert f"cannot reach the events API at {url}" in result.stderr


def test_a_url_without_its_scheme_is_a_server_not_reached() -> None:
    """An API URL missing its ``http://`` says the server was not reached, not that a
    connection to it was lost."""
    url = f"127.0.0.1:{free_port()}/api"
    result = run("query", "--api-url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot reach the events API at {url}: "), result.stderr


def test_without_a_server_commands_use_the_events_file(tmp_path: Path) -> None:
    """With no API URL, emit and query work on the --database file in-process."""
    database = str(tmp_path / "events.duckdb")
    emitted = run("emit", "acme.local", "acme.r", "--database", database)
    assert emitted.exit_code == 0, emitted.output
    result = run("query", "--json", "--database", database)
    assert result.exit_code == 0, result.output
    (event,) = ndjson(result.stdout, ReceivedEvent)
    assert str(event.id) == emitted.stdout.strip()


def test_summaries_of_one_event_say_one_event(tmp_path: Path) -> None:
    """The lines that count what a command did read right for one: "1 matching event",
    "1 event, 1 event name", "exported 1 event", not "1 events"."""
    database = str(tmp_path / "events.duckdb")
    assert run("emit", "acme.single", "acme.r", "--database", database).exit_code == 0
    queried = run("query", "--database", database)
    counts = run("count", "event", "--database", database)
    exported = run("export", str(tmp_path / "out.jsonl"), "--database", database)
    for result in (queried, counts, exported):
        assert result.exit_code == 0, result.output
    assert "1 shown of 1 matching event\n" in queried.stderr
    assert "1 event, 1 event name\n" in counts.stderr
    assert "exported 1 event (" in exported.stderr


def test_a_file_held_by_a_server_is_a_clear_error(
    server: ServerProcess, server_database: Path
) -> None:
    """In ephemeral mode, a file a server holds exits with 1 and names the server's PID."""
    result = run("query", "--database", str(server_database))
    assert result.exit_code == 1
    assert f"in use by PID {server.pid}" in result.stderr


def test_database_with_an_api_url_exits_2(server: ServerProcess, tmp_path: Path) -> None:
    """--database is for ephemeral mode: combined with a server URL it is a usage error."""
    result = against(server, "query", "--database", str(tmp_path / "x.duckdb"))
    assert result.exit_code == 2
    assert "--database is for ephemeral mode" in result.stderr


def cli_process(
    *args: str | Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``localevents ARGS`` in a process of its own (its settings read from its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "localevents", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=clean_environ(extra),
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["query"],
        ["count", "event"],
        ["tail"],
        ["emit", "acme.e", "acme.r"],
        ["export", "{tmp}/out.ndjson"],
        ["import", "{tmp}/in.ndjson"],
    ],
)
def test_a_misspelt_setting_is_one_line_with_a_database_too(
    tmp_path: Path, command: list[str]
) -> None:
    """With --database, an unknown LOCALEVENTS_* name exits 1 naming it in one line (it used
    to end in a traceback), and no events file is made."""
    database = tmp_path / "events.duckdb"
    (tmp_path / "in.ndjson").write_text("")
    args = [arg.format(tmp=tmp_path) for arg in command]
    result = cli_process(*args, "--database", database, extra={"LOCALEVENTS_API_KY": "x"})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "Error: unknown setting LOCALEVENTS_API_KY: did you mean LOCALEVENTS_API_KEY?"
    )
    assert not database.exists()


@pytest.mark.parametrize("command", [["query"], ["count", "event"], ["tail"]])
def test_reading_commands_refuse_an_events_file_that_does_not_exist(
    tmp_path: Path, command: list[str]
) -> None:
    """A mistyped --database does not make an empty events file (and its folders) to report
    nothing from: a command that only reads exits 1 naming the missing file."""
    database = tmp_path / "typo" / "events.duckdb"
    result = run(*command, "--database", database)
    assert result.exit_code == 1
    assert f"there is no events file at {database}" in result.stderr
    assert not database.parent.exists()


def test_an_events_file_whose_folder_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """A --database below a plain file is refused in one line naming the folder."""
    (tmp_path / "plain").write_text("not a folder")
    result = run("emit", "acme.e", "acme.r", "--database", tmp_path / "plain" / "e.duckdb")
    assert result.exit_code == 1
    assert f"{tmp_path / 'plain'} is not a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_query_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    """`localevents query --all | head -1`: when the reader leaves, the command stops
    without an error message (exit 141, as for SIGPIPE)."""
    database = tmp_path / "events.duckdb"
    events = [Event(event="acme.pipe", resource={ID: f"acme.{i}"}) for i in range(20_000)]
    with temporary_settings(database=str(database)), get_sync_client() as client:
        client.create_events(events)
    command = [sys.executable, "-m", "localevents", "query", "--all", "--json"]
    with subprocess.Popen(
        [*command, "--database", str(database)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # the reader leaves, as `head -1` does
        errors = process.stderr.read().decode()
        code = process.wait(timeout=PATIENCE)
    assert json.loads(first)["event"] == "acme.pipe"
    assert code == 141, errors
    assert errors == ""


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, port: str) -> None:
    """A port outside 0-65535 is a usage error naming the option, not a traceback."""
    result = run("serve", "--port", port, "--database", tmp_path / "events.duckdb")
    assert result.exit_code == 2
    assert "--port" in result.stderr
    assert "0<=x<=65535" in result.stderr


def test_export_since_alone_leaves_the_range_open(tmp_path: Path) -> None:
    """`export --since` without --until exports events stamped in the future too, as its
    help says (an export is a copy, not a view of the past)."""
    database, out = tmp_path / "events.duckdb", tmp_path / "out.ndjson"
    now = datetime.now(UTC)
    events = [
        Event(event="acme.past", resource={ID: "acme.r"}, occurred=now - timedelta(days=1)),
        Event(event="acme.future", resource={ID: "acme.r"}, occurred=now + timedelta(days=3)),
    ]
    with temporary_settings(database=str(database)), get_sync_client() as client:
        client.create_events(events)
    since = (now - timedelta(days=2)).isoformat()
    result = run("export", out, "--since", since, "--database", database)
    assert result.exit_code == 0, result.output
    assert [e.event for e in ndjson(out.read_text(), ReceivedEvent)] == ["acme.past", "acme.future"]
    assert "no end" in run("export", "--help").stdout


def test_a_refusal_in_ephemeral_mode_is_the_reason_alone_in_one_line(tmp_path: Path) -> None:
    """Without a server, a request the in-process app refuses ends in the app's reason
    alone: no HTTP status or in-process URL, and no screen of DuckDB objects "leaked" at
    exit (the failure's traceback kept them alive)."""
    database = tmp_path / "events.duckdb"
    with temporary_settings(database=str(database)), get_sync_client() as client:
        client.create_events([Event(event="acme.made", resource={ID: "acme.r"})])
    result = cli_process("query", "--page-token", "garbage", "--database", database)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line == "Error: the page token is malformed"
