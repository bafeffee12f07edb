"""A bad ``LOCALEVENTS_*`` variable is one line naming the variable, its value and what it
must be; a misspelt name suggests the setting it is close to."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from localevents import ConfigurationError
from localevents._settings import settings_from_environ
from tests._servers import clean_environ

if TYPE_CHECKING:
    from pathlib import Path


def message_for(environ: dict[str, str]) -> str:
    """The message of the error that reading ``environ`` raises."""
    with pytest.raises(ConfigurationError) as caught:
        settings_from_environ(environ)
    return str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param(
            "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES",
            "abc",
            "invalid setting LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES='abc': expected an integer",
            id="int",
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
                "LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES": "abc",
            }
        ),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "Error: invalid setting LOCALEVENTS_EVENTS_MAXIMUM_SIZE_BYTES='abc': expected an integer"
    )
