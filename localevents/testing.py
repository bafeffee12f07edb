"""Helpers for testing code that emits events: pytest fixtures and plain functions.

Load the fixtures with ``pytest_plugins = ["localevents.testing"]`` in a test module or your
top-level ``conftest.py``. Then, for code under test such as::

    from localevents import emit_event

    def make_widget(number: int) -> None:
        emit_event("acme.widget.made", resource={"prefect.resource.id": f"acme.widget.{number}"})

assert on what it emitted, with nothing stored anywhere::

    def test_making_a_widget_says_so(emitted_events):
        make_widget(1)
        [made] = emitted_events.assert_emitted("acme.widget.made", resource_id="acme.widget.1")
        assert made.payload == {}

or let it write to a throwaway events file in ``tmp_path`` and query that::

    from localevents import EventFilter, EventNameFilter
    from localevents.testing import wait_for_events

    async def test_widgets_are_stored(events_store):
        make_widget(1)
        make_widget(2)
        made = await wait_for_events(
            EventFilter(event=EventNameFilter(name=["acme.widget.made"])), count=2
        )
        assert [e.resource.id for e in made] == ["acme.widget.1", "acme.widget.2"]

(The string PYTEST_DONT_REWRITE in this docstring keeps pytest from rewriting this module's
asserts (it has none), so a test module may import from it and load it as a plugin at once.)

Fixtures: ``emitted_events`` (an :class:`EmittedEvents`), ``asserting_events_worker`` (the
background worker, whose client records instead of delivering) and ``events_store`` (an open
:func:`~localevents.ephemeral` block on a file in ``tmp_path``). Each leaves no worker
running and no override behind. Outside pytest, :func:`record_emitted_events` does what
``emitted_events`` does, and :func:`flush_and_read` reads the store from synchronous code.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.to_thread
import msgspec

from localevents.client._api import get_client
from localevents.client._asserting import AssertingEventsClient
from localevents.client._worker import EventsWorker
from localevents.ephemeral import EphemeralStore, ephemeral
from localevents.events._filters import EventFilter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from localevents.events._schemas import Event, ReceivedEvent

__all__ = (
    "POLL_INTERVAL",
    "EmittedEvents",
    "asserting_events_worker",
    "emitted_events",
    "events_store",
    "flush_and_read",
    "flush_events",
    "read_events",
    "record_emitted_events",
    "wait_for_events",
)

POLL_INTERVAL = 0.05
"""Seconds between two queries while :func:`wait_for_events` waits."""
FLUSH_TIMEOUT = 60.0
"""Seconds the fixtures and helpers wait for the background worker to deliver."""


def flush_events(timeout: float | None = FLUSH_TIMEOUT) -> None:
    """Block until every background worker has delivered what it holds (see
    :meth:`~localevents.EventsWorker.flush`)."""
    EventsWorker.flush_all(timeout)


class EmittedEvents:
    """What ``emit_event`` emitted while recording (see :func:`record_emitted_events`).

    Every accessor first waits until the background worker has handed over everything
    emitted so far, so nothing emitted before the call is missed.
    """

    def __init__(self, worker: EventsWorker) -> None:
        self.worker = worker

    @property
    def events(self) -> list[Event]:
        """Every recorded event, in the order it was emitted."""
        flush_events()
        return [event for client in AssertingEventsClient.all for event in client.events]

    def __len__(self) -> int:
        return len(self.events)

    def clear(self) -> None:
        """Forget what was recorded so far."""
        flush_events()
        for client in AssertingEventsClient.all:
            client.pop_events()

    def find(self, event: str | None = None, *, resource_id: str | None = None) -> list[Event]:
        """Recorded events with this name and primary resource id (either may be left out)."""
        return [
            found
            for found in self.events
            if (event is None or found.event == event)
            and (resource_id is None or found.resource.id == resource_id)
        ]

    def assert_emitted(
        self, event: str, *, resource_id: str | None = None, count: int | None = None
    ) -> list[Event]:
        """The recorded events named ``event`` (and on ``resource_id``, if given); fails the
        test if there are none, or not exactly ``count`` of them when ``count`` is given."""
        found = self.find(event, resource_id=resource_id)
        wanted = f"{event!r}" + (f" on {resource_id!r}" if resource_id else "")
        if (count is None and not found) or (count is not None and len(found) != count):
            expected = "at least 1" if count is None else str(count)
            raise AssertionError(
                f"expected {expected} event(s) {wanted}, found {len(found)}; "
                f"emitted: {self._summary()}"
            )
        return found

    def assert_not_emitted(self, event: str, *, resource_id: str | None = None) -> None:
        """Fail the test if an event named ``event`` (on ``resource_id``) was recorded."""
        self.assert_emitted(event, resource_id=resource_id, count=0)

    def _summary(self) -> str:
        names = [f"{e.event} ({e.resource.id})" for e in self.events]
        return ", ".join(names) if names else "nothing"


@contextlib.contextmanager
def record_emitted_events() -> Iterator[EmittedEvents]:
    """Record every ``emit_event`` of the block instead of delivering it.

    The background worker's client becomes an
    :class:`~localevents.AssertingEventsClient`; afterwards, the workers started in the block
    are drained and the previous client comes back.
    """
    AssertingEventsClient.reset()
    try:
        with EventsWorker.overriding_client(AssertingEventsClient):
            yield EmittedEvents(EventsWorker.instance())
    finally:
        EventsWorker.drain_all(FLUSH_TIMEOUT)
        AssertingEventsClient.reset()


async def read_events(filter: EventFilter | None = None) -> list[ReceivedEvent]:
    """Every stored event matching ``filter``, oldest first, from the configured store."""
    query = msgspec.structs.replace(filter or EventFilter(), order="ASC")
    async with get_client() as client:
        return [event async for event in client.iter_events(query, page_size=1000)]


# A deadline of its own (against the anyio rule) so that its error can say what was found.
async def wait_for_events(
    filter: EventFilter | None = None,
    *,
    count: int = 1,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> list[ReceivedEvent]:
    """Flush the background workers, then query until at least ``count`` stored events
    match ``filter``; returns them all, oldest first.

    Also waits for events written by other processes or clients. Raises
    :class:`TimeoutError`, naming what it found, after ``timeout`` seconds.
    """
    await anyio.to_thread.run_sync(flush_events, timeout)
    found: list[ReceivedEvent] = []
    with anyio.move_on_after(timeout):
        while len(found := await read_events(filter)) < count:  # noqa: ASYNC110 (a query)
            await anyio.sleep(POLL_INTERVAL)
        return found
    # What is stored now: the timeout may have cut the first query (a busy machine), and
    # the message must not say "found 0" of events that are there.
    found = await read_events(filter)
    if len(found) >= count:
        return found
    names = ", ".join(e.event for e in found) or "none"
    raise TimeoutError(
        f"expected at least {count} matching event(s) within {timeout} s; found "
        f"{len(found)}: {names}"
    )


def flush_and_read(filter: EventFilter | None = None) -> list[ReceivedEvent]:
    """From synchronous code: flush the background workers, then return every stored event
    matching ``filter``, oldest first."""
    flush_events()
    return anyio.run(read_events, filter)


# -- pytest fixtures ---------------------------------------------------------------------

_F = TypeVar("_F", bound="Callable[..., Any]")


def _fixture(function: _F) -> _F:
    """``function`` as a pytest fixture; as itself where pytest is not installed (it is no
    dependency: the plain helpers above work without it)."""
    try:
        import pytest
    except ImportError:
        return function
    return cast("_F", pytest.fixture(function))


@_fixture
def asserting_events_worker() -> Iterator[EventsWorker]:
    """The background worker, recording into an :class:`~localevents.AssertingEventsClient`
    (after ``worker.flush()``, ``AssertingEventsClient.last.events`` holds what was emitted)."""
    with record_emitted_events() as recorded:
        yield recorded.worker


@_fixture
def emitted_events(asserting_events_worker: EventsWorker) -> EmittedEvents:
    """Every ``emit_event`` of the test, recorded (not delivered) and assertable."""
    return EmittedEvents(asserting_events_worker)


@_fixture
def events_store(tmp_path: Path) -> Iterator[EphemeralStore]:
    """An ephemeral events store on ``tmp_path / "events.duckdb"``, used by every client and
    ``emit_event`` during the test (whatever ``LOCALEVENTS_API_URL`` says)."""
    with ephemeral(database=str(tmp_path / "events.duckdb")) as store:
        try:
            yield store
        finally:
            EventsWorker.drain_all(FLUSH_TIMEOUT)  # its in-process clients hold the file
