"""The command line at its edges: long count lists, Ctrl-C, a closed output, ``export -``,
``serve``, ``emit`` and ``import`` on a folder that does not exist, ``--until`` alone, values
too large for a date or a number, payloads that are not JSON, and control characters in
what is printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import duckdb
import msgspec
import pytest
from _cli import run
from _servers import clean_environ, free_port, localevents_command, spawn

from localevents import Event, EventCount, ReceivedEvent, temporary_settings
from localevents.client import get_sync_client
from localevents.samples import generate_events

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow  # real processes on a few thousand events

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds a subprocess may take to answer (generous: CI machines are slow)."""
RESOURCES = 60
"""Resources in the events file: ``acme.r.N`` has N events, so the order is known."""

T = TypeVar("T")


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


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["lines", "json"])
def test_ctrl_c_ends_a_query_quietly_with_130(database: Path, output: list[str]) -> None:
    """Ctrl-C (SIGINT) during `query --all` ends it with status 130, as shells report an
    interrupt, and no message (it used to print "Aborted!" and exit 1)."""
    command = localevents("query", "--all", *output, "--database", database)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
        # Ctrl-C as at a terminal: SIGINT at its default, whatever this test process's
        # (a shell's background job ignores it on purpose, and the CLI leaves that be).
        preexec_fn=_sigint_as_at_a_terminal,  # noqa: PLW1509 (no threads: a fresh process)
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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_import_says_what_it_stored_and_closes_the_file(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """SIGTERM or Ctrl-C during `import` into an events file (after its first commit)
    ends it by that signal, having closed the file (its write-ahead log folded in) and said
    how many new events it stored, which is what the file holds: it ended at once, silent,
    the log left beside the file."""
    source = tmp_path / "events.ndjson"
    encoder = msgspec.json.Encoder()
    with source.open("wb") as out:
        for event in generate_events(100_000, seed=3):
            out.write(encoder.encode(event) + b"\n")
    # a file already set up: opening it writes nothing, so its log appears with the import's
    # first commit
    target = events_file(tmp_path / "events.duckdb", Event(event="acme.before", resource={ID: "r"}))
    log = tmp_path / "events.duckdb.wal"
    assert not log.exists()
    with subprocess.Popen(
        localevents("import", source, "--database", target),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
        preexec_fn=_sigint_as_at_a_terminal,  # noqa: PLW1509 (no threads: a fresh process)
    ) as process:
        deadline = time.monotonic() + PATIENCE
        while not log.exists():  # the first commit is in
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(stop)
        _, errors = process.communicate(timeout=PATIENCE)
    said = errors.decode()
    assert process.returncode == -stop, said
    found = re.search(r"interrupted: stored (\d+) new events from \S+ in \S+; the same", said)
    assert found is not None, said
    assert not log.exists()
    with duckdb.connect(str(target), read_only=True) as con:
        held = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    assert held - 1 == int(found[1]) < 100_000


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


# 4b. names that are not UTF-8


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    """An events file, an export folder or a Parquet file to import whose name is not UTF-8
    (Latin-1 bytes) is refused naming it, in one line: DuckDB cannot open such names, and
    they ended in its ``std::bad_cast`` with a traceback."""
    folder = os.fsencode(tmp_path)
    good = events_file(tmp_path / "good.duckdb", Event(event="acme.made", resource={ID: "r"}))
    exported = run("export", tmp_path / "days", "--format", "parquet", "--database", good)
    assert exported.exit_code == 0, exported.output
    os.rename(folder + b"/days", folder + b"/d\xe9ys")
    latin1 = folder + b"/caf\xe9.duckdb"
    commands = {  # each command line, and the name it must show
        "serve": (localevents("serve", "--port", free_port(), "--database"), latin1),
        "emit": (localevents("emit", "acme.made", "acme.r.1", "--database"), latin1),
        "export": (localevents("export", "-f", "parquet", "--database", good), folder + b"/\xe9"),
        "import": (localevents("import", "--database", good), folder + b"/d\xe9ys"),
    }
    for command, (argv, name) in commands.items():
        refused = subprocess.run(
            [*argv, name], capture_output=True, timeout=PATIENCE, env=clean_environ(), check=False
        )
        said = refused.stderr.decode()
        assert refused.returncode == 1, (command, said)
        assert said.count("\n") == 1, (command, said)
        assert name.decode(errors="backslashreplace") in said, (command, said)
        assert "its name is not UTF-8, and DuckDB opens only UTF-8 names" in said, (command, said)
    # a relative name inside a folder whose name is not UTF-8
    os.mkdir(folder + b"/d\xe9j\xe0")
    refused = subprocess.run(
        localevents("emit", "acme.made", "acme.r.1", "--database", "events.duckdb"),
        capture_output=True,
        timeout=PATIENCE,
        env=clean_environ(),
        cwd=folder + b"/d\xe9j\xe0",
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    assert "its name is not UTF-8" in refused.stderr.decode(), refused.stderr
    assert not os.path.exists(latin1)


# 5. --until alone: the default window ends there

UNTIL = datetime(2020, 1, 1, tzinfo=UTC)
"""The --until of these tests: long before the default windows that end now."""


def events_file(path: Path, *events: Event) -> Path:
    """An events file at ``path`` holding ``events``."""
    with temporary_settings(database=str(path)), get_sync_client() as client:
        client.create_events(list(events))
    return path


def test_until_alone_ends_the_default_window_there(tmp_path: Path) -> None:
    """With --until and no --since, query and count look back their default span from
    --until (they started it before now, and refused a --since never given); an export
    still starts at the beginning of time, and a span reaching before year 1 starts there."""
    database = events_file(
        tmp_path / "events.duckdb",
        Event(event="acme.eve", resource={ID: "acme.r"}, occurred=UNTIL - timedelta(hours=4)),
        Event(event="acme.old", resource={ID: "acme.r"}, occurred=UNTIL - timedelta(days=400)),
        Event(
            event="acme.first", resource={ID: "acme.r"}, occurred=datetime(1, 1, 1, 12, tzinfo=UTC)
        ),
    )
    until = ["--until", "2020-01-01", "--json", "--database", database]
    found = run("query", *until)
    assert found.exit_code == 0, found.output
    assert [e.event for e in ndjson(found.stdout, ReceivedEvent)] == ["acme.eve"]
    for countable in ("event", "time"):
        counted = run("count", countable, *until)
        assert counted.exit_code == 0, counted.output
        rows = ndjson(counted.stdout, EventCount)
        assert sum(row.count for row in rows) == 1
        assert len(rows) == (24 if countable == "time" else 1)
    exported = run("export", tmp_path / "out.ndjson", *until[:2], "--database", database)
    assert exported.exit_code == 0, exported.output
    every = ndjson((tmp_path / "out.ndjson").read_text(), ReceivedEvent)
    assert [e.event for e in every] == ["acme.first", "acme.old", "acme.eve"]
    first = run("query", "--until", "0001-01-02", "--json", "--database", database)
    assert first.exit_code == 0, first.output
    assert [e.event for e in ndjson(first.stdout, ReceivedEvent)] == ["acme.first"]


@pytest.mark.parametrize("command", [["query"], ["count", "event"], ["export", "out.ndjson"]])
def test_a_since_after_until_names_both(tmp_path: Path, command: list[str]) -> None:
    """A --since after the --until given is still a usage error, naming both options and
    both instants."""
    args = [str(tmp_path / arg) if arg.endswith(".ndjson") else arg for arg in command]
    window = ["--since", "2021-01-01", "--until", "2020-01-01"]
    result = run(*args, *window, "--database", tmp_path / "events.duckdb")
    assert result.exit_code == 2
    assert (
        "--since must not be after --until (2021-01-01 00:00:00+00:00 is after "
        "2020-01-01 00:00:00+00:00)"
    ) in result.stderr


def ndjson(text: str, type_: type[T]) -> list[T]:
    """The NDJSON lines of ``text`` as ``type_``."""
    return [msgspec.json.decode(line, type=type_) for line in text.split("\n") if line]


# 6. values too large: one line naming the option, its value and what it accepts

AGO = "a duration ago reaches back at most "


@pytest.mark.parametrize(
    ("args", "option", "said"),
    [
        (["query", "--since", "1000000d"], "--since", f"'1000000d' ago is before year 1: {AGO}"),
        (["count", "event", "--until", "1" + "0" * 20 + "s"], "--until", AGO),
        (["export", "{tmp}/out.ndjson", "--since", "9" * 400 + "w"], "--since", AGO),
        (["emit", "acme.x", "acme.r", "--occurred", "3000000d"], "--occurred", AGO),
        (
            ["query", "--since", "0001-01-01T00:00:00+05:00"],
            "--since",
            "'0001-01-01T00:00:00+05:00' is outside years 1-9999 in UTC",
        ),
        (
            ["count", "time", "--interval", "1e10"],
            "--interval",
            "1e+10 hours is longer than years 1-9999: with --unit hour it is at most 87649416",
        ),
        (
            ["count", "time", "--unit", "week", "--interval", "1e300"],
            "--interval",
            "with --unit week it is at most 521722",
        ),
        (["count", "time", "--interval", "inf"], "--interval", "inf hours is longer than"),
        (["count", "time", "--interval", "nan"], "--interval", "'nan' is not a number"),
        (["sample", "{tmp}/sample.duckdb", "--days", "nan"], "--days", "'nan' is not a number"),
        (["sample", "{tmp}/sample.duckdb", "--start", "1000000d"], "--start", AGO),
        (
            ["sample", "{tmp}/sample.duckdb", "--start", "9999-12-30"],
            "--start",
            "9999-12-30T00:00:00+00:00 with --days 28 ends after year 9999: start by 9999-12-03",
        ),
        (  # ran until killed, holding ever more memory
            ["sample", "{tmp}/sample.duckdb", "-n", "1" + "0" * 20],
            "--count",
            "over 28 days are more than the generator makes: at most 336,000,000",
        ),
        (
            ["sample", "{tmp}/sample.duckdb", "-n", "500001", "--days", "0.01"],
            "--count",
            "at most 500,000 (500,000 per hour, which it holds in memory)",
        ),
    ],
)
def test_a_value_out_of_range_exits_2_naming_the_option(
    tmp_path: Path, args: list[str], option: str, said: str
) -> None:
    """Durations, dates and numbers past what a date or a count can hold are a usage error
    naming the option, the value and the range accepted (they were tracebacks, exit 1),
    and nothing is made."""
    database = tmp_path / "events.duckdb"
    filled = [arg.format(tmp=tmp_path) for arg in args]
    extra = [] if args[0] == "sample" else ["--database", database]
    result = run(*filled, *extra)
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: Invalid value for '{option}': ")
    assert said in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "LOCALEVENTS_CLIENT_TIMEOUT",
            "1" + "0" * 20,
            "it is longer than the longest accepted, 999999999d",
        ),
        (
            "LOCALEVENTS_EVENTS_RETENTION_PERIOD",
            "9" * 400 + " days",
            "it is longer than the longest accepted, 999999999d",
        ),
        (
            "LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES",
            "9" * 400,
            "it is more than the largest accepted, 9223372036854775807 bytes (8 EiB)",
        ),
    ],
    ids=["duration", "huge-duration", "size"],
)
def test_a_setting_out_of_range_is_one_line(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    """A duration or size setting past what it can hold is the one line of any bad setting
    (it was an OverflowError's traceback)."""
    result = subprocess.run(
        localevents("query", "--database", tmp_path / "events.duckdb"),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env=clean_environ({variable: value}),
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: invalid setting {variable}: cannot read {value!r} as a " + (
        f"{'size' if 'BYTES' in variable else 'duration'}: {said}\n"
    )


# 7. emit --payload that is not JSON


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ('{"a": NaN}', "NaN and Infinity are not JSON (found NaN)"),
        ('{"a": [1, Infinity]}', "NaN and Infinity are not JSON (found Infinity)"),
        ('{"a": {"b": -Infinity}}', "NaN and Infinity are not JSON (found -Infinity)"),
        ('{"a": 1e999}', "the number 1e999 is out of range"),
    ],
)
def test_emit_refuses_a_payload_number_json_cannot_hold(
    tmp_path: Path, payload: str, said: str
) -> None:
    """NaN, Infinity and a number past a double's range are refused, naming --payload (they
    were stored as null), and nothing is stored."""
    database = tmp_path / "events.duckdb"
    result = run("emit", "acme.x", "acme.r", "--payload", payload, "--database", database)
    assert result.exit_code == 2, result.output
    assert f"Error: Invalid value for '--payload': {said}" in result.stderr
    assert not database.exists()


