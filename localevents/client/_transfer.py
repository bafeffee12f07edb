"""Files on the SDK side of an export or an import through the API.

An export lands under a temporary name beside its destination and is renamed into place
when complete, so a failed download leaves nothing behind. A Parquet export arrives as a
tar of ``day=YYYY-MM-DD/<name>.parquet`` files; only such plain files are extracted, never
links or paths outside the destination. An import reads an NDJSON file twice: once to check
every line with the protocol's rules and size limit (a bad line raises naming it, before
anything is sent), then to send it in batches of a bounded count and size.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from localevents._destinations import move_into_place, partial_path, remove
from localevents._exceptions import ConfigurationError, HTTPStatusError, InvalidEventError
from localevents._import_files import is_parquet, ndjson_lines, not_a_file
from localevents._settings import get_settings
from localevents.client._http_errors import server_explanation
from localevents.events._nesting import decoded
from localevents.events._rules import size_problem
from localevents.events._schemas import ReceivedEvent, event_id_of

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

__all__ = (
    "IMPORT_BATCH_BYTES",
    "ImportBatch",
    "check_ndjson",
    "extract_parquet",
    "ndjson_batches",
    "refused_line",
)

_MEMBER = re.compile(r"^day=\d{4}-\d{2}-\d{2}/[A-Za-z0-9_.-]+\.parquet$")
_decoder = msgspec.json.Decoder(ReceivedEvent)


def extract_parquet(archive: Path, destination: Path) -> None:
    """Unpack the tar of a Parquet export into ``destination`` (created; an empty folder
    there is replaced), refusing any member that is not a ``day=`` Parquet file."""
    folder = partial_path(destination)
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                if not member.isfile() or not _MEMBER.match(member.name):
                    raise ConfigurationError(
                        f"the export holds {member.name!r}, not a day=YYYY-MM-DD Parquet file"
                    )
                target = folder / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                with source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
        move_into_place(folder, destination)
    except BaseException:
        remove(folder)
        raise


def check_ndjson(path: Path) -> int:
    """Check every line of an NDJSON file as an event; return how many there are."""
    if (problem := not_a_file(path)) is not None:
        raise ConfigurationError(problem)
    if not path.is_file():
        raise ConfigurationError(f"there is no file to import at {path}")
    if is_parquet(path):
        raise ConfigurationError(
            f"{path} is Parquet: the API client imports NDJSON; import Parquet into an "
            "events file with localevents.storage.import_events"
        )
    settings = get_settings()
    count = 0
    for number, line in ndjson_lines(path):
        try:
            size = decoded(_decoder.decode, line).size_bytes
        except msgspec.DecodeError as exc:
            raise InvalidEventError(f"{path}, line {number}: {exc}") from None
        too_big = size_problem(size, settings)
        if too_big is not None:  # the server would refuse its batch, after storing earlier ones
            raise InvalidEventError(f"{path}, line {number}: {too_big}")
        count += 1
    return count


IMPORT_BATCH_BYTES = 8 * 1024 * 1024
"""The most request body an import sends at once (fewer events than the batch size when
they are large), unless ``LOCALEVENTS_SERVER_MAXIMUM_BODY_BYTES`` is lower."""


@dataclass(frozen=True, slots=True)
class ImportBatch:
    """Events of an NDJSON file sent in one request, with the line number of each."""

    lines: list[int]
    events: list[bytes]

    @property
    def body(self) -> bytes:
        """The request body: the events as one JSON array."""
        return b"[" + b",".join(self.events) + b"]"

    def halves(self) -> tuple[ImportBatch, ImportBatch]:
        """The first and the second half of the batch (for a server taking smaller bodies)."""
        middle = len(self.events) // 2
        return (
            ImportBatch(self.lines[:middle], self.events[:middle]),
            ImportBatch(self.lines[middle:], self.events[middle:]),
        )


def ndjson_batches(path: Path, size: int) -> Generator[ImportBatch, None, None]:
    """The lines of a checked NDJSON file in batches of up to ``size`` events and
    :data:`IMPORT_BATCH_BYTES` of body (a longer line goes alone)."""
    most = min(IMPORT_BATCH_BYTES, get_settings().server_maximum_body_bytes)
    batch = ImportBatch([], [])
    taken = 2  # the brackets
    for number, line in ndjson_lines(path):
        event = line.strip()
        if batch.events and taken + len(event) + 1 > most:
            yield batch
            batch, taken = ImportBatch([], []), 2
        batch.lines.append(number)
        batch.events.append(event)
        taken += len(event) + 1
        if len(batch.events) == size:
            yield batch
            batch, taken = ImportBatch([], []), 2
    if batch.events:
        yield batch


_AT_INDEX = re.compile(r"^Invalid event at index (\d+): ")


def refused_line(path: Path, batch: ImportBatch, error: HTTPStatusError, sent: int) -> str:
    """What to say when the server refused ``batch`` of ``path`` (a limit stricter than the
    ones checked here): the file's line and the event's id, the server's reason, and what
    is stored already. The server names the event by its index in the batch."""
    reason = server_explanation(error.response)
    found = _AT_INDEX.match(reason)
    if found is not None and int(found[1]) < len(batch.events):
        index = int(found[1])
        reason = reason[found.end() :].replace(f"(at $[{index}].", "(at ")
        where = f"line {batch.lines[index]} (event {_event_id(batch.events[index])})"
    elif len(batch.events) == 1:
        where = f"line {batch.lines[0]} (event {_event_id(batch.events[0])})"
    else:
        where = f"lines {batch.lines[0]}-{batch.lines[-1]}"
    if sent == 0:
        stored = "nothing was stored"
    else:
        events = "event" if sent == 1 else "events"
        stored = f"the {sent} {events} before it went in (those the server did not have are stored)"
    return (
        f"{path}, {where}: the server refused it ({error.status} {error.response.reason_phrase}): "
        f"{reason}; {stored}, and nothing after it was sent. Import the file again once it is "
        "fixed: the events already stored are skipped by id"
    )


def _event_id(line: bytes) -> str:
    identifier = event_id_of(line)  # checked before sending: always readable
    return "of unreadable id" if identifier is None else str(identifier)
