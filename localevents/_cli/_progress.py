"""Progress on stderr for the commands that move many events: ``export``, ``import``, ``sample``.

The display (a spinner, what is happening, a bar, events so far, bytes written, time taken)
is live on a terminal only and vanishes when the work ends, leaving the command's one-line
summary; piped or redirected, stderr gets the summary alone.

The library calls behind these commands report nothing until they return, so progress is
observed from outside them: an export by the hidden partial file (or folder) that both the
store and the SDK write beside the destination before renaming it into place
(``.NAME.partial-*``), writes to an events file by the store's commit listener.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from rich import filesize
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from localevents._cli._render import stderr_console

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from rich.progress import Task

    from localevents.storage import EventStore
    from localevents.storage._rows import EncodedEvents

__all__ = (
    "POLL_INTERVAL",
    "EventProgress",
    "counting_commits",
    "open_progress",
    "path_size",
    "watching_export",
)

POLL_INTERVAL = 0.2
"""Seconds between looks at an export's partial file."""
_READ_BYTES = 1 << 20


class _Events(ProgressColumn):
    """``N events`` (``N/M events`` with a total, another unit if the task says so);
    nothing while the count is unknown."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counting", True):
            return Text("")
        done = f"{int(task.completed):,}"
        if task.total is not None:
            done = f"{done}/{int(task.total):,}"
        return Text(f"{done} {task.fields.get('unit', 'events')}", style="progress.download")


class _Bytes(ProgressColumn):
    """The bytes written so far, when the task tracks them."""

    def render(self, task: Task) -> Text:
        written = task.fields.get("bytes")
        if written is None:
            return Text("")
        return Text(filesize.decimal(int(written)), style="progress.filesize")


class EventProgress:
    """One task on a live display: advance it by events, set its bytes."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, events: int) -> None:
        """Count ``events`` more (thread-safe)."""
        self._progress.advance(self._task, events)

    def update(self, *, events: int, written: int) -> None:
        """Set the events counted and the bytes written so far (thread-safe)."""
        self._progress.update(self._task, completed=events, bytes=written)


@contextlib.contextmanager
def open_progress(
    description: str,
    *,
    total: int | None = None,
    counting: bool = True,
    unit: str = "events",
    tracks_bytes: bool = False,
) -> Iterator[EventProgress]:
    """A live display on stderr for one piece of work, removed when the block ends.

    ``total`` (events) draws a filling bar, else a pulsing one; ``counting=False`` hides
    the event count (a Parquet export learns it only at the end); ``unit`` names what is
    counted.
    """
    console = stderr_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        _Events(),
        _Bytes(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # else rich leaves a blank line behind
    )
    written = 0 if tracks_bytes else None
    with progress:
        task = progress.add_task(
            description, total=total, counting=counting, unit=unit, bytes=written
        )
        yield EventProgress(progress, task)


def path_size(path: Path) -> int:
    """The size of a file, or of every file under a folder (0 for what has gone)."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:  # removed or renamed while we looked
        return 0


class _Partials:
    """The partial files beside an export's destination: how large the largest one is and,
    for NDJSON, how many complete lines (events) have been written into them."""

    def __init__(self, destination: Path, *, count_lines: bool) -> None:
        self._folder = destination.parent
        self._prefix = f".{destination.name}.partial-"
        self._count_lines = count_lines
        self._scanned: dict[Path, int] = {}
        self.lines = 0

    def poll(self) -> int:
        """Look again; return the size in bytes of the largest partial."""
        try:
            found = [p for p in self._folder.iterdir() if p.name.startswith(self._prefix)]
        except OSError:
            return 0
        for path in found:
            if self._count_lines and path.is_file():
                self._scan(path)
        return max(map(path_size, found), default=0)

    def _scan(self, path: Path) -> None:
        """Count the newlines written to ``path`` since the last look."""
        offset = self._scanned.get(path, 0)
        with contextlib.suppress(OSError), path.open("rb") as partial:
            partial.seek(offset)
            while data := partial.read(_READ_BYTES):
                self.lines += data.count(b"\n")
                offset += len(data)
        self._scanned[path] = offset


@contextlib.contextmanager
def watching_export(
    progress: EventProgress, destination: Path, *, count_lines: bool
) -> Iterator[None]:
    """Report the export into ``destination`` on ``progress`` while the block runs, from
    a thread that looks at its partial file every :data:`POLL_INTERVAL` seconds."""
    partials = _Partials(destination, count_lines=count_lines)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(POLL_INTERVAL):
            written = partials.poll()
            progress.update(events=partials.lines, written=written)

    watcher = threading.Thread(target=watch, name="localevents-export-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


@contextlib.contextmanager
def counting_commits(store: EventStore, progress: EventProgress) -> Iterator[None]:
    """Advance ``progress`` by the new events of each commit to ``store`` in the block."""

    def committed(batches: list[EncodedEvents]) -> None:
        progress.advance(sum(len(batch.events) for batch in batches))

    store.add_commit_listener(committed)
    try:
        yield
    finally:
        store.remove_commit_listener(committed)
