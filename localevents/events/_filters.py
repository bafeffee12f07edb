"""EventFilter: the query language of the protocol, with an in-memory ``includes``.

Semantics follow SPEC B §2 as amended by Part A: top-level sub-filters are ANDed; a list of
``related`` / ``any_resource`` filters is ANDed; inside one criterion the values are ORed;
an empty list of ids, names, prefixes or roles means "no constraint", while an empty list of
label patterns matches nothing. Storage translates the same objects to SQL
(``localevents.storage``); the two must agree on every event, and the tests hold them to it.

Limits (SPEC D13): a filter's size is bounded where it is decoded, the same for every
route that takes one (queries, counts, exports, subscriptions): at most
:data:`MAXIMUM_FILTER_VALUES` values in one list, :data:`MAXIMUM_RESOURCE_FILTERS` entries in
a ``related`` or ``any_resource`` list, and :data:`MAXIMUM_FILTER_TOTAL` values in all. A
filter over a limit is refused with the field and the limit (422 over HTTP, 1002 on a
subscription): unbounded, 5,000 label patterns held up every live subscriber for seconds,
and 100,000 of them ran a query out of memory.

In memory, a filter tests sets, not lists: each sub-filter compiles its values (sets,
tuples of prefixes, :class:`~localevents.events._patterns.PatternSet` for each label) on its
first match and keeps them, so a live subscription compiles its patterns once, however many
events it is tested on. A filter is therefore not to be changed in place once it has
matched: build a changed copy (``msgspec.structs.replace``), as every caller here does.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, TypeVar

import msgspec

from localevents._exceptions import InvalidRequestError
from localevents.events._patterns import PatternSet, compile_patterns
from localevents.events._rules import RESOURCE_ROLE
from localevents.events._schemas import AwareDatetime
from localevents.events._text import MAX_QUERY_LENGTH, TextQuery, parse_text_query
from localevents.events._time import now_utc

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sized

    from localevents.events._schemas import AnyEvent, Resource

__all__ = (
    "DEFAULT_LOOKBACK",
    "MAXIMUM_FILTER_TOTAL",
    "MAXIMUM_FILTER_VALUES",
    "MAXIMUM_RESOURCE_FILTERS",
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
    "LabelTest",
    "compile_labels",
    "default_since",
    "fold_case",
    "search_text",
)

EventOrder = Literal["DESC", "ASC"]
LabelSpec = dict[str, str | list[str]]
"""Label name -> one pattern or a list of patterns (ORed); every named label must match."""

DEFAULT_LOOKBACK = timedelta(days=180)

MAXIMUM_FILTER_VALUES = 1000
"""Values one list of a filter may hold: ids, names, prefixes, roles, ``[id, role]`` pairs,
the patterns of one label; and labels one label specification may name. Prefect's UI and
clients send a handful; fetching known events by id may take hundreds (as many as a page
holds: ``limit`` is at most 1000 too)."""

MAXIMUM_RESOURCE_FILTERS = 20
"""Filters a ``related`` or ``any_resource`` list may hold (each one ANDed: an event must
involve a resource matching each). Real filters hold one or two; in SQL every one adds a
pass over the related resources, and 500 of them failed DuckDB's expression depth limit."""

MAXIMUM_FILTER_TOTAL = 2000
"""Values one whole filter may hold, summed over every list above (a label given one
pattern, or none, counts as one). Bounds the work a filter costs where the per-list limits
do not: each value is a test of every event on the live path and a condition in SQL."""

_Values = Annotated[list[str], msgspec.Meta(max_length=MAXIMUM_FILTER_VALUES)]
_Patterns = str | Annotated[list[str], msgspec.Meta(max_length=MAXIMUM_FILTER_VALUES)]
_Labels = Annotated[dict[str, _Patterns], msgspec.Meta(max_length=MAXIMUM_FILTER_VALUES)]
_ResourcePairs = Annotated[list[tuple[str, str]], msgspec.Meta(max_length=MAXIMUM_FILTER_VALUES)]
_EventIds = Annotated[list[uuid.UUID], msgspec.Meta(max_length=MAXIMUM_FILTER_VALUES)]


def default_since() -> datetime:
    """Midnight UTC today, 180 days ago: the default lower bound of a filter."""
    midnight = now_utc().replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - DEFAULT_LOOKBACK


class _Filter(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, dict=True
):
    """Base of every filter object: unknown keys are an error, never ignored. (``dict``:
    room for what a filter compiles on its first match; see the module docstring.)"""


