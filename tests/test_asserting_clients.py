"""The asserting events clients: what tests use to see what was emitted (SPEC B §5.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pytest
from _servers import serve

from localevents import Event, EventFilter, EventNameFilter, Resource, ephemeral, get_client
from localevents.client import AssertingEventsClient, AssertingPassthroughEventsClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localevents.events import ReceivedEvent

ID = "prefect.resource.id"
CONTEXT_MANAGER_RULE = "only be emitted while this client is being used as a context manager"


def event(name: str) -> Event:
    return Event(event=name, resource=Resource({ID: "acme.widget"}))


async def stored(prefix: str, api_url: str | None = None) -> list[ReceivedEvent]:
    async with get_client(api_url=api_url) as client:
        query = EventFilter(event=EventNameFilter(prefix=[prefix]), order="ASC")
        return list((await client.read_events(query, limit=1000)).events)


@pytest.fixture(autouse=True)
def fresh_registries() -> Iterator[None]:
    AssertingEventsClient.reset()
    AssertingPassthroughEventsClient.reset()
    yield
    AssertingEventsClient.reset()
    AssertingPassthroughEventsClient.reset()


async def test_asserting_client_records_in_order_and_keeps_events_after_exit() -> None:
    """Events emitted in the block are in `events`, in order, and still there after it."""
    client = AssertingEventsClient()
    sent = [event("acme.a"), event("acme.b"), event("acme.c")]
    async with client:
        for each in sent:
            await client.emit(each)
    assert client.events == sent
    assert client.emitted == 3


async def test_asserting_clients_follow_the_context_manager_rule(tmp_path: Path) -> None:
    """Both asserting clients refuse to emit before `async with` and after it, recording
    nothing then."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        for client in (AssertingEventsClient(), AssertingPassthroughEventsClient()):
            with pytest.raises(TypeError, match=CONTEXT_MANAGER_RULE):
                await client.emit(event("acme.too.early"))
            async with client:
                await client.emit(event("acme.in.time"))
            with pytest.raises(TypeError, match=CONTEXT_MANAGER_RULE):
                await client.emit(event("acme.too.late"))
            assert [e.event for e in client.events] == ["acme.in.time"]


async def test_pop_events_returns_what_was_recorded_and_starts_over() -> None:
    """pop_events() hands back the recorded events and leaves the record empty."""
    async with AssertingEventsClient() as client:
        first = event("acme.first")
        await client.emit(first)
        assert client.pop_events() == [first]
        assert client.events == []
        second = event("acme.second")
        await client.emit(second)
    assert client.pop_events() == [second]


def test_registry_tracks_last_and_all_instances_and_their_arguments() -> None:
    """`last` is the newest instance, `all` every one since reset(), each with the arguments
    it was built with."""
    assert AssertingEventsClient.last is None
    one = AssertingEventsClient("positional", checkpoint_every=5)
    two = AssertingEventsClient(api_url="http://example.invalid/api")
    assert AssertingEventsClient.last is two
    assert AssertingEventsClient.all == [one, two]
    assert one.args == ("positional",)
    assert one.kwargs == {"checkpoint_every": 5}
    assert two.args == ()
    assert two.kwargs == {"api_url": "http://example.invalid/api"}


def test_reset_forgets_every_instance() -> None:
    """reset() empties the registry: `last` is None and `all` is empty until the next one."""
    AssertingEventsClient()
    AssertingEventsClient.reset()
    assert AssertingEventsClient.last is None
    assert AssertingEventsClient.all == []
    after = AssertingEventsClient()
    assert AssertingEventsClient.all == [after]


def test_each_asserting_class_has_its_own_registry(tmp_path: Path) -> None:
    """A passthrough client does not appear in AssertingEventsClient's registry, and
    resetting one class leaves the other alone."""
    with ephemeral(database=str(tmp_path / "events.duckdb")):
        recording = AssertingEventsClient()
        passthrough = AssertingPassthroughEventsClient(checkpoint_every=3)
    assert AssertingEventsClient.all == [recording]
    assert AssertingPassthroughEventsClient.all == [passthrough]
    assert passthrough.kwargs == {"checkpoint_every": 3}
    assert passthrough.checkpoint_every == 3
    AssertingPassthroughEventsClient.reset()
    assert AssertingEventsClient.last is recording


def test_subclasses_share_the_registry_unless_they_declare_their_own() -> None:
    """A subclass's instances appear in AssertingEventsClient's registry (so helpers reading
    it see them); a subclass that declares its own `all` keeps them apart."""

    class Shared(AssertingEventsClient):
        pass

    class Separate(AssertingEventsClient):
        all: ClassVar[list[AssertingEventsClient]] = []

    shared = Shared()
    separate = Separate()
    assert AssertingEventsClient.all == [shared]
    assert AssertingEventsClient.last is shared
    assert Separate.all == [separate]
    assert Separate.last is separate
    Separate.reset()
    assert Separate.all == []
    assert AssertingEventsClient.all == [shared]


async def test_passthrough_records_and_stores_in_process(tmp_path: Path) -> None:
    """In ephemeral mode the passthrough client records each event and the store has it."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        async with AssertingPassthroughEventsClient() as client:
            for index in range(5):
                await client.emit(event(f"acme.passthrough.{index}"))
        names = [f"acme.passthrough.{index}" for index in range(5)]
        assert [e.event for e in client.events] == names
        assert [e.event for e in await stored("acme.passthrough.")] == names


@pytest.mark.slow
async def test_passthrough_records_and_stores_on_a_real_server(tmp_path: Path) -> None:
    """Against a server process, the passthrough client records and the server stores, with
    the recorded ids equal to the stored ones."""
    with serve(tmp_path / "events.duckdb") as server:
        async with AssertingPassthroughEventsClient(server.url) as client:
            for index in range(20):
                await client.emit(event(f"acme.remote.{index}"))
        assert client.kwargs == {}
        assert client.args == (server.url,)
        recorded = [e.id for e in client.events]
        assert len(recorded) == 20
        assert [e.id for e in await stored("acme.remote.", server.url)] == recorded
