"""The background events worker: order, the bounded queue, flush(), drain at exit, fork, and
the in-process store shared with the caller's event loop (SPEC B §5.7, D15)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
from _servers import clean_environ, free_port, serve

from localevents import (
    AuthenticationError,
    ConfigurationError,
    Event,
    EventFilter,
    EventNameFilter,
    EventSubscriber,
    Resource,
    ServiceUnavailable,
    WebSocketEventsClient,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents.client import AssertingEventsClient, EventsWorker, NullEventsClient
from localevents.client import _worker as worker_module

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localevents.events import ReceivedEvent

ID = "prefect.resource.id"
PATIENCE = 60.0
"""Seconds any one step may take before the test fails instead of hanging."""
BACKENDS = ["asyncio", "trio"]


def event(name: str) -> Event:
    return Event(event=name, resource=Resource({ID: "acme.widget"}))


async def stored(prefix: str, api_url: str | None = None) -> list[ReceivedEvent]:
    """Every stored event whose name starts with ``prefix``, oldest first."""
    async with get_client(api_url=api_url) as client:
        query = EventFilter(event=EventNameFilter(prefix=[prefix]), order="ASC")
        return [event async for event in client.iter_events(query, page_size=1000)]


def stored_now(prefix: str, api_url: str | None = None) -> list[ReceivedEvent]:
    return anyio.run(stored, prefix, api_url)


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    AssertingEventsClient.reset()
    yield
    EventsWorker.set_client_override(None)
    assert EventsWorker.drain_all(PATIENCE)
    AssertingEventsClient.reset()


class GatedClient(AssertingEventsClient):
    """Records like its parent, but each emit waits until the test opens ``gate``."""

    def __init__(self, *, entered: threading.Event, gate: threading.Event) -> None:
        super().__init__(entered=entered, gate=gate)
        self.entered = entered
        self.gate = gate

    async def _emit(self, event: Event) -> None:
        self.entered.set()
        await anyio.to_thread.run_sync(self.gate.wait, abandon_on_cancel=True)
        await super()._emit(event)


def recorded(worker: EventsWorker) -> list[Event]:
    assert isinstance(worker.client, AssertingEventsClient)
    return worker.client.events


# Order, instances and overrides


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_reach_the_client_in_the_order_sent(backend: Any) -> None:
    """Events sent from one thread reach the client in that order, on either backend."""
    sent = [event(f"acme.ordered.{index}") for index in range(500)]
    with EventsWorker(AssertingEventsClient, backend=backend) as worker:
        for each in sent:
            assert worker.send(each)
        worker.flush(PATIENCE)
        assert recorded(worker) == sent
        assert worker.statistics().sent == 500


def test_events_from_many_threads_are_all_delivered_each_thread_in_order() -> None:
    """Several threads sending at once lose nothing and keep each thread's own order."""
    with EventsWorker(AssertingEventsClient) as worker:

        def send_many(thread: int) -> None:
            for index in range(200):
                worker.send(event(f"acme.thread.{thread}.{index}"))

        threads = [threading.Thread(target=send_many, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        worker.flush(PATIENCE)
        names = [e.event for e in recorded(worker)]
    assert len(names) == 800
    for thread_number in range(4):
        mine = [name for name in names if name.startswith(f"acme.thread.{thread_number}.")]
        assert mine == [f"acme.thread.{thread_number}.{index}" for index in range(200)]


def test_instance_is_one_running_worker_per_client_and_options() -> None:
    """instance() returns the same worker for the same client and options, another for
    other options, and a new one once the old one is drained."""
    first = EventsWorker.instance(AssertingEventsClient, checkpoint_every=5)
    assert EventsWorker.instance(AssertingEventsClient, checkpoint_every=5) is first
    other = EventsWorker.instance(AssertingEventsClient, checkpoint_every=6)
    assert other is not first
    trio_worker = EventsWorker.instance(AssertingEventsClient, backend="trio", checkpoint_every=5)
    assert trio_worker is not first
    assert trio_worker.backend == "trio"
    first.drain(PATIENCE)
    replacement = EventsWorker.instance(AssertingEventsClient, checkpoint_every=5)
    assert replacement is not first
    assert replacement.running


def test_instance_follows_the_ephemeral_database_in_use(tmp_path: Path) -> None:
    """A worker started inside one ephemeral block keeps writing there; another block's
    events go to another worker and land in that block's file."""
    for name in ("one", "two"):
        with ephemeral(database=str(tmp_path / f"{name}.duckdb")):
            worker = EventsWorker.instance()
            worker.send(event(f"acme.db.{name}"))
            worker.flush(PATIENCE)
            assert [e.event for e in stored_now("acme.db.")] == [f"acme.db.{name}"]
            assert worker.destination is not None
            assert worker.destination.database == str(tmp_path / f"{name}.duckdb")


def test_client_override_wins_and_gets_its_options() -> None:
    """set_client_override() makes instance() build that client with those options; None
    brings the default back."""
    EventsWorker.set_client_override(AssertingEventsClient, label="override")
    worker = EventsWorker.instance(NullEventsClient)
    worker.send(event("acme.overridden"))
    worker.flush(PATIENCE)
    assert worker.client_type is AssertingEventsClient
    assert AssertingEventsClient.last is worker.client
    assert AssertingEventsClient.last.kwargs == {"label": "override"}
    assert [e.event for e in AssertingEventsClient.last.events] == ["acme.overridden"]
    EventsWorker.set_client_override(None)
    assert EventsWorker.instance().client_type is WebSocketEventsClient


def test_overriding_client_block_restores_the_previous_override() -> None:
    """overriding_client() sets an override for a block and puts the previous one back."""
    with EventsWorker.overriding_client(AssertingEventsClient):
        assert EventsWorker.client_override() is AssertingEventsClient
        with EventsWorker.overriding_client(NullEventsClient):
            assert EventsWorker.client_override() is NullEventsClient
        assert EventsWorker.client_override() is AssertingEventsClient
    assert EventsWorker.client_override() is None


def test_unconfigured_destination_gets_the_null_client() -> None:
    """With no server and ephemeral mode off, the default worker drops events quietly."""
    with temporary_settings(ephemeral=False):
        assert EventsWorker.instance().client_type is NullEventsClient


def test_bad_worker_settings_are_clear_errors() -> None:
    """A queue size below 1, an unknown backend or unhashable options are refused at once."""
    with pytest.raises(ConfigurationError, match="MAX_QUEUE_SIZE must be > 0"):
        EventsWorker(AssertingEventsClient, max_queue_size=0)
    with (  # the setting itself is refused, before any worker reads it
        pytest.raises(ConfigurationError, match="MAX_QUEUE_SIZE must be > 0"),
        temporary_settings(events_worker_max_queue_size=0),
    ):
        EventsWorker(AssertingEventsClient)
    with pytest.raises(ConfigurationError, match="backend must be 'asyncio' or 'trio'"):
        EventsWorker(AssertingEventsClient, backend="curio")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be hashable"):
        EventsWorker.instance(AssertingEventsClient, labels=["unhashable"])


def test_a_stopped_worker_refuses_events() -> None:
    """After drain(), send() raises instead of queueing events nobody will deliver."""
    worker = EventsWorker(AssertingEventsClient).start()
    assert worker.drain(PATIENCE)
    with pytest.raises(RuntimeError, match="not running"):
        worker.send(event("acme.too.late"))


# The bounded queue


def test_a_full_queue_drops_new_events_counts_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the client stuck, events beyond the queue bound are dropped (send() says False),
    counted, and reported in one warning; the queued ones are delivered afterwards."""
    monkeypatch.setattr(worker_module, "WARNING_INTERVAL", 1e9)  # one warning, then quiet
    entered, gate = threading.Event(), threading.Event()
    caplog.set_level(logging.WARNING, logger="localevents.client")
    options = {"entered": entered, "gate": gate}
    with EventsWorker(GatedClient, options, max_queue_size=3) as worker:
        assert worker.send(event("acme.full.0"))
        assert entered.wait(PATIENCE)  # the client holds event 0; the queue is empty
        assert [worker.send(event(f"acme.full.{index}")) for index in range(1, 6)] == [
            True,
            True,
            True,
            False,
            False,
        ]
        statistics = worker.statistics()
        assert (statistics.queued, statistics.dropped, statistics.max_queue_size) == (3, 2, 3)
        gate.set()
        worker.flush(PATIENCE)
        assert [e.event for e in recorded(worker)] == [f"acme.full.{n}" for n in range(4)]
        assert worker.statistics().dropped == 2
    warnings = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1
    assert "acme.full.4" in warnings[0]
    assert "LOCALEVENTS_EVENTS_WORKER_MAX_QUEUE_SIZE" in warnings[0]


def test_queue_bound_comes_from_the_setting() -> None:
    """LOCALEVENTS_EVENTS_WORKER_MAX_QUEUE_SIZE sets the bound of new workers."""
    with temporary_settings(events_worker_max_queue_size=7):
        worker = EventsWorker.instance(AssertingEventsClient)
    assert worker.max_queue_size == 7
    assert worker.statistics().max_queue_size == 7


def drain_a_stuck_worker(client_type: type[GatedClient], timeout: float) -> EventsWorker:
    """A worker whose client is stuck in the first of four events, drained within
    ``timeout`` (which it cannot meet)."""
    entered, gate = threading.Event(), threading.Event()
    worker = EventsWorker(client_type, {"entered": entered, "gate": gate}).start()
    for index in range(4):
        worker.send(event(f"acme.lost.{index}"))
    assert entered.wait(PATIENCE)
    try:
        assert worker.drain(timeout=timeout) is False
    finally:
        gate.set()
    return worker


def test_drain_gives_up_after_its_timeout_and_says_what_was_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the client cannot finish within drain()'s timeout, the worker is cancelled,
    drain() returns False and a warning counts the events left undelivered."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    worker = drain_a_stuck_worker(GatedClient, 0.05)
    messages = [record.getMessage() for record in caplog.records]
    assert any("3 events were not delivered (3 queued)" in message for message in messages)
    assert recorded(worker) == []


class HoldingClient(GatedClient):
    """A gated client that holds two events the server has not confirmed (as a WebSocket
    client does when its server goes away)."""

    @property
    def unconfirmed_count(self) -> int:
        return 2


def test_events_the_client_holds_unconfirmed_count_as_not_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drain's warning counts the events sent but never confirmed as lost too, and
    gives its timeout as a person would write it."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    drain_a_stuck_worker(HoldingClient, 0.1 / 3)
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "The events worker did not finish within 0.0333 s; 5 events were not delivered "
        "(3 queued, 2 sent but not confirmed)"
    ) in messages


# flush()


def test_flush_waits_for_the_client_and_times_out_while_it_is_stuck() -> None:
    """flush() does not return while an earlier event is still with the client: with a
    timeout it raises TimeoutError, and once the client moves on it returns."""
    entered, gate = threading.Event(), threading.Event()
    with EventsWorker(GatedClient, {"entered": entered, "gate": gate}) as worker:
        worker.send(event("acme.stuck"))
        assert entered.wait(PATIENCE)
        with pytest.raises(TimeoutError, match="did not confirm"):
            worker.flush(timeout=0.05)
        gate.set()
        worker.flush(PATIENCE)
        assert [e.event for e in recorded(worker)] == ["acme.stuck"]


def test_a_flush_that_times_out_counts_the_events_sent_but_not_confirmed() -> None:
    """flush()'s TimeoutError counts the events the client holds unconfirmed as well as
    the queued ones (it said "0 still queued" while 25 were unconfirmed)."""
    entered, gate = threading.Event(), threading.Event()
    with EventsWorker(HoldingClient, {"entered": entered, "gate": gate}) as worker:
        worker.send(event("acme.stuck"))
        assert entered.wait(PATIENCE)
        with pytest.raises(TimeoutError) as caught:
            worker.flush(timeout=0.05)
        gate.set()
    assert str(caught.value).endswith("(0 queued, 2 sent but not confirmed)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_flush_means_stored_in_the_ephemeral_store(tmp_path: Path, backend: Any) -> None:
    """After flush(), every event sent through the websocket client is queryable."""
    with ephemeral(database=str(tmp_path / "events.duckdb")):
        worker = EventsWorker.instance(backend=backend, checkpoint_interval=3600.0)
        sent = [event(f"acme.flushed.{index}") for index in range(300)]
        for each in sent:
            worker.send(each)
        worker.flush(PATIENCE)
        assert [e.id for e in stored_now("acme.flushed.")] == [e.id for e in sent]


def test_flush_raises_when_the_store_is_unreachable() -> None:
    """With no server listening, flush() raises ServiceUnavailable instead of pretending; the
    events stay queued."""
    url = f"http://127.0.0.1:{free_port()}/api"
    worker = EventsWorker.instance(WebSocketEventsClient, api_url=url, reconnection_attempts=0)
    worker.send(event("acme.unreachable"))
    with pytest.raises(ServiceUnavailable, match="could not confirm"):
        worker.flush(PATIENCE)
    assert worker.statistics().queued == 1


def test_flush_raises_a_refused_key_as_an_authentication_error(tmp_path: Path) -> None:
    """A server that refuses the worker's key makes flush() raise AuthenticationError (not
    ServiceUnavailable, which says to retry later), naming the refusal; the events stay
    queued."""
    with serve(tmp_path / "events.duckdb", "--api-key", "the-right-key") as server:
        worker = EventsWorker.instance(
            WebSocketEventsClient, api_url=server.url, api_key="a-wrong-key"
        )
        worker.send(event("acme.refused"))
        with pytest.raises(AuthenticationError, match=r"could not confirm its events: .*key"):
            worker.flush(PATIENCE)
        assert worker.statistics().queued == 1


def test_a_worker_stopping_before_it_could_deliver_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A short script emits and exits while the server refuses the client (here: no
    server): the events are reported lost, and so is the reason, not only their number."""
    caplog.set_level(logging.WARNING, logger="localevents.client")
    url = f"http://127.0.0.1:{free_port()}/api"
    worker = EventsWorker(WebSocketEventsClient, {"api_url": url, "reconnection_attempts": 0})
    worker.start().send(event("acme.never"))
    worker.drain(timeout=PATIENCE)
    messages = [record.getMessage() for record in caplog.records]
    [stopped] = [m for m in messages if m.startswith("The events worker stopped:")]
    assert stopped.startswith(
        "The events worker stopped: 1 events were not delivered (1 queued). "
        "Reason: ServerUnreachable: could not connect to"
    )


@pytest.mark.slow
def test_events_sent_while_the_server_is_down_arrive_once_it_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events queued while the server cannot be reached are delivered when it starts."""
    monkeypatch.setattr(worker_module, "RECONNECT_DELAY", 0.05)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    worker = EventsWorker.instance(WebSocketEventsClient, api_url=url, reconnection_attempts=0)
    sent = [event(f"acme.late.{index}") for index in range(10)]
    for each in sent:
        worker.send(each)
    with serve(tmp_path / "events.duckdb", port=port):
        for _ in range(1000):  # a connect attempt made before the server was up may fail
            try:
                worker.flush(PATIENCE)
                break
            except ServiceUnavailable:
                continue
        else:
            pytest.fail("the worker never delivered after the server came up")
        assert [e.id for e in stored_now("acme.late.", url)] == [e.id for e in sent]


# Ephemeral mode: the worker's loop and the caller's loop share the store and the live hub


async def test_worker_event_reaches_a_subscriber_on_the_callers_loop(tmp_path: Path) -> None:
    """In ephemeral mode, an event sent through the worker's own thread and loop is seen by a
    subscriber on the test's loop, and is queryable after flush()."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        live = EventFilter(event=EventNameFilter(prefix=["acme.live."]))
        async with EventSubscriber(filter=live) as subscriber:
            worker = EventsWorker.instance()
            sent = event("acme.live.1")
            worker.send(sent)
            with anyio.fail_after(PATIENCE):
                received = await anext(aiter(subscriber))
            assert received.id == sent.id
        await anyio.to_thread.run_sync(worker.flush, PATIENCE)
        assert [e.id for e in await stored("acme.live.")] == [sent.id]


# Interpreter exit and fork, in real processes

EXIT_SCRIPT = """
import sys
from localevents.client import emit_event

def emit_all():
    for index in range(int(sys.argv[1])):
        emit_event("acme.exit.%d" % index, resource={"prefect.resource.id": "acme.widget"})
    print("emitted", flush=True)

"""

EXIT_RUNNERS = {
    "plain script": "emit_all()",
    "inside trio.run": "import trio\nasync def main(): emit_all()\ntrio.run(main)",
    "inside asyncio.run": "import asyncio\nasync def main(): emit_all()\nasyncio.run(main())",
    # The main thread ends first; Python joins these threads at exit, and they still emit.
    "from a thread still running": (
        "import threading, time\n"
        "def late(): time.sleep(0.5); emit_all()\n"
        "emit_event('acme.exit.early', resource={'prefect.resource.id': 'acme.widget'})\n"
        "threading.Thread(target=late).start()"
    ),
    "from a thread pool task still running": (
        "import concurrent.futures, time\n"
        "def late(): time.sleep(0.5); emit_all()\n"
        "concurrent.futures.ThreadPoolExecutor(1).submit(late)"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("runner", EXIT_RUNNERS.values(), ids=EXIT_RUNNERS.keys())
def test_a_process_that_exits_without_flushing_leaves_every_event_stored(
    tmp_path: Path, runner: str
) -> None:
    """A script emits events (from plain code, inside a running event loop, or from a
    thread that goes on emitting after the main thread has ended) and simply ends: the
    worker is drained at exit, so every event is in the events file afterwards."""
    names, said = _stored_after_exit(tmp_path, EXIT_SCRIPT + runner + "\n", 2500)
    missing = {f"acme.exit.{index}" for index in range(2500)} - names
    assert not missing, f"{len(missing)} events missing; the script said:\n{said}"


@pytest.mark.slow
def test_an_event_emitted_from_an_atexit_handler_is_stored(tmp_path: Path) -> None:
    """Python runs atexit handlers after the workers' drain at exit: an event emitted there
    was returned as emitted and never delivered. It is now delivered before emit_event
    returns."""
    script = (
        EXIT_SCRIPT
        + "import atexit\n"
        + "emit_event('acme.exit.early', resource={'prefect.resource.id': 'acme.widget'})\n"
        + "atexit.register(emit_all)\n"
    )
    names, _ = _stored_after_exit(tmp_path, script, 3)
    assert names == {"acme.exit.early", "acme.exit.0", "acme.exit.1", "acme.exit.2"}


HOLDER = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_script_ending_while_another_process_holds_the_file_waits_for_it(
    tmp_path: Path,
) -> None:
    """In ephemeral mode, a script that emits and ends while another process holds the
    events file (another script, about to end) waits for the file at exit, saying so, and
    stores every event once it is free: it tried once and lost them all."""
    database = tmp_path / "events.duckdb"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        with subprocess.Popen(
            [sys.executable, "-c", EXIT_SCRIPT + "emit_all()\n", "40"],
            env=clean_environ({"LOCALEVENTS_DATABASE": str(database)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as script:
            assert script.stderr is not None
            said = []
            for said_line in script.stderr:  # until it waits at exit for the file
                said.append(said_line)
                if "waiting up to 25 s to deliver" in said_line:
                    break
            assert f"in use by PID {holder.pid}" in said[-1], "".join(said)
            holder.stdin.close()  # the holder lets go
            said += script.stderr.readlines()
            assert script.wait(PATIENCE) == 0, "".join(said)
    assert "not delivered" not in "".join(said)
    with ephemeral(database=str(database)):
        names = {e.event for e in stored_now("acme.exit.")}
    assert names == {f"acme.exit.{index}" for index in range(40)}


@pytest.mark.slow
def test_a_script_whose_parent_holds_the_file_does_not_wait_for_it(tmp_path: Path) -> None:
    """A script run by a process that holds the events file (a notebook, a test runner)
    does not wait for the file at exit, since its parent is waiting for it: it says at
    once what it could not deliver, and why."""
    database = tmp_path / "events.duckdb"
    with ephemeral(database=str(database)):  # this process holds the file
        completed = _run_exit_script(EXIT_SCRIPT + "emit_all()\n", 3, database)
    assert completed.returncode == 0, completed.stderr
    assert "waiting up to" not in completed.stderr
    assert "3 events were not delivered" in completed.stderr
    assert f"in use by PID {os.getpid()}" in completed.stderr


def _run_exit_script(script: str, count: int, database: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``count`` as its argument, emitting to the events file
    ``database`` (no server)."""
    return _run_script(script, {"LOCALEVENTS_DATABASE": str(database)}, str(count))


def _run_script(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``args`` in a Python of its own, with ``env`` for settings."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def _stored_after_exit(tmp_path: Path, script: str, count: int) -> tuple[set[str], str]:
    """Run ``script`` (:data:`EXIT_SCRIPT` and how it calls ``emit_all``) emitting
    ``count`` events to an events file in ``tmp_path``; the names stored once it has
    exited (it must say "emitted" and exit 0), and what it wrote to stderr."""
    database = tmp_path / "events.duckdb"
    completed = _run_exit_script(script, count, database)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "emitted"
    with ephemeral(database=str(database)):
        return {e.event for e in stored_now("acme.exit.")}, completed.stderr


FORK_SCRIPT = """
import os, sys
from localevents.client import emit_event
from localevents.client import EventsWorker

def emit(name, count):
    for index in range(count):
        emit_event(name + ".%d" % index, resource={"prefect.resource.id": "acme.widget"})

emit("acme.parent.before", 10)
inherited = EventsWorker.instance()
inherited.flush(60)
pid = os.fork()
if pid == 0:
    try:
        try:
            inherited.send(None)
        except RuntimeError as exc:
            assert "belongs to the parent process" in str(exc), exc
        else:
            raise AssertionError("the inherited worker accepted an event")
        emit("acme.child", 50)
        EventsWorker.instance().flush(60)
        assert EventsWorker.instance() is not inherited
    except BaseException as exc:
        print("child failed:", repr(exc), file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
emit("acme.parent.after", 10)
"""


@pytest.mark.slow
def test_fork_gives_the_child_a_fresh_worker_and_the_parent_keeps_its_own(
    tmp_path: Path,
) -> None:
    """After os.fork(), the child emits through a worker of its own (the inherited one
    refuses), and the parent carries on: the server stores the events of both."""
    with serve(tmp_path / "events.duckdb") as server:
        completed = _run_script(textwrap.dedent(FORK_SCRIPT), {"LOCALEVENTS_API_URL": server.url})
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.strip() == "child exit 0", completed.stderr
        names = {e.event for e in stored_now("acme.", server.url)}
    expected = {f"acme.parent.before.{n}" for n in range(10)}
    expected |= {f"acme.child.{n}" for n in range(50)}
    expected |= {f"acme.parent.after.{n}" for n in range(10)}
    assert names == expected


POOL_SCRIPT = """
import multiprocessing
from localevents.client import emit_event

def work(k):
    for n in range(5):
        emit_event("acme.pool.%d.%d" % (k, n), resource={"prefect.resource.id": "acme.widget"})

if __name__ == "__main__":
    emit_event("acme.pool.parent", resource={"prefect.resource.id": "acme.widget"})
    with multiprocessing.get_context("fork").Pool(2) as pool:  # forked at once
        pool.map(work, [1, 2])
        pool.close()
        pool.join()
"""


@pytest.mark.slow
def test_processes_forked_right_after_the_first_emit_deliver_their_events(
    tmp_path: Path,
) -> None:
    """A pool forked right after the parent's first emit_event (its worker thread still
    loading the event loop's modules) delivers the children's events: the children
    inherited a half-loaded module, and every worker they started died on it."""
    with serve(tmp_path / "events.duckdb") as server:
        completed = _run_script(POOL_SCRIPT, {"LOCALEVENTS_API_URL": server.url})
        assert completed.returncode == 0, completed.stderr
        names = {e.event for e in stored_now("acme.pool.", server.url)}
    expected = {"acme.pool.parent"} | {f"acme.pool.{k}.{n}" for k in (1, 2) for n in range(5)}
    assert names == expected, completed.stderr
