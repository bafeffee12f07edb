"""EventFilter: the query language of the protocol, with an in-memory ``includes``.

Semantics follow SPEC B §2 as amended by Part A: top-level sub-filters are ANDed; a list of
``related`` / ``any_resource`` filters is ANDed; inside one criterion the values are ORed;
an empty list of ids, names, prefixes or roles means "no constraint", while an empty list of
label patterns matches nothing. Storage translates the same objects to SQL
(``localevents.storage``); the two must agree on every event, and the tests hold them to it.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, TypeVar

import msgspec

from localevents.events._patterns import compile_pattern
from localevents.events._rules import RESOURCE_ROLE
from localevents.events._schemas import AwareDatetime
from localevents.events._text import MAX_QUERY_LENGTH, TextQuery, parse_text_query
from localevents.events._time import now_utc

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from localevents.events._schemas import AnyEvent, Resource

__all__ = (
    "DEFAULT_LOOKBACK",
    "EventAnyResourceFilter",
    "EventFilter",
    "EventIDFilter",
    "EventNameFilter",
    "EventOccurredFilter",
    "EventOrder",
    "EventRelatedFilter",
    "EventResourceFilter",
    "EventTextFilter",
    "LabelSpec",
    "default_since",
    "fold_case",
    "label_matches",
    "search_text",
)

EventOrder = Literal["DESC", "ASC"]
LabelSpec = dict[str, str | list[str]]
"""Label name -> one pattern or a list of patterns (ORed); every named label must match."""

DEFAULT_LOOKBACK = timedelta(days=180)


def default_since() -> datetime:
    """Midnight UTC today, 180 days ago: the default lower bound of a filter."""
    midnight = now_utc().replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - DEFAULT_LOOKBACK


class _Filter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every filter object: unknown keys are an error, never ignored."""


