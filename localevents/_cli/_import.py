"""``localevents import``: the events of an NDJSON or Parquet export, into a server or a file.

Every row is checked before anything is stored: a bad row exits with 1 naming it (file and
line, or Parquet row), and nothing is stored. Ids already stored are skipped, so importing
the same file twice stores nothing the second time.

Without a server the rows go into the events file (``localevents.storage.import_events``),
keeping each event's ``received``. A server takes NDJSON through the SDK
(``EventsAPIClient.import_events``) and stamps ``received`` anew, as on any ingest; Parquet
for a server is first checked and turned into NDJSON in a temporary folder (an events file
and an NDJSON file there, about twice the data's size on disk, under ``TMPDIR``).

NDJSON may start with a UTF-8 byte order mark, as files from Windows tools do: it is
skipped. A ``-f`` that the source plainly is not (no Parquet magic bytes, or Parquet read as
NDJSON) is a usage error naming the right one, before anything is read.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import click

from localevents._cli._progress import counting_commits, open_progress
from localevents._cli._render import counted, stderr_console
from localevents._cli._signals import DeferredStop
from localevents._cli._target import target_options
from localevents._exceptions import ConfigurationError, HTTPStatusError, InvalidEventError
from localevents._import_files import is_parquet, not_a_file
from localevents._settings import get_settings
from localevents.client._sync_api import get_sync_client
from localevents.storage import export_events, import_events, open_store, release

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents._cli._target import Target
    from localevents.client._sync_api import SyncEventsAPIClient
    from localevents.storage import EventStore

__all__ = ("import_",)

Format = Literal["ndjson", "parquet"]


@click.command("import")
@click.argument("source", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(["ndjson", "parquet"]),
    help="Default: Parquet for a folder or a file that starts like one, else NDJSON.",
)
@target_options
def import_(*, source: Path, format_: str | None, target: Target) -> None:
    """Store the events of SOURCE: an NDJSON file, a Parquet file, or a folder of them
    (such as an export's day= folders); - or a pipe (<(zcat events.ndjson.gz)) is read
    into a temporary file first.

    Every row is checked first: a bad one is named and nothing is stored. Events already
    stored (by id) are skipped. Without a server the events file keeps each event's
    received time; a server stamps it anew.
    """
    kind = cast("Format | None", format_)
    with target.session(), _as_file(source) as path:  # an unreadable SOURCE is one line too
        _check_format(path, kind)
        name = "standard input" if str(source) == "-" else str(source)
        if target.api_url is None:
            _into_file(path, kind, name)
        else:
            _to_server(path, _detect(path, kind), target, name)


@contextlib.contextmanager
def _as_file(source: Path) -> Iterator[Path]:
    """SOURCE itself when it is a file or a folder. Standard input (``-``), a pipe or a
    device is first copied into a temporary file (under ``TMPDIR``): an import reads its
    source twice, and the second read of a pipe finds it empty. Errors name SOURCE."""
    piped = str(source) == "-"
    if not piped and not_a_file(source) is None:
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="localevents-import-") as scratch:
        copy = Path(scratch) / "source"
        with (
            contextlib.nullcontext(sys.stdin.buffer) if piped else source.open("rb") as data,
            copy.open("wb") as sink,
        ):
            shutil.copyfileobj(data, sink)
        try:
            yield copy
        except (InvalidEventError, ConfigurationError) as exc:
            named = str(exc).replace(str(copy), "standard input" if piped else str(source))
            kind = InvalidEventError if isinstance(exc, InvalidEventError) else ConfigurationError
            raise kind(named) from None


def _detect(source: Path, kind: Format | None) -> Format:
    """The format as given, else as ``import_events`` detects it."""
    if kind is not None:
        return kind
    if source.is_dir() or is_parquet(source):
        return "parquet"
    return "ndjson"


def _check_format(source: Path, kind: Format | None) -> None:
    """Refuse a --format that SOURCE plainly is not (a usage error, exit 2), naming the one
    it is, rather than let the reader of the wrong format fail on its bytes."""
    if kind is None or kind == (found := _detect(source, None)):
        return
    if source.is_dir():
        what = "a folder, which is read as Parquet files"
    elif found == "parquet":
        what = "a Parquet file"
    else:
        what = "not a Parquet file (it does not start with PAR1)"
    raise click.BadParameter(
        f"{source} is {what}: use -f {found}, or leave -f out", param_hint="'-f' / '--format'"
    )


def _into_file(path: Path, kind: Format | None, source: str) -> None:
    database = get_settings().database_path
    # A stop signal or Ctrl-C ends the import between two batches: the file is closed, and
    # what was stored is said (counted in the file), before the process ends by the signal.
    with DeferredStop() as stopping:
        store = open_store(database)  # first: a file held by a server is a clear error
        try:
            before = _stored(store)
            with (
                open_progress(f"importing {source}", unit="events stored") as bar,
                counting_commits(store, bar),
            ):
                summary = import_events(store, path, format=kind, between_batches=stopping.check)
        except BaseException:
            if stopping.signum is not None:
                stderr_console().print(
                    f"interrupted: stored {counted(_stored(store) - before, 'new event')} "
                    f"from {source} in {database}; the same import again stores the rest (it "
                    "skips the ids already there)"
                )
            raise
        finally:
            release(store)
    skipped = summary.read - summary.stored
    stderr_console().print(
        f"read {counted(summary.read, 'event')} from {source}: stored {summary.stored} new in "
        f"{database}, {skipped} already there"
    )


def _to_server(path: Path, kind: Format, target: Target, source: str) -> None:
    with (
        open_progress(f"sending {source} to {target}", counting=False),
        get_sync_client(api_url=target.api_url, api_key=target.api_key) as client,
    ):
        sent = _send_parquet(client, path) if kind == "parquet" else client.import_events(path)
    stderr_console().print(
        f"sent {counted(sent, 'event')} from {source} to {target} (it skips the ids it already has)"
    )


def _send_parquet(client: SyncEventsAPIClient, source: Path) -> int:
    """Check the Parquet rows (naming a bad one), then send them as NDJSON; an event the
    server refuses is named by its id in SOURCE (the NDJSON's line numbers mean nothing)."""
    with tempfile.TemporaryDirectory(prefix="localevents-import-") as scratch:
        database, lines = Path(scratch) / "events.duckdb", Path(scratch) / "events.ndjson"
        import_events(database, source, format="parquet")
        export_events(database, lines, format="ndjson")
        try:
            return client.import_events(lines)
        except HTTPStatusError as exc:
            line = re.compile(rf"^{re.escape(str(lines))}, line \d+ \(event ([^)]+)\)")
            message = line.sub(lambda found: f"{source}, event {found[1]}", str(exc), count=1)
            raise type(exc)(message, request=exc.request, response=exc.response) from None


def _stored(store: EventStore) -> int:
    """How many events ``store`` holds."""
    return int(store.fetchall("SELECT count(*) FROM events")[0][0])
