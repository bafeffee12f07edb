"""The public surface: what `import localevents` offers, and the settings it reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

import localevents
from localevents import ConfigurationError, HTTPStatusError, LocalEventsError, Settings
from localevents._settings import parse_duration, settings_from_environ


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every name in it exists (the export list cannot drift)."""
    assert list(localevents.__all__) == sorted(localevents.__all__)
    for name in localevents.__all__:
        assert hasattr(localevents, name), name


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
        ({"LOCALEVENTS_SERVER_PORT": "0"}, "LOCALEVENTS_SERVER_PORT must be > 0"),
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
