"""A payload's JSON text as the store keeps it, for events matched before any query reads them.

The store parses each payload as it loads a batch (``read_json``) and keeps DuckDB's own
spelling of it, which text search reads (D6): escapes resolved, repeated keys kept, numbers
respelled (``1e5`` as ``100000.0``, ``1e16`` as ``10000000000000000.0``, ``1.5e-6`` as
``0.0000015``). msgspec agrees on most payloads, but writes floats from 1e16 to 1e21 and
from 1e-6 to 1e-5 with an exponent and keeps only the last of repeated keys, so the live
stream, matching events as they are committed, asks DuckDB's JSON writer for the text
instead: it writes what ``read_json`` stored (checked on thousands of random floats).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("stored_payload_texts",)

_SPELL = "SELECT list_transform($payloads, lambda p: json_extract(p::JSON, '$')::VARCHAR)"

_lock = threading.Lock()
_connection: duckdb.DuckDBPyConnection | None = None


def stored_payload_texts(payloads: Sequence[bytes]) -> list[str]:
    """The texts the store keeps for ``payloads`` (JSON objects it accepted), in order."""
    global _connection  # noqa: PLW0603 - one in-memory database, opened on first use
    if not payloads:
        return []
    texts = [payload.decode() for payload in payloads]
    with _lock:
        if _connection is None:
            _connection = duckdb.connect(":memory:", config={"threads": 1})
        row = _connection.execute(_SPELL, {"payloads": texts}).fetchone()
    assert row is not None  # one row, always
    spelled: list[str] = row[0]
    return spelled
