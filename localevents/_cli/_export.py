"""``localevents export``: matching events to an NDJSON file or a folder of Parquet files.

From a server (``--api-url``) it goes through ``EventsAPIClient.export_events``, so a live
store is exported while it runs; without one it reads the events file directly
(``localevents.storage.export_events``), which no server may hold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import click
import msgspec
from rich import filesize

from localevents._cli._filters import Criteria, filter_options
from localevents._cli._progress import open_progress, path_size, watching_export
from localevents._cli._render import counted, stderr_console
from localevents._cli._target import target_options
from localevents._destinations import check_destination
from localevents._exceptions import ConfigurationError
from localevents._settings import get_settings
from localevents.client._sync_api import get_sync_client
from localevents.storage import export_events
from localevents.storage._export import EVERYTHING

if TYPE_CHECKING:
    from localevents._cli._target import Target
    from localevents.events._filters import EventFilter

__all__ = ("export",)

Format = Literal["ndjson", "parquet"]


@click.command()
@click.argument("destination", metavar="DEST", type=click.Path())
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(["ndjson", "parquet"]),
    default="ndjson",
    show_default=True,
    help="One file of JSON lines, or a folder of day=YYYY-MM-DD/events-0.parquet files.",
)
@filter_options(window=True, until_default="default: no end, events stamped in the future too")
@target_options
def export(*, destination: str, format_: str, criteria: Criteria, target: Target) -> None:
    """Write the matching events to DEST, oldest first, and say how many.

    Without --since and --until every stored event is exported, whenever it occurred; an
    end of the range left out stays open (--since alone exports future-stamped events too).
    DEST must not exist (an empty folder is fine for Parquet); it is a path, never standard
    output ('-' is refused: to print NDJSON use 'localevents query --all --json'). From a
    server a live store is exported while it runs; without one the events file is read
    directly.

    \b
    localevents export march.ndjson --since 2026-03-01 --until 2026-04-01
    localevents export events-parquet/ --format parquet -p prefect.flow-run.
    """
    kind = cast("Format", format_)
    path = _destination(destination, kind)
    event_filter = _export_filter(criteria)
    with target.session():
        count = _export(target, path, kind, event_filter)
    size = filesize.decimal(path_size(path))
    stderr_console().print(f"exported {counted(count, 'event')} ({size}) to {path}", style="dim")


def _destination(destination: str, kind: Format) -> Path:
    """DEST as a path, refused (exit 2) if it exists or its folder does not, or if it is
    ``-``: an export is written beside its destination and renamed into place when complete
    (and its progress read from the file's size), so it cannot stream to standard output,
    and a file named ``-`` is never what was meant (``./-`` names one)."""
    if destination == "-":
        raise click.BadParameter(
            "'-' (standard output) is not a destination: export writes a file or folder; "
            "give a path, or print NDJSON with 'localevents query --all --json'",
            param_hint="DEST",
        )
    if kind == "ndjson" and destination.endswith(("/", os.sep)):
        raise click.BadParameter(
            "names a folder, but NDJSON is one file: give a file name, or --format parquet",
            param_hint="DEST",
        )
    path = Path(destination)
    try:
        check_destination(path, folder=kind == "parquet")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="DEST") from None
    return path


def _export_filter(criteria: Criteria) -> EventFilter | None:
    """The filter of the options; an open end of the range is open (every event whenever
    it occurred, as an export without a filter), and ``None`` without any option."""
    if criteria == Criteria():
        return None
    event_filter = criteria.to_filter(order="ASC", since=EVERYTHING.occurred.since)
    if criteria.until is not None:
        return event_filter
    occurred = msgspec.structs.replace(event_filter.occurred, until=EVERYTHING.occurred.until)
    return msgspec.structs.replace(event_filter, occurred=occurred)


def _export(target: Target, path: Path, kind: Format, event_filter: EventFilter | None) -> int:
    with (
        open_progress(f"exporting to {path}", counting=kind == "ndjson", tracks_bytes=True) as bar,
        watching_export(bar, path, count_lines=kind == "ndjson"),
    ):
        if target.api_url is None:
            database = get_settings().database_path
            return export_events(database, path, format=kind, filter=event_filter)
        with get_sync_client(api_url=target.api_url, api_key=target.api_key) as client:
            return client.export_events(path, format=kind, filter=event_filter)
