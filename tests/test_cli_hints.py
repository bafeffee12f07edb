"""The hint of ``query`` and ``count`` when nothing matched in their default window: one line
on stderr saying how many matching events are older, when they occurred, and what to add."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest
from _cli import run

from localevents import Event, EventCount, ReceivedEvent, temporary_settings
from localevents.client import get_sync_client
from localevents.samples import write_sample_database

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result

ID = "prefect.resource.id"
OLD = datetime(2024, 4, 1, 9, tzinfo=UTC)
"""When the old events occurred (three, a day apart): long before the default 180 days."""
RECENT = datetime.now(UTC) - timedelta(days=2)
"""When the recent events occurred: inside every default window of query and count event."""
HINT = "(the default window)"
"""What every hint line says, and no other line does."""
OLD_HINT = (
    "nothing matched in the last 180 days (the default window), but 3 matching events "
    "occurred from 2024-04-01 to 2024-04-03: add --since 2024-04-01 to see them"
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An events file of three ``acme.old`` events from April 2024 and two recent ``acme.new``."""
    path = tmp_path_factory.mktemp("hints") / "events.duckdb"
    old = [
        Event(event="acme.old", resource={ID: f"acme.old.{n}"}, occurred=OLD + timedelta(days=n))
        for n in range(3)
    ]
    new = [Event(event="acme.new", resource={ID: "acme.new"}, occurred=RECENT) for _ in range(2)]
    with temporary_settings(database=str(path)), get_sync_client() as client:
        client.create_events(old + new)
    return path


def cli(database: Path, *args: str) -> Result:
    """``localevents ARGS --database DATABASE``, which must succeed."""
    result = run(*args, "--database", database)
    assert result.exit_code == 0, result.output
    return result


def hints(result: Result) -> list[str]:
    """The hint lines the command wrote on stderr."""
    return [line for line in result.stderr.splitlines() if HINT in line]


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["lines", "json"])
def test_query_hints_where_the_older_matching_events_are(database: Path, output: list[str]) -> None:
    """A query that matches only older events prints nothing on stdout and one line on stderr
    naming how many there are, their dates and the --since that shows them; following it
    finds them."""
    result = cli(database, "query", "-e", "acme.old", *output)
    assert result.stdout == ""
    assert hints(result) == [OLD_HINT]
    shown = cli(database, "query", "-e", "acme.old", "--since", "2024-04-01", "--json")
    assert len(shown.stdout.splitlines()) == 3
    assert hints(shown) == []


@pytest.mark.parametrize("countable", ["event", "resource"])
@pytest.mark.parametrize("output", [[], ["--json"]], ids=["chart", "json"])
def test_count_hints_where_the_older_matching_events_are(
    database: Path, countable: str, output: list[str]
) -> None:
    """count event/resource look back 180 days as query does, and hint the same way; with
    --json stdout stays empty NDJSON."""
    result = cli(database, "count", countable, "-e", "acme.old", *output)
    assert hints(result) == [OLD_HINT]
    if output:
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "window"),
    [
        (["time"], "the last 24 hours"),
        (["time", "--unit", "day", "--interval", "7"], "the last 24 buckets of 7 days"),
        (["day"], "the last 24 days"),
    ],
    ids=["hours", "weeks", "days"],
)
def test_time_counts_hint_a_range_that_counts_them(
    database: Path, args: list[str], window: str
) -> None:
    """A time count names its own default window (24 buckets), and suggests both ends, since
    buckets from April 2024 up to now would be too many; the suggestion counts all three."""
    result = cli(database, "count", *args, "-e", "acme.old")
    assert hints(result) == [
        f"nothing matched in {window} (the default window), but 3 matching events occurred "
        "from 2024-04-01 to 2024-04-03: add --since 2024-04-01 --until 2024-04-04 to see them"
    ]
    window_args = ["--since", "2024-04-01", "--until", "2024-04-04"]
    counted = cli(database, "count", *args, "-e", "acme.old", *window_args, "--json")
    rows = [msgspec.json.decode(line, type=EventCount) for line in counted.stdout.splitlines()]
    assert sum(row.count for row in rows) == 3


def test_a_time_count_hint_widens_a_unit_whose_buckets_would_be_too_many(
    database: Path,
) -> None:
    """Minute buckets over three days are more than a count may have (1000): the hint adds
    the finest unit that fits, and the command it suggests succeeds and counts all three
    (it suggested a range the server refused)."""
    result = cli(database, "count", "time", "--unit", "minute", "-e", "acme.old")
    assert hints(result) == [
        "nothing matched in the last 24 minutes (the default window), but 3 matching events "
        "occurred from 2024-04-01 to 2024-04-03: add --since 2024-04-01 --until 2024-04-04 "
        "--unit hour to see them"
    ]
    suggested = ["--since", "2024-04-01", "--until", "2024-04-04", "--unit", "hour", "--json"]
    counted = cli(database, "count", "time", "--unit", "minute", "-e", "acme.old", *suggested)
    rows = [msgspec.json.decode(line, type=EventCount) for line in counted.stdout.splitlines()]
    assert sum(row.count for row in rows) == 3


