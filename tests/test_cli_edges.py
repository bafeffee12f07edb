"""The command line at its edges: long count lists, Ctrl-C, a closed output, ``export -``,
and ``serve``, ``emit`` and ``import`` on a folder that does not exist."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest
from _cli import run
from _servers import clean_environ, free_port, localevents_command, spawn

from localevents import Event, EventCount, ReceivedEvent, temporary_settings
from localevents.client import get_sync_client

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow  # real processes on a few thousand events

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds a subprocess may take to answer (generous: CI machines are slow)."""
RESOURCES = 60
"""Resources in the events file: ``acme.r.N`` has N events, so the order is known."""


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An events file of 20,000 events: more than one write to a pipe can hold, and
    :data:`RESOURCES` resources beside those of the bulk."""
    path = tmp_path_factory.mktemp("edges") / "events.duckdb"
    ranked = [
        Event(event="acme.ranked", resource={ID: f"acme.r.{n}"})
        for n in range(1, RESOURCES + 1)
        for _ in range(n)
    ]
    bulk = [Event(event="acme.bulk", resource={ID: "acme.bulk"}) for _ in range(20_000)]
    with temporary_settings(database=str(path)), get_sync_client() as client:
        client.create_events(ranked + bulk[: 20_000 - len(ranked)])
    return path


def localevents(*args: str | Path) -> list[str]:
    """``localevents ARGS`` as a command line of its own process."""
    return [sys.executable, "-m", "localevents", *map(str, args)]


# 1. count event / resource: the top N, and how many more


def test_count_resource_shows_the_top_50_and_how_many_more(database: Path) -> None:
    """A long list stops after the 50 most frequent, its last line saying how many more
    there are; -n chooses how many, -n 0 shows them all (it used to print every row)."""
    result = run("count", "resource", "--database", database)
    assert result.exit_code == 0, result.output
    *rows, last = result.stdout.splitlines()
    assert len(rows) == 50
    assert rows[0].split()[:2] == ["acme.bulk", str(20_000 - RESOURCES * (RESOURCES + 1) // 2)]
    assert rows[1].split()[:2] == [f"acme.r.{RESOURCES}", str(RESOURCES)]
    assert last == f"... and {RESOURCES + 1 - 50} more (-n 0 shows all)"
    assert f"20000 events, {RESOURCES + 1} resources" in result.stderr

    three = run("count", "resource", "-n", "3", "--database", database)
    assert three.exit_code == 0, three.output
    *rows, last = three.stdout.splitlines()
    assert [row.split()[0] for row in rows] == ["acme.bulk", "acme.r.60", "acme.r.59"]
    assert last == f"... and {RESOURCES - 2} more (-n 0 shows all)"

    every = run("count", "resource", "-n", "0", "--database", database)
    assert every.exit_code == 0, every.output
    assert len(every.stdout.splitlines()) == RESOURCES + 1
    assert "more" not in every.stdout


def test_count_json_writes_every_row_unless_limited(database: Path) -> None:
    """--json is NDJSON of every row by default; with -n, of the top N, the count of the
    rest on stderr (never in the NDJSON)."""
    every = run("count", "resource", "--json", "--database", database)
    assert every.exit_code == 0, every.output
    assert len(every.stdout.splitlines()) == RESOURCES + 1
    two = run("count", "resource", "--json", "-n", "2", "--database", database)
    assert two.exit_code == 0, two.output
    rows = [msgspec.json.decode(line, type=EventCount) for line in two.stdout.splitlines()]
    assert [row.value for row in rows] == ["acme.bulk", f"acme.r.{RESOURCES}"]
    assert f"... and {RESOURCES - 1} more" in two.stderr


def test_count_event_takes_a_limit_and_time_refuses_one(database: Path) -> None:
    """-n works for event names too; for 'time' and 'day' (every bucket is shown) it is a
    usage error; --help says what it does and its default."""
    events = run("count", "event", "-n", "1", "--database", database)
    assert events.exit_code == 0, events.output
    assert events.stdout.splitlines()[-1] == "... and 1 more (-n 0 shows all)"
    for countable in ("time", "day"):
        refused = run("count", countable, "-n", "5", "--database", database)
        assert refused.exit_code == 2
        assert "-n/--limit is for 'event' and 'resource'" in refused.stderr
    helped = " ".join(run("count", "--help").stdout.split())
    assert "-n, --limit N" in helped
    assert "(default 50; with --json all; 0 shows all)" in helped


@pytest.mark.parametrize("countable", ["time", "day"])
def test_a_time_count_shows_every_bucket_of_its_window(database: Path, countable: str) -> None:
    """'time' and 'day' charts are never cut to the top 50 (which -n cannot change for them):
    a window of more than 50 buckets shows them all, with no "... more" line."""
    since = (datetime.now(UTC) - timedelta(days=70)).strftime("%Y-%m-%d")
    result = run("count", countable, "--since", since, "--unit", "day", "--database", database)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) in (70, 71)  # each day from --since's midnight to today's
    assert "more" not in result.stdout
    assert "20000 events" in result.stderr


# 2. Ctrl-C and a closed output end every command quietly, the same way


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["lines", "json"])
def test_ctrl_c_ends_a_query_quietly_with_130(database: Path, output: list[str]) -> None:
    """Ctrl-C (SIGINT) during `query --all` ends it with status 130, as shells report an
    interrupt, and no message (it used to print "Aborted!" and exit 1)."""
    command = localevents("query", "--all", *output, "--database", database)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_environ()
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline()  # printing, and soon blocked on the full pipe
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=PATIENCE)
    assert process.returncode == 130, errors
    assert errors.decode() == ""


@pytest.mark.parametrize(
    "command",
    [
        ["query", "--all"],
        ["count", "resource"],
        ["count", "resource", "--json"],
        ["emit", "acme.piped", "acme.r"],
    ],
    ids=["query-lines", "count-chart", "count-json", "emit"],
)
def test_a_closed_output_ends_every_command_quietly_with_141(
    database: Path, tmp_path: Path, command: list[str]
) -> None:
    """A reader that has gone (`| head`, here before anything was printed) ends every
    command with 141 and nothing on stderr, whichever way it prints: the event lines and
    the count chart ended with 1, a count's NDJSON and emit's id with 1 too, while
    `query --json` ended with 141."""
    target = tmp_path / "emitted.duckdb" if command[0] == "emit" else database
    with subprocess.Popen(
        localevents(*command, "--database", target),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    ) as process:
        assert process.stdout is not None
        process.stdout.close()  # the reader leaves before the command prints
        _, errors = process.communicate(timeout=PATIENCE)
    assert process.returncode == 141, errors
    assert errors.decode() == ""


# 3. export -


def test_export_to_dash_is_refused_and_writes_nothing(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export -` is a usage error saying that '-' is not standard output here (it used to
    write a file named '-'); ./- still names such a file."""
    monkeypatch.chdir(tmp_path)
    for format_ in ("ndjson", "parquet"):
        result = run("export", "-", "-f", format_, "--database", database)
        assert result.exit_code == 2
        assert "'-' (standard output) is not a destination" in result.stderr
        assert "localevents query --all --json" in result.stderr
        assert not (tmp_path / "-").exists()
    named = run("export", "./-", "-e", "acme.ranked", "--database", database)
    assert named.exit_code == 0, named.output
    lines = (tmp_path / "-").read_text().splitlines()
    exported = [msgspec.json.decode(line, type=ReceivedEvent) for line in lines]
    assert len(exported) == RESOURCES * (RESOURCES + 1) // 2
    assert {event.event for event in exported} == {"acme.ranked"}


