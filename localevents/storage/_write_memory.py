"""The memory a store needs within ``LOCALEVENTS_DATABASE_MEMORY_LIMIT``: to open, and to
commit.

Opening takes DuckDB a few megabytes (8 MB was enough here, 4 MB was not): below that the
store refuses to open with a :class:`ConfigurationError` naming the setting.

A commit loads its batch with DuckDB's ``read_json``, which reads through buffers of
32 MiB: one with a single DuckDB thread, two with more (4, 8 and 16 threads stored
60,000 events at 80 MB).
Below a floor of memory no batch can be stored at all, however small: measured over
200,000 standard events, 48 MB was enough with one thread and 80 MB with two (32 MB and
72 MB were not). A store opened below its floor says so once, and a commit that runs out
of memory (below the floor, or because the queries running at once hold the rest) is
refused with :class:`ServiceUnavailable` naming the setting: nothing of it is stored, and
clients try again.
"""

from __future__ import annotations

import contextlib
import logging
import re

import duckdb

from localevents._exceptions import ConfigurationError, ServiceUnavailable
from localevents._settings import parse_size

__all__ = ("WriteMemory", "ran_out_of_memory", "too_little_to_open")

logger = logging.getLogger("localevents.storage")

_FLOOR_ONE_THREAD = 48_000_000
_FLOOR_MORE_THREADS = 80_000_000
_SETTING = "LOCALEVENTS_DATABASE_MEMORY_LIMIT"
_SHOWN = re.compile(r"^(\d+(?:\.\d+)?) (bytes|KiB|MiB|GiB|TiB|PiB|EiB)$")
"""How DuckDB shows its memory limit (``current_setting('memory_limit')``: '61.0 MiB')."""
_POWERS = {"bytes": 0, "KiB": 1, "MiB": 2, "GiB": 3, "TiB": 4, "PiB": 5, "EiB": 6}


def _threads(con: duckdb.DuckDBPyConnection) -> int:
    found = con.execute("SELECT current_setting('threads')").fetchone()
    return 1 if found is None else int(found[0])


def _limit_bytes(con: duckdb.DuckDBPyConnection, limit: str) -> int | None:
    """The memory limit in bytes: as ``limit`` says (DuckDB's units, see ``parse_size``),
    or else as DuckDB shows it, rounded (``'80%'`` of the RAM, say); None if neither reads."""
    with contextlib.suppress(ConfigurationError):
        return parse_size(limit)
    found = con.execute("SELECT current_setting('memory_limit')").fetchone()
    match = None if found is None else _SHOWN.match(str(found[0]))
    if match is None:
        return None
    return int(float(match[1]) * 1024 ** _POWERS[match[2]])


def _floor(threads: int) -> int:
    return _FLOOR_ONE_THREAD if threads == 1 else _FLOOR_MORE_THREADS


def _needs(threads: int) -> str:
    """What a commit needs, said for ``threads`` DuckDB threads."""
    floor = f"{_floor(threads) // 1_000_000}MB"
    if threads == 1:
        return f"at least {floor} with one DuckDB thread"
    lower = f"{_FLOOR_ONE_THREAD // 1_000_000}MB"
    return (
        f"at least {floor} with {threads} DuckDB threads ({lower} with "
        "LOCALEVENTS_DATABASE_THREADS=1)"
    )


class WriteMemory:
    """What a commit needs, for a store whose connection is ``con`` with its memory limit
    set from ``limit``; warns at once if the limit is below it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, limit: str) -> None:
        self.limit = limit
        self.threads = _threads(con)
        shown = _limit_bytes(con, limit)
        if shown is not None and shown < _floor(self.threads):
            logger.warning(
                "%s=%r leaves too little memory to store events: a commit needs %s; "
                "writes will be refused (ServiceUnavailable, 503 over HTTP) until it is raised",
                _SETTING,
                limit,
                _needs(self.threads),
            )

    def out_of_memory(self) -> ServiceUnavailable:
        """The error for a commit that ran out of memory."""
        return ServiceUnavailable(
            f"could not store the events: the commit needed more than the memory limit, "
            f"{_SETTING}={self.limit}, which the writes and the queries running at once "
            f"share; a commit needs {_needs(self.threads)}. Try again, or raise the limit"
        )


def ran_out_of_memory(error: BaseException) -> bool:
    """Whether DuckDB running out of memory is ``error`` or caused it."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, duckdb.OutOfMemoryException):
            return True
        cause = cause.__cause__
    return False


def too_little_to_open(limit: str) -> ConfigurationError:
    """The error for a store that ran out of memory while opening under ``limit``."""
    return ConfigurationError(
        f"{_SETTING}={limit!r} is too little memory for DuckDB to open the events file "
        f"(8MB was enough where measured); storing events needs "
        f"{_FLOOR_MORE_THREADS // 1_000_000}MB ({_FLOOR_ONE_THREAD // 1_000_000}MB with "
        "LOCALEVENTS_DATABASE_THREADS=1)"
    )
