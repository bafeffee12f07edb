"""Reading command-line values: ``key=value`` labels, JSON objects, instants, related
resources and finite numbers. Each is a click callback (or type) raising
:class:`click.BadParameter` naming what is wrong (exit code 2)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click

from localevents._exceptions import ConfigurationError
from localevents._settings import parse_seconds
from localevents.events._rules import RESOURCE_ID, RESOURCE_ROLE
from localevents.events._time import EARLIEST, now_utc

__all__ = (
    "FiniteRange",
    "parse_instant",
    "parse_json_object",
    "parse_labels",
    "parse_related",
)


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
        parsed = json.loads(value, parse_constant=_not_json, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{value!r} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"{value!r} is not a JSON object ({{...}})")
    return parsed


def _not_json(constant: str) -> NoReturn:
    """Refuse the NaN, Infinity and -Infinity that Python's JSON reader accepts: they are
    not JSON, and would be stored as null."""
    raise click.BadParameter(
        f"NaN and Infinity are not JSON (found {constant}): write a number, a string or null"
    )


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent, refused when past a double's range
    (``1e999``): it would be Infinity, stored as null."""
    number = float(text)
    if math.isinf(number):
        raise click.BadParameter(f"the number {text} is out of range (at most about 1.8e308)")
    return number


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
    moment = _iso_instant(value, text)
    if moment is not None:
        return moment
    if _BARE_NUMBER.match(text):
        year = f"{text}-01-01" if len(text) == 4 and text.isdigit() else "2026-01-05"
        raise click.BadParameter(
            f"{value!r} is a bare number: write a date ({year}) or a duration ago with its "
            f"unit ({text}s, 15m, 2h, 3d)"
        )
    return _ago(value, text)


def _iso_instant(value: str, text: str) -> datetime | None:
    """``text`` as an ISO 8601 instant (UTC without an offset), or None if it is not one;
    one whose offset puts it outside years 1-9999 in UTC is refused."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(
            f"{value!r} is outside years 1-9999 in UTC (0001-01-01T00:00:00Z to "
            "9999-12-31T23:59:59Z)"
        ) from None
    return moment


def _ago(value: str, text: str) -> datetime:
    """``text`` as a duration ago; one that reaches before year 1 is refused, saying how
    far back one may reach."""
    try:
        seconds = parse_seconds(text)
    except ConfigurationError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-01-05T10:00:00Z) nor a "
            "duration ago (15m, 2h, 7d)"
        ) from None
    now = now_utc()
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        raise click.BadParameter(
            f"{value!r} ago is before year 1: a duration ago reaches back at most "
            f"{(now - EARLIEST).days}d (or give a date, e.g. 0001-01-01)"
        ) from None


class FiniteRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan``, which compares false with
    both bounds and so passes click's own check."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, checked against the range; ``nan`` is refused."""
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number
