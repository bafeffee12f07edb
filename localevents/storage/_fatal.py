"""Reading DuckDB's fatal errors: after one, DuckDB refuses every statement until the
database is opened again (``EventStore._reopen`` does that).

DuckDB says in words what happened, and these are the words the store goes by (DuckDB 2.0):

* a commit whose autocheckpoint failed (typically out of memory, merging row groups of
  large events) is durable: "Transaction COMMIT succeeded and is durable, but the
  autocheckpoint failed", followed by "Failed to create checkpoint because of error: ...";
* any statement after a fatal error says "database has been invalidated because of a
  previous fatal error" and quotes that error after "Original error:".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

__all__ = ("cause", "checkpoint_failed", "durable", "no_merging")

_DURABLE = "COMMIT succeeded and is durable"
_CHECKPOINT_FAILED = "Failed to create checkpoint"
_EARLIER = "Original error"


def durable(failure: duckdb.Error) -> bool:
    """Whether ``failure`` says that its own commit is durable (not an earlier one's)."""
    return _DURABLE in str(failure).split(_EARLIER, 1)[0]


def checkpoint_failed(failure: duckdb.Error) -> bool:
    """Whether ``failure`` (or the earlier error it quotes) is a checkpoint that failed."""
    return _CHECKPOINT_FAILED in str(failure)


def cause(failure: duckdb.Error) -> str:
    """The first line of what went wrong: the earlier error that invalidated the
    database, when ``failure`` only says that it was."""
    text = str(failure)
    if _EARLIER in text:
        text = text.split(_EARLIER, 1)[1].lstrip(': "')
    return text.split("\n", 1)[0].rstrip('".')


def no_merging(limit: str) -> str:
    """What a checkpoint that failed means for the reopened file, and what to do."""
    return (
        ". Every event accepted so far is stored. Its checkpoints no longer merge small row "
        "groups until the file is opened again: merging large events needed more memory "
        f"than the limit of {limit} (LOCALEVENTS_DATABASE_MEMORY_LIMIT); raise it if events "
        "this large are usual"
    )
