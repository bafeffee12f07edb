"""A bad ``LOCALEVENTS_*`` variable is one line naming the variable, its value and what it
must be; a misspelt name suggests the setting it is close to."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from localevents import ConfigurationError, temporary_settings
from localevents._settings import settings_from_environ
from tests._servers import clean_environ


def message_for(environ: dict[str, str]) -> str:
    """The message of the error that reading ``environ`` raises."""
    with pytest.raises(ConfigurationError) as caught:
        settings_from_environ(environ)
    return str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param(
            "LOCALEVENTS_EVENTS_MAXIMUM_RELATED_RESOURCES",
            "abc",
            "invalid setting LOCALEVENTS_EVENTS_MAXIMUM_RELATED_RESOURCES='abc': expected an "
            "integer",
            id="int",
        ),
        pytest.param(
            "LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES",
            "lots",
            "invalid setting LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES: cannot read 'lots' as a "
            "size: use bytes or e.g. '32MB', '1GiB'",
            id="size",
        ),
        pytest.param(
            "LOCALEVENTS_DATABASE_THREADS",
            "four",
            "invalid setting LOCALEVENTS_DATABASE_THREADS='four': expected an integer",
            id="optional-int",
        ),
        pytest.param(
            "LOCALEVENTS_CLIENT_RETRY_JITTER_FACTOR",
            "lots",
            "invalid setting LOCALEVENTS_CLIENT_RETRY_JITTER_FACTOR='lots': expected a number",
            id="float",
        ),
        pytest.param(
            "LOCALEVENTS_EPHEMERAL",
            "yes",
            "invalid setting LOCALEVENTS_EPHEMERAL='yes': expected true or false (or 1 or 0)",
            id="bool",
        ),
        pytest.param(
            "LOCALEVENTS_EVENTS_RETENTION_PERIOD",
            "soon",
            "invalid setting LOCALEVENTS_EVENTS_RETENTION_PERIOD: cannot read 'soon' as a "
            "duration: use seconds or e.g. '15 minutes', '7 days'",
            id="duration",
        ),
        pytest.param(
            "LOCALEVENTS_DATABASE_IDLE_CACHE",
            "lots",
            "invalid setting LOCALEVENTS_DATABASE_IDLE_CACHE: cannot read 'lots' as a size: "
            "use bytes or e.g. '32MB', '1GiB'",
            id="size",
        ),
        pytest.param(
            "LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES",
            "4o4",
            "invalid setting LOCALEVENTS_CLIENT_RETRY_EXTRA_CODES: cannot read '4o4' as HTTP "
            "status codes: use comma-separated integers, e.g. '404,429'",
            id="status-codes",
        ),
        pytest.param(
            "LOCALEVENTS_SERVER_ALLOWED_ORIGINS",
            "http://localhost:3000,localhost:8080",
            "invalid setting LOCALEVENTS_SERVER_ALLOWED_ORIGINS: cannot read 'localhost:8080' "
            "as an origin: use comma-separated scheme://host[:port], e.g. "
            "'http://localhost:3000', or '*' for any",
            id="origins",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_it_must_be(
    variable: str, value: str, message: str
) -> None:
    """Every kind of setting says which variable is wrong, what it holds and what it needs,
    in one line (an int used to say only "Expected `int`, got `str` - at `$.…`")."""
    assert message_for({variable: value}) == message


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        pytest.param("LOCALEVENTS_API_URLL", "LOCALEVENTS_API_URL", id="extra-letter"),
        pytest.param("LOCALEVENTS_SERVER_PROT", "LOCALEVENTS_SERVER_PORT", id="swapped"),
        pytest.param(
            "LOCALEVENTS_EVENTS_MAXIMUM_SIZE",
            "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES",
            id="truncated",
        ),
    ],
)
def test_a_misspelt_name_suggests_the_setting_it_is_close_to(
    variable: str, suggestion: str
) -> None:
    assert message_for({variable: "1"}) == (
        f"unknown setting {variable}: did you mean {suggestion}?"
    )


def test_an_unknown_name_close_to_no_setting_is_named_alone() -> None:
    assert message_for({"LOCALEVENTS_COLOR": "1"}) == "unknown setting LOCALEVENTS_COLOR"


def test_the_command_line_prints_the_variable_and_value_in_one_line(tmp_path: Path) -> None:
    """The case from the review: ``localevents query`` with a non-integer size limit."""
    result = subprocess.run(
        [sys.executable, "-m", "localevents", "query"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environ(
            {
                "LOCALEVENTS_HOME": str(tmp_path),
                "LOCALEVENTS_EVENTS_MAXIMUM_RELATED_RESOURCES": "abc",
            }
        ),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "Error: invalid setting LOCALEVENTS_EVENTS_MAXIMUM_RELATED_RESOURCES='abc': expected an "
        "integer"
    )


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("s3cret ", "ends with a space"),
        ("cl\u00e9", "holds 'é' at character 3 of 3"),
        ("s3cret\n", "holds '\\n' at character 7 of 7"),
    ],
)
def test_serve_refuses_a_key_no_client_could_send(tmp_path: Path, key: str, problem: str) -> None:
    """`localevents serve` with an API key that no HTTP header can carry as it is exits 1
    naming the problem, not the key (it served, refusing every client)."""
    result = subprocess.run(
        [sys.executable, "-m", "localevents", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environ({"LOCALEVENTS_HOME": str(tmp_path), "LOCALEVENTS_API_KEY": key}),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"Error: invalid setting: LOCALEVENTS_API_KEY {problem}"), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1, result.stderr
    assert key.strip()[:3] not in result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"events_maximum_related_resources": "big"},
            "invalid setting events_maximum_related_resources='big': expected an integer",
            id="text-for-an-integer",
        ),
        pytest.param(
            {"events_maximum_size_bytes": 3.5},
            "invalid setting events_maximum_size_bytes=3.5: Expected `int`, got `float`",
            id="float-for-an-integer",
        ),
        pytest.param(
            {"events_maxmum_size_bytes": 3},
            "unknown setting 'events_maxmum_size_bytes': did you mean events_maximum_size_bytes?",
            id="misspelt",
        ),
        pytest.param(
            {"events_retention_period": "a week"},
            "invalid setting events_retention_period: cannot read 'a week' as a duration",
            id="unreadable-duration",
        ),
    ],
)
def test_settings_given_in_python_are_checked_as_the_environments_are(
    changes: dict[str, Any], message: str
) -> None:
    """temporary_settings and Settings.replace refuse a misspelt name or a value of the wrong
    type with ConfigurationError (a misspelt name was a TypeError, and a wrong type was
    taken as is, to fail later wherever the setting was used)."""
    with pytest.raises(ConfigurationError) as caught, temporary_settings(**changes):
        pass
    assert str(caught.value).startswith(message)


def test_settings_given_in_python_read_text_and_paths_as_the_environment_does(
    tmp_path: Path,
) -> None:
    """A string is read as its variable would be, and a path is taken for the file."""
    with temporary_settings(
        events_retention_period="7d",
        database_idle_cache="32MB",
        events_maximum_size_bytes="2000",
        client_retry_extra_codes={404},
        database=tmp_path / "events.duckdb",
        home="~/elsewhere",
    ) as settings:
        assert settings.home == str(Path("~/elsewhere").expanduser())
        assert settings.events_retention_period == timedelta(days=7)
        assert settings.database_idle_cache == 32_000_000
        assert settings.events_maximum_size_bytes == 2000
        assert settings.client_retry_extra_codes == frozenset({404})
        assert settings.database_path == str(tmp_path / "events.duckdb")


def test_byte_settings_take_sizes_with_units() -> None:
    """Every setting in bytes reads a size as the idle cache does ('64MiB', '2MB' or bytes);
    '64MiB' for the body limit was refused as not an integer."""
    settings = settings_from_environ(
        {
            "LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES": "64MiB",
            "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES": "2MB",
            "LOCALEVENTS_EVENTS_SUBSCRIBER_QUEUE_BYTES": "1000000",
        }
    )
    assert settings.server_maximum_body_bytes == 64 * 2**20
    assert settings.events_maximum_size_bytes == 2_000_000
    assert settings.events_subscriber_queue_bytes == 1_000_000
