"""Text search: parse a ``text.query`` string and match it against searchable text.

The grammar is SPEC B §2.5 and the meaning is SPEC A.2 D6: include terms are ORed, exclude
terms are NOTed, required terms are ANDed, and every test is a case-insensitive substring test.
Lowercasing uses ``str.lower`` (not ``casefold``) so this path agrees with SQL ``lower()``.
"""

from __future__ import annotations

import functools

import msgspec

__all__ = ("MAX_QUERY_LENGTH", "TextQuery", "parse_text_query")

MAX_QUERY_LENGTH = 200
"""Longest ``text.query`` the event filter accepts (SPEC B §2.1)."""

_PREFIXES = {"-": "exclude", "!": "exclude", "+": "required"}
_QUOTE = '"'
_ESCAPABLE = frozenset('"\\')


class TextQuery(msgspec.Struct, frozen=True, gc=False):
    """A parsed text query; terms are kept exactly as written (case preserved)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when the query has no terms, so it matches every text."""
        return not (self.include or self.exclude or self.required)

    def matches(self, text: str) -> bool:
        """Whether ``text`` (any case) satisfies the query."""
        terms = _lowered(self)
        haystack = text.lower()
        return (
            (not terms.include or any(term in haystack for term in terms.include))
            and not any(term in haystack for term in terms.exclude)
            and all(term in haystack for term in terms.required)
        )


@functools.lru_cache(maxsize=256)
def _lowered(query: TextQuery) -> TextQuery:
    # Queries repeat (one live subscriber's filter is checked against every event), so the
    # lowered terms are computed once per distinct query rather than once per match.
    return TextQuery(
        include=tuple(term.lower() for term in query.include),
        exclude=tuple(term.lower() for term in query.exclude),
        required=tuple(term.lower() for term in query.required),
    )


def parse_text_query(query: str) -> TextQuery:
    """Parse ``query`` into include (OR), exclude (NOT) and required (AND) terms."""
    buckets: dict[str, list[str]] = {"include": [], "exclude": [], "required": []}
    pos, end = 0, len(query)
    while pos < end:
        if query[pos].isspace():
            pos += 1
            continue
        bucket = "include"
        if query[pos] in _PREFIXES:
            if pos + 1 == end or query[pos + 1].isspace():
                pos += 1  # a lone prefix is not a term
                continue
            bucket = _PREFIXES[query[pos]]
            pos += 1  # only one prefix: in "--term" the second "-" is part of the term
        if query[pos] == _QUOTE:
            term, pos = _read_phrase(query, pos + 1)
            if term.strip():
                buckets[bucket].append(term)
        else:
            term, pos = _read_word(query, pos)
            buckets[bucket].append(term)
    return TextQuery(
        include=tuple(buckets["include"]),
        exclude=tuple(buckets["exclude"]),
        required=tuple(buckets["required"]),
    )


def _read_word(query: str, pos: int) -> tuple[str, int]:
    """Read an unquoted term starting at ``pos``; it ends at whitespace or a quote."""
    start = pos
    while pos < len(query) and not query[pos].isspace() and query[pos] != _QUOTE:
        pos += 1
    return query[start:pos], pos


def _read_phrase(query: str, pos: int) -> tuple[str, int]:
    """Read a quoted phrase whose body starts at ``pos``; return it and the position after it.

    An unclosed phrase runs to the end of the input.
    """
    chars: list[str] = []
    while pos < len(query):
        char = query[pos]
        if char == _QUOTE:
            return "".join(chars), pos + 1
        if char == "\\" and pos + 1 < len(query) and query[pos + 1] in _ESCAPABLE:
            char = query[pos + 1]
            pos += 1
        chars.append(char)
        pos += 1
    return "".join(chars), pos