# 8. control characters in what the commands print

NAME = "acme.\x1b[31m\nx\t\x07\x85\x7f\u202ex"
RESOURCE = "acme.r\x1b]0;title\x07\r\u2028"
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]")
"""A control character other than the newline that ends each line, a line separator, or a
right-to-left override."""


def test_control_characters_print_escaped_but_json_keeps_them(tmp_path: Path) -> None:
    """An event name, resource id, related resource or payload holding newlines, escapes
    and other C0/C1 characters prints them escaped (\\n, \\x1b) in the lines of query and
    the charts of count (they reached the terminal raw); --json keeps them as stored."""
    related = {ID: "acme.tag\x9b", "prefect.resource.role": "ro\nle"}
    database = events_file(
        tmp_path / "events.duckdb",
        Event(event=NAME, resource={ID: RESOURCE}, related=[related], payload={"k": "\x85"}),
    )
    (line,) = run("query", "--database", database).stdout.splitlines()
    assert not RAW.search(line)
    assert (
        "  acme.\\x1b[31m\\nx\\t\\x07\\x85\\x7f\\u202ex  acme.r\\x1b]0;title\\x07\\r\\u2028  "
        in line
    )
    assert line.endswith('  ro\\nle=acme.tag\\x9b  {"k":"\\x85"}')
    for countable, label in (("event", NAME), ("resource", RESOURCE)):
        (row,) = run("count", countable, "--database", database).stdout.splitlines()
        assert not RAW.search(row)
        assert row.startswith(label.encode("unicode_escape").decode())
        (counted,) = ndjson(
            run("count", countable, "--json", "--database", database).stdout, EventCount
        )
        assert counted.value == label
    (stored,) = ndjson(run("query", "--json", "--database", database).stdout, ReceivedEvent)
    assert (stored.event, stored.resource.id, stored.payload) == (NAME, RESOURCE, {"k": "\x85"})
    assert [(r.role, r.id) for r in stored.related] == [("ro\nle", "acme.tag\x9b")]


