"""Label patterns: one dialect for every path (SPEC A.2 D4).

A pattern is a case-sensitive glob (``*`` any run, ``?`` one character; everything else,
``[`` included, is literal) and a leading ``!`` negates it. A missing label never matches,
negated or not. The same pattern compiles to a Python regex for in-memory matching and to a
SQL ``LIKE`` for storage, so both paths agree.
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
    """One compiled pattern: the glob, whether it is negated, and its two translations."""

    glob: str
    negated: bool
    regex: re.Pattern[str]
    like: str
    literal: bool

    def matches(self, value: str | None) -> bool:
        """Whether a label value satisfies the pattern (``None`` = label missing = never)."""
        if value is None:
            return False
        hit = value == self.glob if self.literal else self.regex.fullmatch(value) is not None
        return hit != self.negated


def escape_like(text: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` so that ``LIKE ... ESCAPE '\\'`` reads them literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> LabelPattern:
    """Compile a label pattern (cached: filters reuse the same few patterns constantly)."""
    negated = pattern.startswith("!")
    glob = pattern[1:] if negated else pattern
    regex_parts: list[str] = []
    like_parts: list[str] = []
    for char in glob:
        if char == "*":
            regex_parts.append(".*")
            like_parts.append("%")
        elif char == "?":
            regex_parts.append(".")
            like_parts.append("_")
        else:
            regex_parts.append(re.escape(char))
            like_parts.append(escape_like(char))
    return LabelPattern(
        glob=glob,
        negated=negated,
        regex=re.compile("".join(regex_parts), re.DOTALL),
        like="".join(like_parts),
        literal="*" not in glob and "?" not in glob,
    )
