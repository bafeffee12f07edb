"""Reading the files an import is given: the NDJSON lines and Parquet's signature, shared by
the offline import (``storage``), the import through the API (``client``) and the CLI.

A leaf module, like ``_destinations``: it imports nothing of ours.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ("PARQUET_MAGIC", "is_parquet", "ndjson_lines")

PARQUET_MAGIC = b"PAR1"
"""The bytes a Parquet file starts with."""


def is_parquet(path: Path) -> bool:
    """Whether the file ``path`` starts like a Parquet file."""
    with path.open("rb") as head:
        return head.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC


def ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of an NDJSON file, with their numbers (from 1); a UTF-8 byte
    order mark before the first (Windows tools often write one) is skipped."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            text = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
            if text.strip():
                yield number, text
