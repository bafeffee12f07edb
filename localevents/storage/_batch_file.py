"""The file through which a commit hands its batch to DuckDB.

DuckDB's ``read_json`` reads a path, so the writer's batches (JSON lines, see ``_rows``)
pass through a file that is rewritten in place for each commit. Where the system can, it is
an anonymous file in memory (Linux's ``memfd_create``), which DuckDB reads through
``/proc/self/fd``: no disk write, no name in any folder, and nothing left behind when the
process ends, however it ends. Elsewhere it is a named temporary file, removed when the
store closes; a process killed before that leaves it in the temporary folder. Either way it
is rewritten in place, never truncated to nothing first: ext4 flushes a file that was
emptied and refilled to disk (about a millisecond per commit here, with stalls up to half
a second).

The file never holds data that is not also committed or about to be rolled back, so losing
it loses nothing.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ("BatchFile",)

_PREFIX = "localevents-batch-"
_PROC_FDS = "/proc/self/fd"


class BatchFile:
    """A rewritable file for DuckDB to read at :attr:`path`; close it with the store."""

    def __init__(self) -> None:
        self._named: str | None = None
        if hasattr(os, "memfd_create") and os.path.isdir(_PROC_FDS):
            handle = os.memfd_create(_PREFIX)  # close-on-exec, like every file Python opens
            self.path = f"{_PROC_FDS}/{handle}"
        else:
            handle, self._named = tempfile.mkstemp(prefix=_PREFIX, suffix=".ndjson")
            self.path = self._named
        self._file = os.fdopen(handle, "r+b")

    def write(self, data: bytes) -> None:
        """Replace the file's contents with ``data``."""
        file = self._file
        file.seek(0)
        file.write(data)
        file.truncate()
        file.flush()

    def close(self) -> None:
        """Close the file (and remove it, if it has a name)."""
        self._file.close()
        if self._named is not None:
            os.unlink(self._named)
