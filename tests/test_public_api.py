"""The public surface: what `import localevents` offers, and the settings it reads."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from _servers import clean_environ

import localevents
from localevents import ConfigurationError, HTTPStatusError, LocalEventsError, Settings
from localevents._settings import parse_duration, settings_from_environ

if TYPE_CHECKING:
    from pathlib import Path


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every name in it exists (the export list cannot drift)."""
    assert list(localevents.__all__) == sorted(localevents.__all__)
    for name in localevents.__all__:
        assert hasattr(localevents, name), name


def test_lazy_exports_are_the_objects_their_modules_define() -> None:
    """A name loaded on first use is the very object of its module, dir() lists every
    export, the ephemeral() function is not shadowed by its module, and an unknown name
    is an AttributeError naming it."""
    import localevents.client._api
    import localevents.ephemeral

    assert localevents.get_client is localevents.client._api.get_client
    assert localevents.client.get_client is localevents.client._api.get_client
    assert set(localevents.__all__) <= set(dir(localevents))
    assert localevents.ephemeral is sys.modules["localevents.ephemeral"].ephemeral
    with pytest.raises(AttributeError, match="no attribute 'get_clinet'"):
        localevents.get_clinet  # type: ignore[attr-defined]  # noqa: B018


HEAVY = ("duckdb", "litestar", "httpx", "httpx_ws", "uvicorn", "prometheus_client")


def _loaded_after(script: str, *args: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The heavy libraries a fresh interpreter has imported after running ``script``."""
    script += f"\nimport sys, json; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=clean_environ(),
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_localevents_loads_no_heavy_library() -> None:
    """`import localevents` is cheap: DuckDB, Litestar, httpx, httpx-ws and uvicorn load
    only when something needs them."""
    assert _loaded_after("import localevents") == []


def test_an_ephemeral_request_loads_neither_uvicorn_nor_websockets(tmp_path: Path) -> None:
    """Answering a request in ephemeral mode loads the store, the app and httpx, but not
    uvicorn or httpx-ws (they belong to serving and streaming), nor the attrs and pydantic
    libraries that Litestar's default plugins import when they are installed (attrs is,
    here; every model of the API is a msgspec Struct)."""
    script = (
        "import anyio, sys, localevents\n"
        "async def main():\n"
        "    async with localevents.ephemeral(database=sys.argv[1]):\n"
        "        async with localevents.get_client() as client:\n"
        "            await client.read_events(limit=1)\n"
        "anyio.run(main)"
    )
    loaded = _loaded_after(
        script, str(tmp_path / "events.duckdb"), heavy=(*HEAVY, "attr", "pydantic")
    )
    assert {"duckdb", "litestar", "httpx"} <= set(loaded)
    assert "uvicorn" not in loaded
    assert "httpx_ws" not in loaded
    assert "attr" not in loaded
    assert "pydantic" not in loaded


CLI_MODULES = ("rich.console", "pygments.lexers", "click")


def test_httpx_loads_its_command_line_client_only_when_it_is_used() -> None:
    """httpx imports its command-line client (rich, pygments, click) with the package;
    after ``import localevents`` it loads when called, and still works."""
    assert _loaded_after("import localevents, httpx", heavy=CLI_MODULES) == []
    script = (
        "import localevents, httpx\n"
        "assert httpx.main.params\n"  # inspecting the command loads it
        "httpx.main(['--help'], standalone_mode=False)"
    )
    assert _loaded_after(script, heavy=CLI_MODULES) == list(CLI_MODULES)
    help_text = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Usage" in help_text
    # httpx imported first: its own client as it was, nothing stands in for it
    script = "import httpx, localevents, sys\nprint(type(httpx.main).__module__)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "click.core"


def test_every_public_error_derives_from_the_root() -> None:
    """Every exported exception is a LocalEventsError, so one except clause catches all."""
    errors = [
        getattr(localevents, name)
        for name in localevents.__all__
        if isinstance(getattr(localevents, name), type)
        and issubclass(getattr(localevents, name), BaseException)
    ]
    assert len(errors) >= 10
    assert all(issubclass(error, LocalEventsError) for error in errors)
    assert issubclass(HTTPStatusError, LocalEventsError)


def test_settings_are_read_from_localevents_variables() -> None:
    """LOCALEVENTS_* variables set every field, with durations and code lists parsed."""
    settings = settings_from_environ(
        {
            "LOCALEVENTS_API_URL": "http://h:1/api",
            "LOCALEVENTS_SERVER_PORT": "4300",
            "LOCALEVENTS_EPHEMERAL": "false",
            "LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES": "404, 429",
            "LOCALEVENTS_EVENTS_MAXIMUM_WEBSOCKET_BACKFILL": "30 minutes",
            "LOCALEVENTS_EVENTS_RETENTION_PERIOD": "7d",
            "OTHER": "ignored",
        }
    )
    assert settings.api_url == "http://h:1/api"
    assert settings.server_port == 4300
    assert settings.ephemeral is False
    assert settings.client_retry_extra_codes == frozenset({404, 429})
    assert settings.events_maximum_websocket_backfill == timedelta(minutes=30)
    assert settings.events_retention_period == timedelta(days=7)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOCALEVENTS_SERVER_PROT": "1"}, "unknown setting LOCALEVENTS_SERVER_PROT"),
        ({"LOCALEVENTS_SERVER_PORT": "http"}, "invalid setting"),
        ({"LOCALEVENTS_SERVER_PORT": "65536"}, "LOCALEVENTS_SERVER_PORT must be a TCP port"),
        ({"LOCALEVENTS_SERVER_PORT": "-1"}, "LOCALEVENTS_SERVER_PORT must be a TCP port"),
        ({"LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES": "4o4"}, "comma-separated integers"),
        ({"LOCALEVENTS_EVENTS_RETENTION_PERIOD": "soon"}, "cannot read 'soon' as a duration"),
        ({"LOCALEVENTS_CLIENT_MAX_RETRIES": "-1"}, "must be >= 0"),
    ],
)
def test_bad_settings_are_clear_errors(environ: dict[str, str], message: str) -> None:
    """A misspelt or malformed setting fails loudly, naming the variable or value."""
    with pytest.raises(ConfigurationError, match=message):
        settings_from_environ(environ)


def test_database_defaults_to_the_home_folder() -> None:
    """Without LOCALEVENTS_DATABASE the events file is $LOCALEVENTS_HOME/events.duckdb."""
    assert Settings(home="/data").database_path == "/data/events.duckdb"
    assert Settings(home="/data", database=":memory:").database_path == ":memory:"


def test_durations_accept_seconds_and_words() -> None:
    """Durations read as seconds or with a unit."""
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("1.5 hours") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(weeks=2)


def test_temporary_settings_restore_the_previous_ones() -> None:
    """temporary_settings applies for the block only, and blocks nest."""
    before = localevents.get_settings()
    with localevents.temporary_settings(server_port=1) as outer:
        assert localevents.get_settings() is outer
        with localevents.temporary_settings(server_port=2):
            assert localevents.get_settings().server_port == 2
        assert localevents.get_settings().server_port == 1
    assert localevents.get_settings() == before