@pytest.mark.parametrize(
    "command", [["query"], ["count", "event"], ["count", "time"]], ids=["query", "event", "time"]
)
@pytest.mark.parametrize(
    "window", [["--since", "30d"], ["--until", "now"], ["--since", "30d", "--until", "1d"]]
)
def test_no_hint_when_the_window_was_given(
    database: Path, command: list[str], window: list[str]
) -> None:
    """The user who chose the window (--since, --until or both) gets no hint, though
    nothing matched, while the same command with the default window hints."""
    assert hints(cli(database, *command, "-e", "acme.old"))
    chosen = cli(database, *command, "-e", "acme.old", *window)
    assert hints(chosen) == []
    assert "0 " in chosen.stderr  # its summary says it found nothing


@pytest.mark.parametrize(
    "command",
    [["query"], ["query", "--json"], ["count", "event"], ["count", "resource", "--json"]],
)
def test_no_hint_when_something_matched(database: Path, command: list[str]) -> None:
    """Results in the default window, older events beside them or not, give no hint, and
    --json output stays NDJSON, while the older events alone hint."""
    assert hints(cli(database, *command, "-e", "acme.old"))
    result = cli(database, *command)
    assert hints(result) == []
    if "--json" in command:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(rows) == (2 if command[0] == "query" else 1)
    else:
        assert "acme.new" in result.stdout


def test_the_sample_database_hints_its_april_2024_window(tmp_path: Path) -> None:
    """A sample database (events fixed in April 2024) queried as it is written hints the
    --since that shows it, instead of looking empty."""
    database = tmp_path / "sample.duckdb"
    assert run("sample", database, "-n", "200").exit_code == 0
    result = cli(database, "query", "--json")
    assert result.stdout == ""
    (hint,) = hints(result)
    assert hint.startswith("nothing matched in the last 180 days (the default window), but ")
    assert hint.endswith(": add --since 2024-04-01 to see them")
    assert "200 matching events occurred from 2024-04-01 to 2024-04-" in hint
    shown = cli(database, "query", "--since", "2024-04-01", "-n", "1", "--json")
    (event,) = [msgspec.json.decode(line, type=ReceivedEvent) for line in shown.stdout.splitlines()]
    assert event.occurred >= datetime(2024, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "command",
    [["query"], ["query", "--json"], ["count", "event", "--json"], ["count", "time"]],
)
def test_an_empty_store_says_nothing_matched_before_either(
    tmp_path: Path, command: list[str]
) -> None:
    """An events file with no events (or none matching) says so, so that nobody tries
    --since in vain; stdout stays empty of anything but the (empty) results."""
    database = tmp_path / "empty.duckdb"
    write_sample_database(database, 0)
    result = cli(database, *command)
    (hint,) = hints(result)
    assert hint.endswith("(the default window), nor at any time before")
    if "--json" in command:
        assert result.stdout == ""
    nothing = cli(database, *command, "-e", "acme.nothing")
    assert hints(nothing) == [hint]


def test_a_hint_of_year_1_is_read_back_by_the_options(tmp_path: Path) -> None:
    """Events of year 1 are hinted as ``--since 0001-01-01`` (it said ``1-01-01``, which
    --since refuses), so the options hinted, given back, find them; a time count's chart
    labels their buckets so too, and so does the hint of a sample written there."""
    database = tmp_path / "ancient.duckdb"
    first = datetime(1, 1, 1, 12, tzinfo=UTC)
    with temporary_settings(database=str(database)), get_sync_client() as client:
        client.create_events([Event(event="acme.first", resource={ID: "acme.r"}, occurred=first)])
    for command in (["query"], ["count", "time"]):
        (hint,) = hints(cli(database, *command))
        options = hint.partition(": add ")[2].removesuffix(" to see them").split()
        assert options[:2] == ["--since", "0001-01-01"]
        found = cli(database, *command, *options, "--json")
        rows = [json.loads(line) for line in found.stdout.splitlines()]
        assert sum(row.get("count", 1) for row in rows) == 1
    chart = cli(database, "count", "time", "--since", "0001-01-01", "--until", "0001-01-02")
    assert chart.stdout.splitlines()[12].startswith("0001-01-01 12:00 1 ")
    sample = run("sample", tmp_path / "sample.duckdb", "-n", "10", "--start", "0001-01-01")
    assert sample.exit_code == 0, sample.output
    assert "add --since 0001-01-01 to see them" in " ".join(sample.stderr.split())