def _patterns_of(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


class LabelTest(msgspec.Struct, frozen=True, gc=False):
    """A label specification compiled: each label's patterns as one set, and the roles
    that ``prefect.resource.role`` admits by exact membership where it is so compared
    (``None``: not compared so)."""

    patterns: tuple[tuple[str, PatternSet], ...]
    roles: frozenset[str] | None = None

    def matches(self, labels: Mapping[str, str], role: str = "") -> bool:
        """Whether a resource's labels (and ``role``, its role) satisfy every label."""
        if self.roles is not None and role not in self.roles:
            return False
        return all(patterns.matches(labels.get(label)) for label, patterns in self.patterns)


def compile_labels(spec: LabelSpec | None, *, exact_role: bool = False) -> LabelTest:
    """Compile a label specification (D4); ``exact_role`` for related / any-resource
    matching, where the role label is compared by exact membership."""
    roles = None
    patterns = []
    for label, value in (spec or {}).items():
        if exact_role and label == RESOURCE_ROLE:
            roles = frozenset(_patterns_of(value))
        else:
            patterns.append((label, compile_patterns(_patterns_of(value))))
    return LabelTest(tuple(patterns), roles)


def _label_count(spec: LabelSpec | None) -> int:
    """How many values ``spec`` counts for :data:`MAXIMUM_FILTER_TOTAL`."""
    return sum(max(1, len(_patterns_of(value))) for value in (spec or {}).values())


def _count(*lists: Sized | None) -> int:
    return sum(len(values) for values in lists if values)


class _ResourceTests(msgspec.Struct, frozen=True, gc=False):
    """What a resource criterion tests, compiled: its ids as a set (``None``: any), its id
    prefixes (``None``: any) and its labels."""

    ids: frozenset[str] | None
    prefixes: tuple[str, ...] | None
    labels: LabelTest

    @classmethod
    def of(
        cls,
        ids: list[str] | None,
        prefixes: list[str] | None,
        labels: LabelSpec | None,
        *,
        exact_role: bool,
    ) -> _ResourceTests:
        """Compile a criterion's values (empty lists are no constraint)."""
        return cls(
            frozenset(ids) if ids else None,
            tuple(prefixes) if prefixes else None,
            compile_labels(labels, exact_role=exact_role),
        )

    def matches(self, resource: Resource, role: str) -> bool:
        """Whether one resource (in ``role``) passes every criterion."""
        if self.ids is not None and resource.id not in self.ids:
            return False
        if self.prefixes is not None and not resource.id.startswith(self.prefixes):
            return False
        return self.labels.matches(resource, role)


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

    prefix: _Values | None = None
    exclude_prefix: _Values | None = None
    name: _Values | None = None
    exclude_name: _Values | None = None

    @property
    def value_count(self) -> int:
        """How many values the filter holds (see :data:`MAXIMUM_FILTER_TOTAL`)."""
        return _count(self.prefix, self.exclude_prefix, self.name, self.exclude_name)

    @functools.cached_property
    def _sets(self) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str], frozenset[str]]:
        return (
            tuple(self.prefix or ()),
            tuple(self.exclude_prefix or ()),
            frozenset(self.name or ()),
            frozenset(self.exclude_name or ()),
        )

    def includes(self, event: AnyEvent) -> bool:
        """Whether the event's name passes every given criterion."""
        name = event.event
        prefix, exclude_prefix, names, exclude_names = self._sets
        if prefix and not name.startswith(prefix):
            return False
        if exclude_prefix and name.startswith(exclude_prefix):
            return False
        if names and name not in names:
            return False
        return name not in exclude_names


class EventResourceFilter(_Filter):
    """The primary resource: id, literal id prefix, labels; ``distinct`` keeps one event per
    resource id (the first in the requested order) in stored queries."""

    id: _Values | None = None
    id_prefix: _Values | None = None
    labels: _Labels | None = None
    distinct: bool = False

    @property
    def value_count(self) -> int:
        """How many values the filter holds (see :data:`MAXIMUM_FILTER_TOTAL`)."""
        return _count(self.id, self.id_prefix) + _label_count(self.labels)

    @functools.cached_property
    def _tests(self) -> _ResourceTests:
        return _ResourceTests.of(self.id, self.id_prefix, self.labels, exact_role=False)

    def includes(self, event: AnyEvent) -> bool:
        """Whether the primary resource passes every given criterion."""
        return self._tests.matches(event.resource, "")


