"""Where an export lands: the destination checks and the write-then-rename that both the
offline export (``storage``) and the download through the API (``client``) use.

An export is written under a hidden temporary name beside its destination and renamed into
place when complete, so a failed export leaves nothing behind and a reader never sees half
a file. A leaf module, like ``_settings``: it imports nothing of ours but the exceptions.
"""

from __future__ import annotations

import shutil
import uuid
from typing import TYPE_CHECKING

from localevents._exceptions import ConfigurationError, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = (
    "check_destination",
    "move_into_place",
    "partial_path",
    "publish",
    "remove",
    "write_failure",
)


def check_destination(destination: Path, *, folder: bool) -> None:
    """Refuse a destination that exists (an empty folder is fine for a Parquet export) or
    whose parent folder does not."""
    if folder and destination.is_dir() and not any(destination.iterdir()):
        return
    if destination.exists() or destination.is_symlink():
        raise ConfigurationError(
            f"cannot export to {destination}: it already exists (give a new path, or an "
            "empty folder for Parquet)"
        )
    if not destination.parent.is_dir():
        raise ConfigurationError(
            f"cannot export to {destination}: the folder {destination.parent} does not exist"
        )


def partial_path(destination: Path) -> Path:
    """A hidden sibling of ``destination`` to write into before the final rename."""
    return destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"


def remove(path: Path) -> None:
    """Remove a partial file or folder, if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def move_into_place(partial: Path, destination: Path) -> None:
    """Rename the complete ``partial`` to ``destination`` (an empty folder there, allowed
    by :func:`check_destination`, is replaced)."""
    if destination.is_dir():
        destination.rmdir()
    partial.rename(destination)


def publish(destination: Path, write: Callable[[Path], int]) -> int:
    """Run ``write`` on a partial path beside ``destination`` and move the result into
    place; on any failure remove what it wrote. Return what ``write`` returned."""
    partial = partial_path(destination)
    try:
        count = write(partial)
        move_into_place(partial, destination)
    except OSError as exc:  # a full disk, a file size limit, a folder gone
        remove(partial)
        raise write_failure(destination, exc) from exc
    except BaseException:
        remove(partial)
        raise
    return count


def write_failure(destination: Path, exc: BaseException) -> StorageError:
    """One line saying that ``destination`` could not be written, and why."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    first = next(iter(reason.splitlines()), type(exc).__name__)
    return StorageError(f"cannot write {destination}: {first}; nothing was left there")
