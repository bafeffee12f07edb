"""Label patterns: one dialect for every path (SPEC A.2 D4).

A pattern is a case-sensitive glob (``*`` any run, ``?`` one character; everything else,
``[`` included, is literal) and a leading ``!`` negates it. A missing label never matches,
negated or not. The same pattern compiles to a matcher for in-memory matching and to a SQL
``LIKE`` for storage, so both paths agree.

In memory, a pattern is split at its stars into pieces of fixed length (``?`` standing for
any one character): the first piece must match at the start of the value, the last at its
end, and each one between at its earliest place after the one before. Taking the earliest
place is never wrong, as nothing after a star depends on how much the star took, so a match
costs at most a search per piece. A regex with one ``.*`` per star backtracks instead: a
pattern of ten stars against a long value ran for minutes, and the live hub tests patterns
on its one fan-out thread, so one subscriber's pattern would have stalled every other.

A filter tests the patterns of one label as a :class:`PatternSet`, compiled once and kept by
the filter (see ``_filters``): exact values in a set, trailing-star prefixes in one
``startswith``, the rest in turn. Through the shared cache of :func:`compile_pattern`
instead, a filter of more patterns than the cache holds recompiled every one of them for
every event (0.25 s an event for 5,000 patterns), on the hub's one thread.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, NamedTuple

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = (
    "LabelPattern",
    "PatternKinds",
    "PatternSet",
    "compile_pattern",
    "compile_patterns",
    "escape_like",
    "split_patterns",
)


class LabelPattern(msgspec.Struct, frozen=True, gc=False):
    """One compiled pattern: the glob, whether it is negated, its pieces between stars (each
    a regex of fixed length), the length of the last piece, and its SQL ``LIKE``."""

    glob: str
    negated: bool
    pieces: tuple[re.Pattern[str], ...]
    last_length: int
    like: str
    literal: bool

    def matches(self, value: str | None) -> bool:
        """Whether a label value satisfies the pattern (``None`` = label missing = never)."""
        if value is None:
            return False
        hit = value == self.glob if self.literal else self._glob_matches(value)
        return hit != self.negated

    def _glob_matches(self, value: str) -> bool:
        pieces = self.pieces
        if len(pieces) == 1:  # no star: the one piece is the whole value
            return pieces[0].fullmatch(value) is not None
        start = pieces[0].match(value)
        if start is None:
            return False
        position = start.end()
        for piece in pieces[1:-1]:
            found = piece.search(value, position)
            if found is None:
                return False
            position = found.end()
        tail = len(value) - self.last_length
        return tail >= position and pieces[-1].fullmatch(value, tail) is not None


def escape_like(text: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` so that ``LIKE ... ESCAPE '\\'`` reads them literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PatternSet(msgspec.Struct, frozen=True, gc=False):
    """Patterns ORed (those of one label in a filter), compiled once: the exact values
    (``literals``), the prefixes of the patterns whose only wildcard is a final star
    (``prefixes``), and every other pattern, negated ones included (``others``)."""

    literals: frozenset[str]
    prefixes: tuple[str, ...]
    others: tuple[LabelPattern, ...]

    def matches(self, value: str | None) -> bool:
        """Whether a label value satisfies any of the patterns (``None``: never)."""
        if value is None:
            return False
        return (
            value in self.literals
            or value.startswith(self.prefixes)
            or any(pattern.matches(value) for pattern in self.others)
        )


class PatternKinds(NamedTuple):
    """Patterns to be ORed, sorted by how they can be tested together: the exact values,
    the prefixes of the patterns whose only wildcard is a final star, and every other
    pattern (negated ones included), each in the order given."""

    literals: list[str]
    prefixes: list[str]
    others: list[str]


def split_patterns(patterns: Iterable[str]) -> PatternKinds:
    """Sort ``patterns`` by kind (see :class:`PatternKinds`): the in-memory
    :class:`PatternSet` and the SQL of ``localevents.storage`` test each kind as a whole."""
    kinds = PatternKinds([], [], [])
    for pattern in patterns:
        head, star = (pattern[:-1], True) if pattern.endswith("*") else (pattern, False)
        if pattern.startswith("!") or not _plain(head):
            kinds.others.append(pattern)
        elif star:
            kinds.prefixes.append(head)
        else:
            kinds.literals.append(pattern)
    return kinds


def compile_patterns(patterns: Iterable[str]) -> PatternSet:
    """Compile patterns to be ORed, each once, without :func:`compile_pattern`'s cache (the
    caller keeps the set: a big filter would only push out what other filters use)."""
    literals, prefixes, others = split_patterns(patterns)
    return PatternSet(frozenset(literals), tuple(prefixes), tuple(map(_compile, others)))


def _plain(text: str) -> bool:
    """Whether ``text`` holds no wildcard."""
    return "*" not in text and "?" not in text


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> LabelPattern:
    """Compile a label pattern (cached: SQL building reuses the same few patterns
    constantly; in-memory matching uses :func:`compile_patterns`)."""
    return _compile(pattern)


def _compile(pattern: str) -> LabelPattern:
    negated = pattern.startswith("!")
    glob = pattern[1:] if negated else pattern
    like_parts: list[str] = []
    for char in glob:
        if char == "*":
            like_parts.append("%")
        elif char == "?":
            like_parts.append("_")
        else:
            like_parts.append(escape_like(char))
    return LabelPattern(
        glob=glob,
        negated=negated,
        pieces=tuple(_piece(text) for text in glob.split("*")),
        last_length=len(glob.rpartition("*")[2]),
        like="".join(like_parts),
        literal=_plain(glob),
    )


def _piece(text: str) -> re.Pattern[str]:
    """The regex of a piece between stars: its characters, ``?`` being any one."""
    return re.compile(".".join(re.escape(part) for part in text.split("?")), re.DOTALL)
