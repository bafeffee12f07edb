"""Ephemeral mode: the API inside the user's process, on asyncio and trio, with no server."""

from __future__ import annotations

import gc
import os
import stat
import subprocess
import sys
import textwrap
import threading
import weakref
from typing import TYPE_CHECKING

import anyio
import pytest
from _cli import run
from _servers import clean_environ

import localevents
from localevents import (
    ConfigurationError,
    DatabaseInUseError,
    Event,
    EventFilter,
    EventNameFilter,
    ServerType,
    ephemeral,
    get_client,
    temporary_settings,
)
from localevents.storage._engine import open_stores

if TYPE_CHECKING:
    from pathlib import Path

ID = "prefect.resource.id"


def event(name: str = "acme.widget.made", resource: str = "acme.widget.1") -> Event:
    return Event(event=name, resource={ID: resource})


async def stored_names(**filter_kwargs: object) -> list[str]:
    async with get_client() as client:
        page = await client.read_events(EventFilter(**filter_kwargs), limit=1000)  # type: ignore[arg-type]
    return sorted(e.event for e in page.events)


async def test_async_ephemeral_block_stores_and_reads(tmp_path: Path) -> None:
    """Inside `async with ephemeral()`, clients write to and read from the in-process store."""
    database = str(tmp_path / "events.duckdb")
    async with ephemeral(database=database) as store:
        async with get_client() as client:
            assert client.server_type is ServerType.EPHEMERAL
            assert client.api_url == store.api_url
            await client.create_events([event("a"), event("b")])
        assert await stored_names() == ["a", "b"]
    assert (tmp_path / "events.duckdb").exists()


async def test_a_finished_block_leaves_its_store_to_be_freed(tmp_path: Path) -> None:
    """Once its block ends, the events file's store is closed and freed, though the app is
    kept for the next block: DuckDB's objects still alive when the interpreter ends make it
    print a screen of "nanobind: leaked instance" lines after a command line's output."""
    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        async with get_client() as client:
            await client.create_events([event()])
        (store,) = open_stores()
        freed = weakref.ref(store)
        del store
    gc.collect()
    assert freed() is None


def test_sync_ephemeral_block_serves_clients_on_any_event_loop(tmp_path: Path) -> None:
    """A plain `with ephemeral()` routes clients running in later event loops to the store."""

    async def write_then_count(backend_name: str) -> int:
        async with get_client() as client:
            await client.create_events([event(backend_name)])
            return (await client.read_events()).total

    with ephemeral(database=str(tmp_path / "events.duckdb")):
        assert anyio.run(write_then_count, "asyncio", backend="asyncio") == 1
        assert anyio.run(write_then_count, "trio", backend="trio") == 2


async def test_default_is_ephemeral_on_the_home_database(
    isolated_settings: localevents.Settings,
) -> None:
    """With no API URL, get_client() stores in $LOCALEVENTS_HOME/events.duckdb in-process."""
    async with get_client() as client:
        assert client.server_type is ServerType.EPHEMERAL
        await client.create_events([event("default")])
    async with get_client() as client:
        assert [e.event for e in (await client.read_events()).events] == ["default"]
    assert isolated_settings.database_path.endswith("events.duckdb")
    assert anyio.Path(isolated_settings.database_path).name == "events.duckdb"
    assert await anyio.Path(isolated_settings.database_path).exists()


async def test_configured_api_url_selects_the_server(tmp_path: Path) -> None:
    """With LOCALEVENTS_API_URL set, clients go to that server (no in-process app)."""
    with temporary_settings(api_url="http://127.0.0.1:9/api", api_key="k"):
        client = get_client()
        assert client.server_type is ServerType.SERVER
        assert client.api_url == "http://127.0.0.1:9/api"
        assert client.http.headers["Authorization"] == "Bearer k"
        assert localevents.determine_server_type() is ServerType.SERVER


async def test_ephemeral_block_wins_over_a_configured_server(tmp_path: Path) -> None:
    """Inside ephemeral(), clients use the in-process store even when a URL is configured."""
    with temporary_settings(api_url="http://127.0.0.1:9/api"):
        async with ephemeral(database=str(tmp_path / "events.duckdb")):
            async with get_client() as client:
                assert client.server_type is ServerType.EPHEMERAL
                await client.create_events([event("pinned")])
            assert await stored_names() == ["pinned"]


def test_unconfigured_mode_is_a_clear_error() -> None:
    """With no URL and ephemeral mode disabled, asking for a client says what to set."""
    with temporary_settings(ephemeral=False):
        assert localevents.determine_server_type() is ServerType.UNCONFIGURED
        with pytest.raises(ConfigurationError, match="LOCALEVENTS_API_URL"):
            get_client()


