"""EventFilter -> SQL over the ``events`` table, with the semantics of ``EventFilter.includes``.

Every value travels as a bound parameter; only column names and operators are spliced in.
A resource criterion is written once against an accessor (:class:`_Subject`), so the primary
resource and each related resource share one translation: that is what keeps the stored
path and the in-memory path in agreement (D4, D5, D6).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from localevents.events._filters import EventAnyResourceFilter, EventRelatedFilter, LabelSpec
from localevents.events._patterns import compile_pattern, split_patterns
from localevents.events._rules import RESOURCE_ID, RESOURCE_ROLE
from localevents.events._time import now_utc
from localevents.storage._label_sets import RELATED_SETS, RESOURCE_SETS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from localevents.events._filters import (
        EventFilter,
        EventNameFilter,
        EventResourceFilter,
        EventTextFilter,
    )
    from localevents.events._text import TextQuery
    from localevents.storage._label_sets import KeyTables, LabelSetTable

__all__ = (
    "FOLDED_SEARCH_TEXT_SQL",
    "SEARCH_TEXT_SQL",
    "Where",
    "build_where",
    "label_path",
    "set_where",
    "sql_string",
    "tests_beyond_label_sets",
)

SEARCH_TEXT_SQL = (
    "array_to_string(list_concat([event], json_extract_string(resource, '$.*'), "
    "json_extract_string(related, '$[*].*'), [payload::VARCHAR]), ' ')"
)
"""The searchable text of D6, exactly as ``localevents.events._filters.search_text`` builds it."""


def _folded(text_sql: str) -> str:
    return f"replace(lower(replace({text_sql}, '\u0130', 'i\u0307')), '\u03c2', '\u03c3')"


FOLDED_SEARCH_TEXT_SQL = _folded(SEARCH_TEXT_SQL)
"""The searchable text folded as ``localevents.events._filters.fold_case`` folds it (DuckDB's
``lower`` maps ``İ`` to a plain ``i`` where Python keeps the dot as U+0307)."""

# The parts of the searchable text, each (a raw JSON column to test first or None, its text).
# They are joined by single spaces, so a term without a space occurs in the whole text
# exactly when it occurs in one of them.
_SEARCH_PARTS = (
    (None, "event"),
    (None, "payload::VARCHAR"),
    ("resource", "array_to_string(json_extract_string(resource, '$.*'), ' ')"),
    ("related", "array_to_string(json_extract_string(related, '$[*].*'), ' ')"),
)

_RAW_SAFE = frozenset(chr(code) for code in range(0x20, 0x7F)) - {'"', "\\"}
"""Characters that appear verbatim in the stored JSON text wherever a string holds them (a
JSON writer escapes only quotes, backslashes and control characters; the ASCII rule also
keeps DuckDB's ``lower`` of the raw text in step with the exact, folded test)."""

_MAX_NEEDLES = 8
"""Literal runs of one label's patterns that the raw-text prefilter looks for one
``contains`` each; more are one regular expression. Each ``contains`` scans the text (100
of them took ~480 ms over 75k label sets), the regular expression scans it once (~30 ms
whatever their number, but several times one ``contains``)."""

_MAX_REGEX_CHARACTERS = 100_000
"""The longest regular expression made of a filter's values: DuckDB's RE2 refused to compile
one of ~700k characters ("pattern too large") where 72k compiled; the tests are ORed past
this."""


def label_path(label: str) -> str:
    """The JSON pointer (RFC 6901) of one label.

    A pointer names a key literally, whatever it holds: in a ``$."..."`` path DuckDB reads
    a label called ``*`` as a wildcard and rejects an empty one, which made such filters fail.
    """
    return "/" + label.replace("~", "~0").replace("/", "~1")


class Where:
    """SQL conditions (ANDed) and their positional parameters, built up in order."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, *params: Any) -> None:
        """Append one condition and its parameters."""
        self.clauses.append(clause)
        self.params.extend(params)

    def placeholders(self, values: Sequence[Any]) -> str:
        """``?, ?, ...`` for ``values``, recording them as parameters."""
        self.params.extend(values)
        return ", ".join("?" for _ in values)

    @property
    def sql(self) -> str:
        """The conditions joined with AND (``true`` when there are none)."""
        return " AND ".join(f"({c})" for c in self.clauses) or "true"


class _Subject(msgspec.Struct, frozen=True):
    """How to reach one resource's id, role and labels in SQL."""

    id: str
    role: str
    labels_json: str  # a JSON object expression holding the labels
    raw: str | None = None  # a column holding those labels' JSON text, for a prefilter


_PRIMARY = _Subject(id="resource_id", role="''", labels_json="resource", raw="resource")
# Inside ``list_transform(json_extract(related, '$[*]'), lambda r, i: ...)``.
_RELATED = _Subject(id="related_ids[i]", role="related_roles[i]", labels_json="r")


def _pattern_sql(where: Where, value_sql: str, pattern: str) -> str:
    compiled = compile_pattern(pattern)
    if compiled.literal:
        where.params.append(compiled.glob)
        test = f"{value_sql} = ?"
    else:
        where.params.append(compiled.like)
        test = f"{value_sql} LIKE ? ESCAPE '\\'"
    if compiled.negated:
        return f"({value_sql} IS NOT NULL AND NOT ({test}))"
    return test


def _regex_literal(text: str) -> str:
    """``text`` read literally by RE2 (DuckDB's regular expressions): a backslash makes any
    ASCII character but a letter, a digit or ``_`` stand for itself."""
    return "".join(c if c.isalnum() or c == "_" or not c.isascii() else "\\" + c for c in text)


def _patterns_sql(where: Where, value_sql: str, patterns: Sequence[str]) -> str:
    """Whether ``value_sql`` matches one of ``patterns``.

    The exact values and the prefixes (patterns whose only wildcard is a final star; see
    :func:`split_patterns`) are one regular expression when there are two or more, its
    alternatives: RE2 tries them all in one pass over the value. 20 ``any_resource``
    entries of 100 prefixes took ~2 s so over 75k label sets (a page and two count-bys),
    ~6 s as ``LIKE``s. The other patterns stay one ``LIKE`` each: with inner wildcards in
    it, RE2's automaton can grow past its memory and fall back to a slow matcher (1000 such
    patterns took 26 s, their ``LIKE``s 0.6 s).

    ``regexp_matches`` anchored with ``\\A``, not ``regexp_full_match``: for that one DuckDB
    adds a range test of the value under the filter, which parses every row's JSON before
    the raw-text prefilter can skip the row.
    """
    kinds = split_patterns(patterns)
    alternatives = dict.fromkeys(
        [_regex_literal(value) + "\\z" for value in kinds.literals]
        + [_regex_literal(prefix) for prefix in kinds.prefixes]
    )
    regex = "\\A(?:" + "|".join(alternatives) + ")"
    if len(alternatives) < 2 or len(regex) > _MAX_REGEX_CHARACTERS:
        return " OR ".join(_pattern_sql(where, value_sql, p) for p in patterns)
    where.params.append(regex)
    tests = [f"regexp_matches({value_sql}, ?)"]
    tests.extend(_pattern_sql(where, value_sql, p) for p in kinds.others)
    return " OR ".join(tests)


_VALUE = "label_value"
"""The lambda parameter that stands for one label's value in its tests."""


def _evaluated_once(value_sql: str, tests: str, name: str = _VALUE) -> str:
    """``tests`` of ``name`` (by default :data:`_VALUE`), with ``value_sql`` evaluated once
    per row.

    DuckDB evaluates an expression again wherever it occurs in a filter, so ORed tests of a
    label parsed the labels' JSON once per pattern: 20 entries of 100 patterns with inner
    wildcards ran the default 256 MB memory limit out over 5000 events (a 16 MB one over
    300), and took 3 s over 2000. Bound once as a lambda's parameter, the value is parsed
    once: 0.4 s over 2000 events, 0.8 s over 20,000, within 16 MB.
    """
    if tests.count(name) < 2:
        return tests.replace(name, value_sql)
    return f"list_transform([{value_sql}], lambda {name}: {tests})[1]"


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (for constants such as JSON paths)."""
    return "'" + text.replace("'", "''") + "'"


def _needle(pattern: str) -> str | None:
    """The longest run of plain characters that every value matching ``pattern`` contains,
    as it is spelled in the stored JSON (None for a negated pattern or without one)."""
    compiled = compile_pattern(pattern)
    if compiled.negated:
        return None
    best = ""
    run: list[str] = []
    for char in [*compiled.glob, "*"]:
        if char in _RAW_SAFE and char not in "*?":
            run.append(char)
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    return best or None


def _raw_prefilter(where: Where, raw: str, spec: LabelSpec, *, skip: frozenset[str]) -> str | None:
    """A cheap necessary condition for ``spec`` on the raw JSON text of ``raw`` (substring
    tests, no JSON parsing), or None: the exact test still runs, on fewer rows.

    A label matches a non-negated pattern only if its value, hence the JSON text, holds the
    pattern's literal runs; the labels in ``skip`` are tested on their own columns instead.
    Past :data:`_MAX_NEEDLES` runs, one regular expression looks for all of them.
    """
    tests = []
    for label, value in spec.items():
        patterns = [value] if isinstance(value, str) else value
        if label in skip or not patterns:
            continue
        needles = list(dict.fromkeys(_needle(p) for p in patterns))
        if None in needles:
            continue
        if len(needles) <= _MAX_NEEDLES:
            where.params.extend(needles)
            tests.append(" OR ".join(f"contains({raw}, ?)" for _ in needles))
            continue
        regex = "|".join(_regex_literal(n) for n in needles if n is not None)
        if len(regex) <= _MAX_REGEX_CHARACTERS:
            where.params.append(regex)
            tests.append(f"regexp_matches({raw}, ?)")
    return " AND ".join(f"({t})" for t in tests) or None


def _labels_sql(where: Where, subject: _Subject, spec: LabelSpec, *, role_exact: bool) -> str:
    parts = []
    for label, value in spec.items():
        patterns = [value] if isinstance(value, str) else value
        if not patterns:
            parts.append("false")
        elif role_exact and label == RESOURCE_ROLE:
            parts.append(f"{subject.role} IN ({where.placeholders(patterns)})")
        elif label == RESOURCE_ID:
            parts.append(_patterns_sql(where, subject.id, patterns))
        else:
            path = sql_string(label_path(label))
            value_sql = f"json_extract_string({subject.labels_json}, {path})"
            parts.append(_evaluated_once(value_sql, _patterns_sql(where, _VALUE, patterns)))
    return " AND ".join(f"({p})" for p in parts) or "true"


def _resource_sql(
    where: Where,
    subject: _Subject,
    criteria: EventRelatedFilter | EventAnyResourceFilter | EventResourceFilter,
    *,
    role_exact: bool,
    keys: KeyTables | None = None,
) -> str:
    """``criteria`` on ``subject``; with ``keys``, the primary resource's labels are tested
    once per label set, and events are picked by their set's key (see ``_label_sets``)."""
    parts = []
    if criteria.id:
        parts.append(f"{subject.id} IN ({where.placeholders(criteria.id)})")
    id_prefix = getattr(criteria, "id_prefix", None)
    if id_prefix:
        tests = " OR ".join(f"starts_with({subject.id}, ?)" for _ in id_prefix)
        where.params.extend(id_prefix)
        parts.append(tests)
    if isinstance(criteria, EventRelatedFilter):
        if criteria.role:
            parts.append(f"{subject.role} IN ({where.placeholders(criteria.role)})")
        if criteria.resources_in_roles:
            pairs = [
                f"({subject.id} = ? AND {subject.role} = ?)" for _ in criteria.resources_in_roles
            ]
            for rid, role in criteria.resources_in_roles:
                where.params.extend((rid, role))
            parts.append(" OR ".join(pairs))
    if criteria.labels:
        if keys is not None and subject is _PRIMARY:
            spec = criteria.labels
            parts.append(
                _matching_keys(
                    keys,
                    RESOURCE_SETS,
                    lambda query: _checked_labels_sql(query, _PRIMARY, spec, role_exact=role_exact),
                )
            )
        else:
            parts.append(
                _checked_labels_sql(where, subject, criteria.labels, role_exact=role_exact)
            )
    return " AND ".join(f"({p})" for p in parts) or "true"


def _matching_keys(keys: KeyTables, sets: LabelSetTable, test: Callable[[Where], str]) -> str:
    """Whether the event's key is one of a label set that ``test`` (SQL over the columns
    the set table shares with ``events``) accepts."""
    return _key_in(sets, _key_table(keys, sets, test))


def _key_in(sets: LabelSetTable, table: str) -> str:
    """Whether the event's key of ``sets`` is in the key table ``table`` (a semi-join)."""
    return f"{sets.key} IN (SELECT key FROM {table})"


def _key_table(keys: KeyTables, sets: LabelSetTable, test: Callable[[Where], str]) -> str:
    """The key table of the label sets that ``test`` accepts: those recorded in the set
    table, and those of the events past it."""
    query = Where()
    recorded = test(query)
    query.params.append(keys.through)
    tail = test(query)
    sql = (
        f"SELECT key FROM {sets.table} WHERE {recorded} UNION "
        f"SELECT {sets.key} FROM events WHERE seq >= ? AND {tail}"
    )
    return keys.table(sql, query.params)


def _mask(keys: KeyTables, sets: LabelSetTable, tables: Sequence[str]) -> str:
    """The event's bits of ``tables`` (key tables of ``sets``): bit ``i`` is set when its
    key is in ``tables[i]``. One table of (key, mask) is looked up once per event."""
    bits = " UNION ALL ".join(
        f"SELECT key, {1 << i}::BIGINT AS bit FROM {t}" for i, t in enumerate(tables)
    )
    masks = keys.table(f"SELECT key, bit_or(bit) AS mask FROM ({bits}) GROUP BY key", [])
    return f"coalesce((SELECT m.mask FROM {masks} AS m WHERE m.key = {sets.key}), 0)"


def _checked_labels_sql(
    where: Where, subject: _Subject, spec: LabelSpec, *, role_exact: bool
) -> str:
    """The exact test of ``spec``, after the raw-text prefilter where there is one."""
    parts = []
    if subject.raw is not None:
        skip = frozenset({RESOURCE_ID, RESOURCE_ROLE} if role_exact else {RESOURCE_ID})
        prefilter = _raw_prefilter(where, subject.raw, spec, skip=skip)
        if prefilter is not None:
            parts.append(prefilter)
    parts.append(_labels_sql(where, subject, spec, role_exact=role_exact))
    return " AND ".join(f"({p})" for p in parts)


def _has_any(where: Where, column: str, values: Sequence[str]) -> str:
    """Whether the list ``column`` holds one of ``values``.

    One ``list_contains`` per value: at 10M events DuckDB's ``list_has_any`` took 780 ms
    for a single related id, where ``list_contains`` took 180 ms.
    """
    where.params.extend(values)
    return " OR ".join(f"list_contains({column}, ?)" for _ in values)


def _related_prefilter(where: Where, criteria: EventRelatedFilter | EventAnyResourceFilter) -> str:
    """Necessary conditions on the event's related id and role lists and related JSON text,
    cheap to test, ANDed before the exact per-resource test."""
    parts = []
    if criteria.id:
        parts.append(_has_any(where, "related_ids", criteria.id))
    if isinstance(criteria, EventRelatedFilter):
        if criteria.role:
            parts.append(_has_any(where, "related_roles", criteria.role))
        if criteria.resources_in_roles:
            ids = [rid for rid, _ in criteria.resources_in_roles]
            parts.append(_has_any(where, "related_ids", ids))
    if criteria.labels:
        skip = frozenset({RESOURCE_ID, RESOURCE_ROLE})
        raw = _raw_prefilter(where, "related", criteria.labels, skip=skip)
        if raw is not None:
            parts.append(raw)
    return " AND ".join(f"({p})" for p in parts)


def _related_sql(where: Where, criteria: EventRelatedFilter | EventAnyResourceFilter) -> str:
    """Some related resource satisfies every criterion. Ids and roles have their own list
    columns: only a criterion on other labels makes the test read the related JSON."""
    prefilter = _related_prefilter(where, criteria)
    labels = criteria.labels or {}
    needs_json = any(label not in (RESOURCE_ID, RESOURCE_ROLE) for label in labels)
    resources = "json_extract(related, '$[*]')" if needs_json else "related_ids"
    condition = _resource_sql(where, _RELATED, criteria, role_exact=True)
    exact = f"list_bool_or(list_transform({resources}, lambda r, i: {condition}))"
    return f"({prefilter}) AND {exact}" if prefilter else exact


def _related_where(
    where: Where,
    entries: Sequence[EventRelatedFilter | EventAnyResourceFilter],
    keys: KeyTables | None,
) -> str:
    """Each of ``entries`` by :func:`_related_sql`; with ``keys``, tested once per related
    label set, all of them in one key table: one semi-join whatever their number, where a
    join per entry cost DuckDB ~4.5 MB each (20 entries: ~145 MB, now ~12 MB; a first page
    of 20 related ids at 10M events took 335 ms, now 22 ms)."""

    def every(query: Where) -> str:
        return " AND ".join(f"({_related_sql(query, entry)})" for entry in entries)

    return every(where) if keys is None else _matching_keys(keys, RELATED_SETS, every)


def _primary_sql(where: Where, criteria: EventAnyResourceFilter) -> str:
    """``criteria`` on the primary resource, role included, on its own columns."""
    return _resource_sql(where, _PRIMARY, criteria, role_exact=True)


def _any_resource_where(
    where: Where, entries: Sequence[EventAnyResourceFilter], keys: KeyTables | None
) -> str:
    """Each of ``entries`` holds on the primary resource or on a related one.

    With ``keys`` and more than one entry, each entry's two tests find their label sets'
    keys; the events that the entry with the fewest keys rules out go first, and each other
    event is looked up once in a table of bitmasks per kind of label set, one bit per entry.
    ORed semi-joins of every entry's key tables cost DuckDB two hash joins of ~4.5 MB per
    entry however little they held: 20 entries needed ~170 MB of the 256 MB default memory
    limit (both lists at 20, ~250 MB), now ~20 MB (~24 MB). A first page at 10M events took
    110-120 ms for two entries (was 115-210), 410-860 ms for 20 (was 780-900, most of it
    finding the keys). The masks alone took longer than the joins when the first entries
    ruled out most events: they look up every event in the window.
    """
    if keys is None or len(entries) == 1:
        tests = []
        for entry in entries:
            primary = _resource_sql(where, _PRIMARY, entry, role_exact=True, keys=keys)
            tests.append(f"({primary}) OR {_related_where(where, [entry], keys)}")
        return " AND ".join(f"({t})" for t in tests)
    primaries = [
        _key_table(keys, RESOURCE_SETS, partial(_primary_sql, criteria=entry)) for entry in entries
    ]
    related = [
        _key_table(keys, RELATED_SETS, partial(_related_sql, criteria=entry)) for entry in entries
    ]
    pairs = list(zip(primaries, related, strict=True))
    fewest = min(pairs, key=lambda pair: keys.rows(pair[0]) + keys.rows(pair[1]))
    first = f"{_key_in(RESOURCE_SETS, fewest[0])} OR {_key_in(RELATED_SETS, fewest[1])}"
    either = f"{_mask(keys, RESOURCE_SETS, primaries)} | {_mask(keys, RELATED_SETS, related)}"
    return f"({first}) AND ({either}) = {(1 << len(entries)) - 1}"


def _names(where: Where, names: EventNameFilter) -> None:
    if names.prefix:
        where.add(" OR ".join("starts_with(event, ?)" for _ in names.prefix), *names.prefix)
    if names.exclude_prefix:
        tests = " OR ".join("starts_with(event, ?)" for _ in names.exclude_prefix)
        where.add(f"NOT ({tests})", *names.exclude_prefix)
    if names.name:
        where.add(f"event IN ({', '.join('?' for _ in names.name)})", *names.name)
    if names.exclude_name:
        marks = ", ".join("?" for _ in names.exclude_name)
        where.add(f"event NOT IN ({marks})", *names.exclude_name)


_MOST_TERMS_BY_PART = 4
"""Beyond this many terms, all of them words of printable ASCII, the text is folded once
per row for them all rather than looked for part by part, term by term (see
:func:`_terms_once`)."""


def _whole_text(term: str) -> bool:
    """Whether ``term`` is looked for in the whole folded text, not part by part: it holds
    a space (a phrase), or a character the raw JSON may spell otherwise."""
    return " " in term or not set(term) <= _RAW_SAFE


def _contains_text(where: Where, term: str) -> str:
    """Whether the folded searchable text contains ``term`` (already folded).

    A term of plain ASCII without a space is looked for part by part, cheapest first, and
    in a label part only where the raw JSON text holds it too (no JSON is parsed for the
    other rows); any other term is looked for in the whole text, as it is defined.
    """
    if _whole_text(term):
        where.params.append(term)
        return f"contains({FOLDED_SEARCH_TEXT_SQL}, ?)"
    tests = []
    for raw, text_sql in _SEARCH_PARTS:
        test = f"contains({_folded(text_sql)}, ?)"
        if raw is None:
            where.params.append(term)
            tests.append(test)
        else:
            where.params.extend((term, term))
            tests.append(f"(contains(lower({raw}::VARCHAR), ?) AND {test})")
    return " OR ".join(tests)


_TEXT = "folded_text"
"""The folded searchable text, as the parameter of a lambda that tests several terms."""


def _terms_once(where: Where, folded: TextQuery) -> None:
    """Every term tested against the folded searchable text built once per row.

    DuckDB builds an expression again wherever it occurs in a filter, so each term folded
    the text (parsing the labels' JSON) anew: over 600,000 events, 12 quoted phrases took
    27 s and 17 ran the 256 MB memory limit out, as did 40 exclusions.
    """
    tests = []
    if folded.include:
        tests.append(" OR ".join(f"contains({_TEXT}, ?)" for _ in folded.include))
    tests.extend(f"NOT contains({_TEXT}, ?)" for _ in folded.exclude)
    tests.extend(f"contains({_TEXT}, ?)" for _ in folded.required)
    body = " AND ".join(f"({test})" for test in tests)
    where.add(
        _evaluated_once(FOLDED_SEARCH_TEXT_SQL, body, _TEXT),
        *folded.include,
        *folded.exclude,
        *folded.required,
    )


def _text(where: Where, text: EventTextFilter) -> None:
    folded = text.folded
    terms = [*folded.include, *folded.exclude, *folded.required]
    if len(terms) > 1 and (
        len(terms) > _MOST_TERMS_BY_PART or any(_whole_text(term) for term in terms)
    ):
        _terms_once(where, folded)
        return
    if folded.include:
        clause = Where()
        tests = " OR ".join(f"({_contains_text(clause, term)})" for term in folded.include)
        where.add(tests, *clause.params)
    for term in folded.exclude:
        clause = Where()
        where.add(f"NOT ({_contains_text(clause, term)})", *clause.params)
    for term in folded.required:
        clause = Where()
        where.add(_contains_text(clause, term), *clause.params)


def build_where(event_filter: EventFilter, *, keys: KeyTables | None = None) -> Where:
    """Translate a filter into SQL conditions over ``events`` (``distinct`` and ``order``
    are the caller's: they shape the query, not the row test). With ``keys``, the primary
    resource's labels and the related resources are tested once per label set (see
    ``_label_sets``)."""
    where = Where()
    occurred = event_filter.occurred
    where.add("occurred >= ?", occurred.since)
    where.add("occurred <= ?", occurred.until or now_utc())
    if event_filter.event:
        _names(where, event_filter.event)
    if event_filter.resource:
        clause = Where()
        sql = _resource_sql(clause, _PRIMARY, event_filter.resource, role_exact=False, keys=keys)
        where.add(sql, *clause.params)
    related = [f for f in event_filter.related_filters if not f.is_empty]
    if related:
        clause = Where()
        where.add(_related_where(clause, related, keys), *clause.params)
    anything = [f for f in event_filter.any_resource_filters if not f.is_empty]
    if anything:
        clause = Where()
        where.add(_any_resource_where(clause, anything, keys), *clause.params)
    if event_filter.id.id:
        where.add(f"id IN ({', '.join('?' for _ in event_filter.id.id)})", *event_filter.id.id)
    if event_filter.text:
        _text(where, event_filter.text)
    return where


def tests_beyond_label_sets(event_filter: EventFilter) -> bool:
    """Whether the filter tests anything of an event beyond its time and its label sets
    (names, ids, text, ``any_resource``) or counts distinct resources."""
    where = Where()
    if event_filter.event:
        _names(where, event_filter.event)
    if event_filter.id.id or event_filter.text:
        return True
    if event_filter.resource is not None and event_filter.resource.distinct:
        return True
    return bool(where.clauses) or any(not f.is_empty for f in event_filter.any_resource_filters)


def set_where(event_filter: EventFilter, keys: KeyTables) -> tuple[LabelSetTable, Where] | None:
    """The filter as a test of one label set table's rows, when it tests nothing of an
    event but its time window and either its primary resource or its related resources:
    that table, and conditions over its rows with the key column named as on ``events``
    (``SELECT key AS resource_key, * FROM resource_sets``). None otherwise.

    The conditions are those :func:`build_where` writes with the same ``keys``, so they
    pick exactly the label sets of the events it selects (label tests reuse its key tables).
    """
    if tests_beyond_label_sets(event_filter):
        return None
    where = Where()
    if event_filter.resource is not None:
        clause = Where()
        sql = _resource_sql(clause, _PRIMARY, event_filter.resource, role_exact=False, keys=keys)
        if sql != "true":
            where.add(sql, *clause.params)
    related = [f for f in event_filter.related_filters if not f.is_empty]
    if not related:
        return RESOURCE_SETS, where
    if where.clauses:  # both kinds: the tables do not count their combinations
        return None
    clause = Where()
    where.add(_related_where(clause, related, keys), *clause.params)
    return RELATED_SETS, where