# 4. serve on a folder that does not exist


def test_serve_refuses_a_missing_folder_but_makes_its_home(tmp_path: Path) -> None:
    """`serve --database` in a folder that does not exist exits 1 naming the folder and
    makes nothing (it used to make the folders and serve an empty store); the default file
    under the localevents home may still make that home. The port is free, so a server
    that went on would serve until the test gave up on it."""
    typo = tmp_path / "typo" / "deeper" / "events.duckdb"
    home = tmp_path / "new-home"
    refused = subprocess.run(
        localevents_command(free_port(), typo),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=clean_environ(),
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"Error: cannot open the events file {typo}: its folder {typo.parent} does not "
        "exist (create it first: only the localevents home, "
    )
    assert refused.stderr.count("\n") == 1
    assert not (tmp_path / "typo").exists()
    port = free_port()
    with spawn(localevents("serve", "--port", port), port, env={"LOCALEVENTS_HOME": str(home)}):
        assert (home / "events.duckdb").is_file()


@pytest.mark.parametrize("command", ["emit", "import"])
def test_writing_commands_refuse_a_missing_folder_as_serve_does(
    tmp_path: Path, command: str
) -> None:
    """Without a server, `emit` and `import` into a file whose folder does not exist exit 1
    naming it, and make nothing (they used to make the folders and start an empty file)."""
    source = tmp_path / "events.ndjson"
    source.write_text("")
    arguments = ["acme.made", "acme.r.1"] if command == "emit" else [source]
    typo = tmp_path / "typo" / "events.duckdb"
    result = run(command, *arguments, "--database", typo)
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: cannot open the events file {typo}: its folder {typo.parent} does not exist "
        "(create it first: only the localevents home, "
    )
    assert result.output.count("\n") == 1
    assert not (tmp_path / "typo").exists()