# 9. too many buckets: a usage error before any request


@pytest.mark.parametrize(
    "target",
    [["--database", "{tmp}/events.duckdb"], ["--api-url", "http://127.0.0.1:4699/api"]],
    ids=["file", "server"],
)
def test_too_many_buckets_is_a_usage_error_before_any_request(
    tmp_path: Path, target: list[str]
) -> None:
    """A time count of more buckets than a count may have exits 2 naming the limit and the
    --interval that fits, for an events file and a server alike, before any request (no
    server listens here); it was the store's refusal, exit 1. The interval it suggests
    counts."""
    database = events_file(
        tmp_path / "events.duckdb",
        Event(event="acme.x", resource={ID: "acme.r"}, occurred=datetime.now(UTC)),
    )
    window = ["count", "time", "--since", "28d", "--unit", "minute"]
    result = run(*window, *(arg.format(tmp=tmp_path) for arg in target))
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    found = re.fullmatch(
        r"Error: --interval 1 \(in minutes\) would make \d+ buckets, more than the limit of "
        r"1000 buckets a count may have: give --interval ([\d.]+) or more, a larger --unit, "
        r"or a shorter window",
        error,
    )
    assert found is not None, error
    day = run("count", "day", "--since", "1001d", "--database", database)
    assert day.exit_code == 2
    assert "'day' would count 1002 days, more than the limit of 1000 buckets" in day.stderr
    fits = run(*window, "--interval", found[1], "--json", "--database", database)
    assert fits.exit_code == 0, fits.output
    assert sum(row.count for row in ndjson(fits.stdout, EventCount)) == 1


