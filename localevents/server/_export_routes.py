"""``POST /api/events/export``: a running store's events as NDJSON or Parquet.

DuckDB lets no second process open a held events file, so this is how a live store is
analysed or backed up while it runs. NDJSON streams in keyset pages (constant memory on
both sides; events stored while it runs may or may not be included). Parquet is a
snapshot: DuckDB writes the Hive-partitioned folder of ``localevents.storage._export`` from
one consistent read into a private scratch folder, which is then streamed as an
uncompressed tar of ``day=YYYY-MM-DD/events-0.parquet`` files (Parquet is compressed
already) and removed. ``curl ... | tar -x -C out/`` unpacks it; the SDK's
``EventsAPIClient.export_events`` does the same.

Each NDJSON page is a read within the server's query time limit. The Parquet snapshot is
one read of everything it holds, which takes as long as there is to write (about 3 s per
million events here), so the limit does not apply to it.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import msgspec
from litestar import post
from litestar.openapi.spec import Operation
from litestar.response import Stream

from localevents._metrics import QUERY_SECONDS
from localevents.events._filters import EventFilter
from localevents.server._reading import Reader, reader_of
from localevents.server._routes import QUERY_BODY_LIMIT, _decode_request
from localevents.storage._export import (
    NdjsonChunk,
    export_filter,
    make_scratch_folder,
    ndjson_chunk,
    write_parquet,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from litestar import Request
    from litestar.datastructures import State

    from localevents.storage._engine import EventStore

__all__ = ("EVENT_COUNT_HEADER", "EXPORT_ROUTES", "ExportRequest", "NDJSON", "TAR")

NDJSON = "application/x-ndjson"
TAR = "application/x-tar"
EVENT_COUNT_HEADER = "localevents-event-count"
"""Header of a Parquet export: how many events the snapshot holds."""

_READ_BYTES = 1 << 20


class ExportRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/events/export``: which events (default: every stored event,
    whenever it occurred) and in which format."""

    filter: EventFilter | None = None
    format: Literal["ndjson", "parquet"] = "ndjson"


_decoder = msgspec.json.Decoder(ExportRequest)
(_, _SCHEMAS) = msgspec.json.schema_components(
    (ExportRequest,), ref_template="#/components/schemas/{name}"
)


@dataclass
class _ExportOperation(Operation):
    """The route's OpenAPI entry: its JSON body and its two kinds of answer."""

    def to_schema(self) -> dict[str, Any]:
        result = super().to_schema()
        body = {"application/json": {"schema": _SCHEMAS["ExportRequest"]}}
        result["requestBody"] = {"required": False, "content": body}
        result["responses"] = {
            "200": {
                "description": "NDJSON lines (format ndjson) or a tar of the Parquet folder "
                "(format parquet)",
                "content": {
                    NDJSON: {"schema": {"type": "string"}},
                    TAR: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        }
        return result


async def _ndjson(
    reader: Reader, event_filter: EventFilter, chunk: NdjsonChunk
) -> AsyncIterator[bytes]:
    """The chunk read before the answer began, then the rest, page by page (each within the
    query time limit)."""
    while True:
        if chunk.data:
            yield chunk.data
        if chunk.after is None:
            return
        chunk = await reader.read("export_ndjson", ndjson_chunk, event_filter, chunk.after)


def _members(folder: Path) -> list[tuple[str, Path, int]]:
    """Each file under ``folder``: its name in the tar, its path and its size."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return [(path.relative_to(folder).as_posix(), path, path.stat().st_size) for path in files]


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int, unit: int) -> bytes:
    return b"\0" * (-size % unit)


async def _tar(scratch: Path, members: list[tuple[str, Path, int]]) -> AsyncIterator[bytes]:
    """The files as a tar stream, written as it is read; ``scratch`` is removed after."""
    try:
        total = 0
        for name, path, size in members:
            header = _header(name, size)
            yield header
            async with await anyio.open_file(path, "rb") as source:
                while data := await source.read(_READ_BYTES):
                    yield data
            yield _padding(size, tarfile.BLOCKSIZE)
            total += len(header) + size + len(_padding(size, tarfile.BLOCKSIZE))
        end = b"\0" * (2 * tarfile.BLOCKSIZE)
        yield end + _padding(total + len(end), tarfile.RECORDSIZE)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)


async def _parquet(store: EventStore, event_filter: EventFilter) -> Stream:
    scratch = await anyio.to_thread.run_sync(make_scratch_folder)
    try:
        folder = scratch / "export"
        with QUERY_SECONDS.labels("export_parquet").time():
            count = await anyio.to_thread.run_sync(write_parquet, store, event_filter, folder)
        members = await anyio.to_thread.run_sync(_members, folder)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)
        raise
    headers = {
        "Content-Disposition": 'attachment; filename="events.tar"',
        EVENT_COUNT_HEADER: str(count),
    }
    return Stream(_tar(scratch, members), media_type=TAR, headers=headers)


@post(
    "/events/export",
    summary="Export events as NDJSON or Parquet",
    request_max_body_size=QUERY_BODY_LIMIT,
    status_code=200,
    operation_class=_ExportOperation,
)
async def export_events(request: Request[Any, Any, Any], state: State) -> Stream:
    """Every event matching ``filter`` (default: all stored events), oldest first. ``ndjson``
    (the default) streams one ReceivedEvent JSON per line; ``parquet`` answers a tar of
    ``day=YYYY-MM-DD/events-0.parquet`` files (UTC days of ``occurred``) from one snapshot,
    with the event count in the ``localevents-event-count`` header. Nothing matching gives
    an empty body (NDJSON) or one Parquet file with the schema and no rows."""
    query = _decode_request(_decoder, await request.body())
    reader = reader_of(state)
    event_filter = export_filter(query.filter)
    if query.format == "parquet":
        return await _parquet(reader.store, event_filter)
    # The first page is read before the answer starts, so that its failure (a filter past
    # the time limit, most likely) is an error answer rather than a cut stream.
    first = await reader.read("export_ndjson", ndjson_chunk, event_filter, None)
    return Stream(_ndjson(reader, event_filter, first), media_type=NDJSON)


EXPORT_ROUTES = [export_events]
