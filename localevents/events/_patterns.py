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
"""

from __future__ import annotations

import functools
import re

import msgspec

__all__ = (
    "LabelPattern",
    "compile_pattern",
    "escape_like",
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


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> LabelPattern:
    """Compile a label pattern (cached: filters reuse the same few patterns constantly)."""
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
        literal="*" not in glob and "?" not in glob,
    )


def _piece(text: str) -> re.Pattern[str]:
    """The regex of a piece between stars: its characters, ``?`` being any one."""
    return re.compile(".".join(re.escape(part) for part in text.split("?")), re.DOTALL)