def test_a_count_from_a_since_in_the_future_names_the_option(tmp_path: Path) -> None:
    """A time count whose --since is ahead, with no --until, ends before it starts: a usage
    error naming --since and what ends the window, not the API's words for it."""
    database = events_file(
        tmp_path / "events.duckdb",
        Event(event="acme.x", resource={ID: "acme.r"}, occurred=datetime.now(UTC)),
    )
    for countable in ("time", "day"):
        result = run("count", countable, "--since", "2999-01-01", "--database", database)
        assert result.exit_code == 2, result.output
        assert "'--since'" in result.stderr
        assert "2999-01-01 00:00:00+00:00 is in the future: a count ends now unless --until" in (
            result.stderr
        )
        assert "occurred" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["emit", "acme.\udc9b", "acme.r"],
        ["emit", "acme.x", "acme.r", "-l", "colour=r\udcffd"],
        ["query", "-e", "acme.\udc9b"],
    ],
    ids=["emit-name", "emit-label", "query-name"],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    """A byte that is not UTF-8 in a name or label (Python keeps it as a lone surrogate)
    exits 2 naming the argument; it was a UnicodeEncodeError traceback. Nothing is stored."""
    database = tmp_path / "events.duckdb"

    result = run(*command, "--database", database)

    assert result.exit_code == 2, result.output
    assert "is not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr
    assert not database.exists() or "acme" not in run("query", "--database", database).stdout
