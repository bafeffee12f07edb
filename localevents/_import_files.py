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

__all__ = ("PARQUET_MAGIC", "is_parquet", "ndjson_lines", "not_a_file")

PARQUET_MAGIC = b"PAR1"
"""The bytes a Parquet file starts with."""


def not_a_file(path: Path) -> str | None:
    """Why an import cannot read ``path`` (None when it can, or when nothing is there): an
    import reads its source twice, to check every row before it stores any, and a pipe
    (``<(zcat events.ndjson.gz)``) or a device would be empty the second time."""
    if not path.exists() or path.is_file() or path.is_dir():
        return None
    return (
        f"{path} is not a regular file (a pipe or a device?): an import reads its source "
        "twice, to check every row before it stores any; save it to a file first"
    )


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
