"""UTC instants as datetimes and as integer epoch microseconds (how storage keeps them)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

__all__ = (
    "EARLIEST",
    "EPOCH",
    "LATEST",
    "ago",
    "from_epoch_us",
    "now_utc",
    "to_epoch_us",
    "uuid7",
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
"""The earliest instant there is (0001-01-01 UTC)."""
LATEST = datetime.max.replace(tzinfo=UTC)
"""The latest instant there is (9999-12-31T23:59:59.999999 UTC)."""
_ONE_US = timedelta(microseconds=1)


def now_utc() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def ago(span: timedelta, now: datetime | None = None) -> datetime:
    """``span`` before ``now`` (default: the current instant), or :data:`EARLIEST` when that
    is before year 1: a period of thousands of years reaches back to the beginning."""
    now = now_utc() if now is None else now
    try:
        return now - span
    except OverflowError:
        return EARLIEST


def to_epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch; naive datetimes are read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _ONE_US


def from_epoch_us(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit Unix milliseconds, then randomness.

    Time order matters: storage checks for duplicate ids, and time-ordered ids let DuckDB
    skip every row group whose id range cannot hold the new ones.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10))
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)
