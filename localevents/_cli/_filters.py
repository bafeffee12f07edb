"""The filter options shared by ``tail``, ``query`` and ``count``, and the EventFilter they make.

Repeating an option ORs its values; different options AND. A resource or related value with
a wildcard (``*``, ``?``) or a leading ``!`` is a label pattern on the resource id (SPEC D4);
without one it is an exact id.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from localevents._cli._params import parse_instant, parse_labels
from localevents._cli._render import shown_instant
from localevents.events._filters import (
    DEFAULT_LOOKBACK,
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventRelatedFilter,
    EventResourceFilter,
    EventTextFilter,
    LabelSpec,
    default_since,
)
from localevents.events._rules import RESOURCE_ID
from localevents.events._time import ago, now_utc

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime, timedelta

    from localevents.events._filters import EventOrder

__all__ = ("Criteria", "filter_options")

_F = TypeVar("_F", bound="Callable[..., Any]")

_MATCHING = [
    click.option("-e", "--event", "events", multiple=True, metavar="NAME", help="Event name."),
    click.option(
        "-p", "--event-prefix", "prefixes", multiple=True, metavar="PREFIX", help="Name prefix."
    ),
    click.option(
        "-r",
        "--resource",
        "resources",
        multiple=True,
        metavar="ID",
        help="Resource id, or a glob like 'acme.*'.",
    ),
    click.option(
        "-l",
        "--label",
        "labels",
        multiple=True,
        callback=parse_labels,
        metavar="KEY=PATTERN",
        help="Resource label (a glob; a leading ! negates).",
    ),
    click.option("--related", multiple=True, metavar="ID", help="Related resource id, or a glob."),
    click.option(
        "--related-role", "related_roles", multiple=True, metavar="ROLE", help="Related role."
    ),
    click.option(
        "-t", "--text", metavar="QUERY", help='Text search: words, -excluded, "a phrase".'
    ),
]


def _window(until_default: str) -> list[Callable[[_F], _F]]:
    return [
        click.option(
            "--since",
            callback=parse_instant,
            metavar="TIME",
            help="From: ISO 8601 (2026-01-05, 2026-01-05T10:00; UTC unless it says), or "
            "ago with a unit (90s, 15m, 2h, 3d). A bare number (2026) is refused.",
        ),
        click.option(
            "--until",
            callback=parse_instant,
            metavar="TIME",
            help=f"Up to, in the same forms ({until_default}).",
        ),
    ]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Criteria:
    """What the filter options asked for."""

    events: Sequence[str] = ()
    prefixes: Sequence[str] = ()
    resources: Sequence[str] = ()
    labels: Sequence[tuple[str, str]] = ()
    related: Sequence[str] = ()
    related_roles: Sequence[str] = ()
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_filter(
        self, *, order: EventOrder = "DESC", since: datetime | None = None
    ) -> EventFilter:
        """The EventFilter, checked here as the server would check it (bad values exit 2).

        ``since`` is the default lower bound when ``--since`` was not given; without it the
        window is the server's default (the last 180 days), ending at ``--until`` when that
        is earlier than now.
        """
        lower = self.since or since or min(default_since(), self.lookback(DEFAULT_LOOKBACK))
        if self.until is not None and lower > self.until:
            raise click.BadParameter(
                f"--since must not be after --until ({shown_instant(lower)} is after "
                f"{shown_instant(self.until)})"
            )
        event_filter = EventFilter(
            occurred=EventOccurredFilter(since=lower, until=self.until),
            event=self._names(),
            resource=self._resource(),
            related=self._related(),
            text=EventTextFilter(query=self.text) if self.text else None,
            order=order,
        )
        try:  # a round trip applies every constraint a decoder would (e.g. text length)
            return msgspec.json.decode(msgspec.json.encode(event_filter), type=EventFilter)
        except msgspec.ValidationError as exc:
            raise click.BadParameter(f"invalid filter: {exc}") from exc

    def lookback(self, span: timedelta) -> datetime:
        """The start of a default window of ``span`` ending now, or at ``--until`` when
        that is earlier (the earliest instant when ``span`` reaches before it)."""
        now = now_utc()
        return ago(span, now if self.until is None else min(now, self.until))

    def _names(self) -> EventNameFilter | None:
        if not (self.events or self.prefixes):
            return None
        return EventNameFilter(name=list(self.events) or None, prefix=list(self.prefixes) or None)

    def _resource(self) -> EventResourceFilter | None:
        ids, labels = _ids_or_patterns(self.resources)
        for key, pattern in self.labels:
            patterns = labels.setdefault(key, [])
            assert isinstance(patterns, list)
            patterns.append(pattern)
        if not (ids or labels):
            return None
        return EventResourceFilter(id=ids, labels=labels or None)

    def _related(self) -> EventRelatedFilter | None:
        ids, labels = _ids_or_patterns(self.related)
        if not (ids or labels or self.related_roles):
            return None
        roles = list(self.related_roles) or None
        return EventRelatedFilter(id=ids, role=roles, labels=labels or None)


def _is_pattern(value: str) -> bool:
    return "*" in value or "?" in value or value.startswith("!")


def _ids_or_patterns(values: Sequence[str]) -> tuple[list[str] | None, LabelSpec]:
    """Exact ids, or (if any value is a glob) every value as a pattern on the resource id."""
    if not values:
        return None, {}
    if any(_is_pattern(value) for value in values):
        return None, {RESOURCE_ID: list(values)}
    return list(values), {}


def filter_options(*, window: bool, until_default: str = "default now") -> Callable[[_F], _F]:
    """Add the filter options (and ``--since``/``--until`` with ``window``, the latter's
    help ending with ``until_default``) to a command, which receives them as one
    ``criteria`` argument."""
    options = _MATCHING + (_window(until_default) if window else [])
    names = [field.name for field in dataclasses.fields(Criteria)]

    def decorate(command: _F) -> _F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            found = {name: kwargs.pop(name) for name in names if name in kwargs}
            return command(*args, criteria=Criteria(**found), **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate
