"""localevents.testing, used the way a user's own test suite uses it: a test module that
loads the plugin and runs in a pytest of its own, plus the helpers called directly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import anyio
import pytest

from localevents import EventFilter, EventNameFilter, ReceivedEvent, ephemeral, testing
from localevents.client import AssertingEventsClient, EventsWorker, emit_event
from localevents.testing import (
    EmittedEvents,
    flush_and_read,
    record_emitted_events,
    wait_for_events,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["pytester"]

ID = "prefect.resource.id"
PATIENCE = 60.0

USER_TESTS = """
import threading

import pytest

from localevents import EventFilter, EventNameFilter
from localevents.client import AssertingEventsClient, emit_event
from localevents.testing import flush_and_read, wait_for_events

pytest_plugins = ["localevents.testing"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def make_widget(number, payload=None):
    emit_event(
        "acme.widget.made",
        resource={"prefect.resource.id": f"acme.widget.{number}"},
        payload=payload,
    )


def test_emitted_events_are_recorded(emitted_events):
    make_widget(1, payload={"colour": "red"})
    make_widget(2)
    [first] = emitted_events.assert_emitted("acme.widget.made", resource_id="acme.widget.1")
    assert first.payload == {"colour": "red"}
    emitted_events.assert_emitted("acme.widget.made", count=2)
    emitted_events.assert_not_emitted("acme.widget.broken")
    assert len(emitted_events) == 2


def test_each_test_starts_with_nothing_recorded(emitted_events):
    assert emitted_events.events == []


def test_clear_forgets_earlier_events(emitted_events):
    make_widget(1)
    emitted_events.clear()
    make_widget(2)
    assert [e.resource.id for e in emitted_events.events] == ["acme.widget.2"]


def test_a_missing_event_fails_with_what_was_emitted(emitted_events):
    make_widget(1)
    emitted_events.assert_emitted("acme.widget.sold")


def test_the_asserting_worker_records_into_an_asserting_client(asserting_events_worker):
    make_widget(3)
    asserting_events_worker.flush()
    assert [e.resource.id for e in AssertingEventsClient.last.events] == ["acme.widget.3"]


@pytest.mark.anyio
async def test_emitted_events_are_stored_and_queryable(events_store):
    make_widget(1)
    make_widget(2)
    made = await wait_for_events(
        EventFilter(event=EventNameFilter(name=["acme.widget.made"])), count=2
    )
    assert [e.resource.id for e in made] == ["acme.widget.1", "acme.widget.2"]


def test_sync_code_reads_what_it_emitted(events_store):
    make_widget(7)
    assert [e.resource.id for e in flush_and_read()] == ["acme.widget.7"]


def test_each_store_starts_empty_and_no_worker_outlives_a_test(events_store):
    assert flush_and_read() == []
    workers = [t for t in threading.enumerate() if t.name == "localevents-events-worker"]
    assert workers == []
"""


@pytest.fixture
def user_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's pytest runs with no LOCALEVENTS_* setting but a home in tmp_path."""
    for name in list(os.environ):
        if name.startswith("LOCALEVENTS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOCALEVENTS_HOME", str(tmp_path / "user-home"))


@pytest.mark.slow
@pytest.mark.usefixtures("user_environment")
def test_a_users_test_module_can_use_the_plugin(pytester: pytest.Pytester) -> None:
    """A test module with `pytest_plugins = ["localevents.testing"]` gets the fixtures: every
    test but the deliberately failing one passes (async ones on both backends), and that one
    fails with a message listing what was emitted."""
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected at least 1 event(s) 'acme.widget.sold', found 0; "
            "emitted: acme.widget.made (acme.widget.1)*"
        ]
    )


@pytest.fixture
def no_worker_left_behind() -> Iterator[None]:
    yield
    assert EventsWorker.drain_all(PATIENCE)


@pytest.mark.usefixtures("no_worker_left_behind")
def test_record_emitted_events_outside_pytest_fixtures() -> None:
    """record_emitted_events() records the block's emits and afterwards leaves no override
    and no worker behind."""
    with record_emitted_events() as emitted:
        emit_event("acme.recorded", resource={ID: "acme.widget.1"})
        assert isinstance(emitted, EmittedEvents)
        assert [e.event for e in emitted.events] == ["acme.recorded"]
        assert emitted.find(resource_id="acme.widget.2") == []
    assert EventsWorker.client_override() is None
    assert AssertingEventsClient.all == []
    assert not any(t.name == "localevents-events-worker" for t in threading.enumerate())


@pytest.mark.usefixtures("no_worker_left_behind")
async def test_wait_for_events_names_what_it_found_when_time_runs_out(tmp_path: Path) -> None:
    """When fewer events than asked for are stored, wait_for_events raises TimeoutError saying
    how many it found and which."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        emit_event("acme.only.one", resource={ID: "acme.widget.1"})
        only = EventFilter(event=EventNameFilter(prefix=["acme.only."]))
        await wait_for_events(only)  # delivered: the short wait below is for a second one
        with pytest.raises(TimeoutError, match=r"at least 2 .*found 1: acme\.only\.one"):
            await wait_for_events(only, count=2, timeout=0.2)


@pytest.mark.usefixtures("no_worker_left_behind")
async def test_a_timeout_that_cuts_the_first_query_still_names_what_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine the first query may outlast the timeout: the error still says
    what is stored (it said "found 0: none" of an event that was there)."""
    read = testing.read_events
    calls: list[int] = []

    async def slow_first(event_filter: EventFilter | None = None) -> list[ReceivedEvent]:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep(60)  # cut by the timeout
        return await read(event_filter)

    monkeypatch.setattr(testing, "read_events", slow_first)
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        emit_event("acme.only.one", resource={ID: "acme.widget.1"})
        only = EventFilter(event=EventNameFilter(prefix=["acme.only."]))
        await wait_for_events(only)  # delivered: the short wait below is for a second one
        with pytest.raises(TimeoutError, match=r"at least 2 .*found 1: acme\.only\.one"):
            await wait_for_events(only, count=2, timeout=0.2)


@pytest.mark.usefixtures("no_worker_left_behind")
def test_flush_and_read_sees_every_event_just_emitted(tmp_path: Path) -> None:
    """flush_and_read() returns every event emitted before it, oldest first."""
    with ephemeral(database=str(tmp_path / "events.duckdb")):
        emitted = [emit_event(f"acme.read.{n}", resource={ID: "acme.widget"}) for n in range(50)]
        assert [e.id for e in flush_and_read()] == [e.id for e in emitted if e is not None]


def test_the_plain_helpers_work_where_pytest_is_not_installed() -> None:
    """pytest is no dependency: a unittest suite can import localevents.testing and record
    what its code emits (the import itself needed pytest)."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # as if not installed: importing it raises ImportError
        from localevents.client import emit_event
        from localevents.testing import record_emitted_events
        with record_emitted_events() as recorded:
            emit_event("acme.made", resource={"prefect.resource.id": "acme.1"})
            (made,) = recorded.assert_emitted("acme.made", resource_id="acme.1")
        print(made.event)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "acme.made\n", "")