def _patterns_of(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def label_matches(
    labels: Mapping[str, str], spec: LabelSpec | None, role: str | None = None
) -> bool:
    """Whether a resource's labels satisfy a label specification (D4).

    ``role`` is given for related / any-resource matching: there the role label is compared
    by exact membership (the primary resource's role is ``""``).
    """
    if not spec:
        return True
    for label, value in spec.items():
        patterns = _patterns_of(value)
        if role is not None and label == RESOURCE_ROLE:
            if role not in patterns:
                return False
            continue
        found = labels.get(label)
        if not any(compile_pattern(p).matches(found) for p in patterns):
            return False
    return True


class EventOccurredFilter(_Filter):
    """``since <= occurred <= until``, both inclusive; ``until`` unset means "up to now"
    for queries and "no upper bound" for live subscriptions (D7)."""

    since: AwareDatetime = msgspec.field(default_factory=default_since)
    until: AwareDatetime | None = None

    def includes(self, event: AnyEvent, *, live: bool = False) -> bool:
        """Whether ``event.occurred`` lies in the window."""
        if event.occurred < self.since:
            return False
        if self.until is None:
            return live or event.occurred <= now_utc()
        return event.occurred <= self.until


class EventNameFilter(_Filter):
    """Event names: literal prefixes, exact names, and their exclusions (ANDed)."""

    prefix: list[str] | None = None
    exclude_prefix: list[str] | None = None
    name: list[str] | None = None
    exclude_name: list[str] | None = None

    def includes(self, event: AnyEvent) -> bool:
        """Whether the event's name passes every given criterion."""
        name = event.event
        if self.prefix and not name.startswith(tuple(self.prefix)):
            return False
        if self.exclude_prefix and name.startswith(tuple(self.exclude_prefix)):
            return False
        if self.name and name not in self.name:
            return False
        return not (self.exclude_name and name in self.exclude_name)


class EventResourceFilter(_Filter):
    """The primary resource: id, literal id prefix, labels; ``distinct`` keeps one event per
    resource id (the first in the requested order) in stored queries."""

    id: list[str] | None = None
    id_prefix: list[str] | None = None
    labels: LabelSpec | None = None
    distinct: bool = False

    def includes(self, event: AnyEvent) -> bool:
        """Whether the primary resource passes every given criterion."""
        resource = event.resource
        if self.id and resource.id not in self.id:
            return False
        if self.id_prefix and not resource.id.startswith(tuple(self.id_prefix)):
            return False
        return label_matches(resource, self.labels)


class EventRelatedFilter(_Filter):
    """Related resources: every given criterion must hold on one and the same resource."""

    id: list[str] | None = None
    role: list[str] | None = None
    resources_in_roles: list[tuple[str, str]] | None = None
    labels: LabelSpec | None = None

    @property
    def is_empty(self) -> bool:
        """An empty related filter constrains nothing (events without related match too)."""
        return not (self.id or self.role or self.resources_in_roles or self.labels)

    def matches_resource(self, resource: Resource, role: str) -> bool:
        """Whether one related resource satisfies every criterion."""
        if self.id and resource.id not in self.id:
            return False
        if self.role and role not in self.role:
            return False
        if self.resources_in_roles and (resource.id, role) not in {
            (rid, rrole) for rid, rrole in self.resources_in_roles
        }:
            return False
        return label_matches(resource, self.labels, role)

    def includes(self, event: AnyEvent) -> bool:
        """Whether some related resource of the event satisfies every criterion."""
        if self.is_empty:
            return True
        return any(self.matches_resource(r, r.role) for r in event.related)


class EventAnyResourceFilter(_Filter):
    """Any involved resource (primary, role ``""``, or related) satisfying every criterion."""

    id: list[str] | None = None
    id_prefix: list[str] | None = None
    labels: LabelSpec | None = None

    @property
    def is_empty(self) -> bool:
        """An empty filter constrains nothing."""
        return not (self.id or self.id_prefix or self.labels)

    def matches_resource(self, resource: Resource, role: str) -> bool:
        """Whether one involved resource satisfies every criterion."""
        if self.id and resource.id not in self.id:
            return False
        if self.id_prefix and not resource.id.startswith(tuple(self.id_prefix)):
            return False
        return label_matches(resource, self.labels, role)

    def includes(self, event: AnyEvent) -> bool:
        """Whether some involved resource satisfies every criterion."""
        if self.is_empty:
            return True
        if self.matches_resource(event.resource, ""):
            return True
        return any(self.matches_resource(r, r.role) for r in event.related)


class EventIDFilter(_Filter):
    """Event ids; an empty or missing list is no constraint."""

    id: list[uuid.UUID] | None = None

    def includes(self, event: AnyEvent) -> bool:
        """Whether the event's id is listed (or no ids are given)."""
        return not self.id or event.id in self.id


def fold_case(text: str) -> str:
    """Text search's case folding: the same in Python and in SQL (D6, and see
    ``localevents.storage._sql.FOLDED_SEARCH_TEXT_SQL``).

    ``str.lower`` and DuckDB's ``lower`` disagree on two letters: Python lowers a word-final
    capital sigma to the final form U+03C2 where DuckDB writes U+03C3, and DuckDB drops the
    dot of U+0130. Folding U+03C2 to U+03C3 (one letter, two spellings) makes both agree.
    """
    return text.lower().replace("\u03c2", "\u03c3")


@functools.lru_cache(maxsize=1024)
def _parsed(query: str) -> TextQuery:
    return parse_text_query(query)


@functools.lru_cache(maxsize=1024)
def _folded(query: str) -> TextQuery:
    parsed = parse_text_query(query)
    return TextQuery(
        include=tuple(fold_case(term) for term in parsed.include),
        exclude=tuple(fold_case(term) for term in parsed.exclude),
        required=tuple(fold_case(term) for term in parsed.required),
    )


def search_text(event: AnyEvent, payload_json: str | None = None) -> str:
    """The text that text search looks in (D6): the event name, every label value of every
    involved resource, and the payload's compact JSON, joined by single spaces."""
    if payload_json is None:
        payload_json = msgspec.json.encode(event.payload).decode()
    parts = [event.event, *event.resource.values()]
    for related in event.related:
        parts.extend(related.values())
    parts.append(payload_json)
    return " ".join(parts)


class EventTextFilter(_Filter):
    """Case-insensitive substring search; see ``localevents.events._text`` for the syntax."""

    query: Annotated[str, msgspec.Meta(max_length=MAX_QUERY_LENGTH)]

    @property
    def parsed(self) -> TextQuery:
        """The query split into include / exclude / required terms."""
        return _parsed(self.query)

    @property
    def folded(self) -> TextQuery:
        """``parsed`` with every term case-folded by :func:`fold_case`."""
        return _folded(self.query)

    def includes(self, event: AnyEvent) -> bool:
        """Whether the event's searchable text satisfies the query."""
        folded = self.folded
        return folded.is_empty or folded.matches(fold_case(search_text(event)))


_T = TypeVar("_T")


def _as_list(value: _T | list[_T] | None) -> list[_T]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class EventFilter(_Filter):
    """Which events a query, a count or a subscription is about."""

    occurred: EventOccurredFilter = msgspec.field(default_factory=EventOccurredFilter)
    event: EventNameFilter | None = None
    resource: EventResourceFilter | None = None
    related: EventRelatedFilter | list[EventRelatedFilter] | None = None
    any_resource: EventAnyResourceFilter | list[EventAnyResourceFilter] | None = None
    id: EventIDFilter = msgspec.field(default_factory=EventIDFilter)
    text: EventTextFilter | None = None
    order: EventOrder = "DESC"

    @property
    def related_filters(self) -> list[EventRelatedFilter]:
        """``related`` as a list (each element ANDed)."""
        return _as_list(self.related)

    @property
    def any_resource_filters(self) -> list[EventAnyResourceFilter]:
        """``any_resource`` as a list (each element ANDed)."""
        return _as_list(self.any_resource)

    def includes(self, event: AnyEvent, *, live: bool = False) -> bool:
        """Whether the event passes every sub-filter (``distinct`` aside, which only has
        meaning over a set of stored events). ``live`` drops the implicit "until now"."""
        if not self.occurred.includes(event, live=live):
            return False
        checks: Iterable[_SubFilter | None] = (
            self.event,
            self.resource,
            *self.related_filters,
            *self.any_resource_filters,
            self.id,
            self.text,
        )
        return all(check is None or check.includes(event) for check in checks)


class _SubFilter(Protocol):
    def includes(self, event: AnyEvent) -> bool: ...
