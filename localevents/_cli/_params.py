"""Reading command-line values: ``key=value`` labels, JSON objects, instants and related
resources. Each is a click callback raising :class:`click.BadParameter` naming what is
wrong (exit code 2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import click

from localevents._exceptions import ConfigurationError
from localevents._settings import parse_duration
from localevents.events._rules import RESOURCE_ID, RESOURCE_ROLE
from localevents.events._time import now_utc

__all__ = ("parse_instant", "parse_json_object", "parse_labels", "parse_related")

_BARE_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
"""A time given as a number without a unit (refused: a year, or seconds ago?)."""


def parse_labels(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` pairs: the key is everything before the first ``=`` and is not empty."""
    return tuple(_label(value) for value in values)


def _label(value: str) -> tuple[str, str]:
    key, equals, text = value.partition("=")
    if not equals or not key:
        raise click.BadParameter(f"{value!r} is not KEY=VALUE (e.g. -l env=prod)")
    return key, text


def parse_json_object(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, Any] | None:
    """A JSON object (``{...}``) given as text."""
    return None if value is None else _json_object(value)


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{value!r} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"{value!r} is not a JSON object ({{...}})")
    return parsed


def parse_related(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[dict[str, str], ...]:
    """Related resources to emit: ``ROLE=ID`` each, or a JSON object of all its labels."""
    return tuple(_related(value) for value in values)


def _related(value: str) -> dict[str, str]:
    if value.lstrip().startswith("{"):
        found = _json_object(value)
        if not all(isinstance(label, str) for label in found.values()):
            raise click.BadParameter(f"{value!r}: every label value must be a string")
        return found
    role, equals, resource_id = value.partition("=")
    if not equals or not role or not resource_id:
        raise click.BadParameter(f"{value!r} is not ROLE=ID (e.g. --related tag=acme.tag.vip)")
    return {RESOURCE_ID: resource_id, RESOURCE_ROLE: role}


def parse_instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A moment: ISO 8601 (without an offset it is UTC; a date is its midnight), a
    duration ago with its unit (``90s``, ``15m``, ``2h``, ``7d``, ``1.5 hours``), or ``now``.

    A bare number is refused: ``2026`` is as likely a year as seconds ago, and reading it
    as either would silently answer a question nobody asked."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() == "now":
        return now_utc()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if _BARE_NUMBER.match(text):
        year = f"{text}-01-01" if len(text) == 4 and text.isdigit() else "2026-01-05"
        raise click.BadParameter(
            f"{value!r} is a bare number: write a date ({year}) or a duration ago with its "
            f"unit ({text}s, 15m, 2h, 3d)"
        )
    try:
        return now_utc() - parse_duration(text)
    except ConfigurationError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-01-05T10:00:00Z) nor a "
            "duration ago (15m, 2h, 7d)"
        ) from None