async def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    """Events written in one ephemeral block are there in the next one on the same file."""
    database = str(tmp_path / "events.duckdb")
    async with ephemeral(database=database), get_client() as client:
        await client.create_events([event("kept")])
    async with ephemeral(database=database):
        assert await stored_names() == ["kept"]


async def test_memory_database_is_shared_within_the_block() -> None:
    """`:memory:` keeps events for as long as the ephemeral block holds it open."""
    async with ephemeral(database=":memory:"):
        async with get_client() as client:
            await client.create_events([event("in-memory")])
        assert await stored_names() == ["in-memory"]


async def test_event_from_another_threads_event_loop_is_visible(tmp_path: Path) -> None:
    """A write made on another thread's event loop is readable from this loop at once."""

    async def write_from_thread() -> None:
        async with get_client() as client:
            await client.create_events([event("from-thread")])

    async with ephemeral(database=str(tmp_path / "events.duckdb")):
        thread = threading.Thread(target=anyio.run, args=(write_from_thread,))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        names = await stored_names(event=EventNameFilter(prefix=["from-"]))
        assert names == ["from-thread"]


def test_a_file_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    """Opening a file that another process holds fails with that process's PID in the text."""
    database = tmp_path / "held.duckdb"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(database)!r})
                print("ready", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with (
            pytest.raises(DatabaseInUseError, match=f"in use by PID {holder.pid}") as caught,
            ephemeral(database=str(database)),
        ):
            pass
        assert caught.value.pid == holder.pid
        assert "LOCALEVENTS_API_URL" in str(caught.value)
        # a client in ephemeral mode, and the command line, say the same (not a traceback)
        with (
            temporary_settings(database=str(database), api_url=None),
            pytest.raises(DatabaseInUseError, match=f"in use by PID {holder.pid}"),
            localevents.get_sync_client() as client,
        ):
            client.read_events()
        result = run("query", "--database", database)
        assert result.exit_code == 1
        assert f"in use by PID {holder.pid}" in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
        holder.kill()


def test_opening_a_store_imports_nothing(tmp_path: Path) -> None:
    """Opening an events file, new or existing, imports no module once the store module
    is loaded: ``ephemeral()`` imports the server in another thread meanwhile, and two
    threads importing one package at once can be handed half-initialised modules."""
    script = textwrap.dedent(
        """
        import sys
        from localevents.storage._engine import open_store, release
        for _ in range(2):  # a new file, then the same file existing
            before = set(sys.modules)
            release(open_store(sys.argv[1]))
            print(sorted(set(sys.modules) - before))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "events.duckdb")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split("\n")[:2] == ["[]", "[]"]


def test_an_events_file_in_a_missing_folder_is_refused_but_the_home_is_made(
    tmp_path: Path,
) -> None:
    """ephemeral(database=...) in a folder that does not exist raises ConfigurationError
    naming it and makes nothing (it made the folders and started an empty store: a typo
    went unnoticed); the localevents home, where the default file lives, is still made,
    for its owner alone (other users could read every event from it)."""
    typo = tmp_path / "typo" / "deeper" / "events.duckdb"
    home = tmp_path / "home"
    with temporary_settings(home=str(home)):
        with pytest.raises(ConfigurationError) as refused, ephemeral(database=str(typo)):
            pass
        assert not (tmp_path / "typo").exists()
        with ephemeral():
            pass
    assert str(refused.value) == (
        f"cannot open the events file {typo}: its folder {typo.parent} does not exist (create "
        f"it first: only the localevents home, {home}, is made when missing)"
    )
    assert (home / "events.duckdb").exists()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_child_forked_inside_a_block_is_refused_its_parents_file(tmp_path: Path) -> None:
    """A child forked with the file open got a copy of the parent's DuckDB instance: its
    writes were acknowledged and then lost (the parent never saw them). It is now refused,
    naming the parent, as a process started any other way is."""
    database = tmp_path / "events.duckdb"
    script = textwrap.dedent(
        """
        import os, sys
        import localevents
        from localevents import Event
        def store(name):
            with localevents.get_sync_client() as client:
                client.create_events([Event(event=name, resource={"prefect.resource.id": "r"})])
        with localevents.ephemeral(database=sys.argv[1]):
            store("acme.parent.before")
            child = os.fork()
            if child == 0:
                try:
                    store("acme.child")
                    print("child: stored", flush=True)
                except Exception as exc:
                    print(f"child: {type(exc).__name__}: {exc}", flush=True)
                os._exit(0)  # as multiprocessing's forked children end
            os.waitpid(child, 0)
            store("acme.parent.after")
            print(f"parent: {os.getpid()}", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(database)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environ(),
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["child"].startswith("DatabaseInUseError: ")
    assert f"in use by PID {lines['parent']}" in lines["child"]
    with ephemeral(database=str(database)):
        assert anyio.run(stored_names) == ["acme.parent.after", "acme.parent.before"]