class EventRelatedFilter(_Filter):
    """Related resources: every given criterion must hold on one and the same resource."""

    id: _Values | None = None
    role: _Values | None = None
    resources_in_roles: _ResourcePairs | None = None
    labels: _Labels | None = None

    @property
    def is_empty(self) -> bool:
        """An empty related filter constrains nothing (events without related match too)."""
        return not (self.id or self.role or self.resources_in_roles or self.labels)

    @property
    def value_count(self) -> int:
        """How many values the filter holds (see :data:`MAXIMUM_FILTER_TOTAL`)."""
        return _count(self.id, self.role, self.resources_in_roles) + _label_count(self.labels)

    @functools.cached_property
    def _tests(self) -> tuple[_ResourceTests, frozenset[str], frozenset[tuple[str, str]]]:
        resource = _ResourceTests.of(self.id, None, self.labels, exact_role=True)
        pairs = frozenset((rid, role) for rid, role in self.resources_in_roles or ())
        return resource, frozenset(self.role or ()), pairs

    def matches_resource(self, resource: Resource, role: str) -> bool:
        """Whether one related resource satisfies every criterion."""
        tests, roles, pairs = self._tests
        if roles and role not in roles:
            return False
        if pairs and (resource.id, role) not in pairs:
            return False
        return tests.matches(resource, role)

    def includes(self, event: AnyEvent) -> bool:
        """Whether some related resource of the event satisfies every criterion."""
        if self.is_empty:
            return True
        return any(self.matches_resource(r, r.role) for r in event.related)


class EventAnyResourceFilter(_Filter):
    """Any involved resource (primary, role ``""``, or related) satisfying every criterion."""

    id: _Values | None = None
    id_prefix: _Values | None = None
    labels: _Labels | None = None

    @property
    def is_empty(self) -> bool:
        """An empty filter constrains nothing."""
        return not (self.id or self.id_prefix or self.labels)

    @property
    def value_count(self) -> int:
        """How many values the filter holds (see :data:`MAXIMUM_FILTER_TOTAL`)."""
        return _count(self.id, self.id_prefix) + _label_count(self.labels)

    @functools.cached_property
    def _tests(self) -> _ResourceTests:
        return _ResourceTests.of(self.id, self.id_prefix, self.labels, exact_role=True)

    def matches_resource(self, resource: Resource, role: str) -> bool:
        """Whether one involved resource satisfies every criterion."""
        return self._tests.matches(resource, role)

    def includes(self, event: AnyEvent) -> bool:
        """Whether some involved resource satisfies every criterion."""
        if self.is_empty:
            return True
        if self.matches_resource(event.resource, ""):
            return True
        return any(self.matches_resource(r, r.role) for r in event.related)


class EventIDFilter(_Filter):
    """Event ids; an empty or missing list is no constraint."""

    id: _EventIds | None = None

    @functools.cached_property
    def _ids(self) -> frozenset[uuid.UUID]:
        return frozenset(self.id or ())

    def includes(self, event: AnyEvent) -> bool:
        """Whether the event's id is listed (or no ids are given)."""
        return not self.id or event.id in self._ids


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
_Several = Annotated[list[_T], msgspec.Meta(max_length=MAXIMUM_RESOURCE_FILTERS)]


def _as_list(value: _T | list[_T] | None) -> list[_T]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class EventFilter(_Filter):
    """Which events a query, a count or a subscription is about."""

    occurred: EventOccurredFilter = msgspec.field(default_factory=EventOccurredFilter)
    event: EventNameFilter | None = None
    resource: EventResourceFilter | None = None
    related: EventRelatedFilter | _Several[EventRelatedFilter] | None = None
    any_resource: EventAnyResourceFilter | _Several[EventAnyResourceFilter] | None = None
    id: EventIDFilter = msgspec.field(default_factory=EventIDFilter)
    text: EventTextFilter | None = None
    order: EventOrder = "DESC"

    def __post_init__(self) -> None:
        total = self.value_count
        if total > MAXIMUM_FILTER_TOTAL:
            raise InvalidRequestError(  # short: a close reason holds 123 bytes
                f"Expected at most {MAXIMUM_FILTER_TOTAL} values in all (ids, names, "
                f"prefixes, roles, label patterns), got {total}"
            )

    @property
    def value_count(self) -> int:
        """How many values the filter holds in all (see :data:`MAXIMUM_FILTER_TOTAL`)."""
        parts: Iterable[_Counted | None] = (
            self.event,
            self.resource,
            *self.related_filters,
            *self.any_resource_filters,
        )
        return _count(self.id.id) + sum(part.value_count for part in parts if part is not None)

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


class _Counted(Protocol):
    @property
    def value_count(self) -> int: ...
