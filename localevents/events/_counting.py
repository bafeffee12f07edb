"""Counting events: what can be counted, time units, and the bucket arithmetic (B §3.6, D11).

Buckets of width ``time_interval x time_unit`` are anchored at 2024-04-01T00:00:00Z (a
Monday, so weeks start on Mondays) and computed on integer epoch microseconds in UTC, so a
bucket is the same whatever the request's range or the session time zone.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from localevents._exceptions import InvalidRequestError, TooManyBuckets
from localevents.events._time import EARLIEST, LATEST, from_epoch_us, to_epoch_us

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "MAXIMUM_BUCKETS",
    "MINIMUM_INTERVAL",
    "PIVOT",
    "BucketPlan",
    "Countable",
    "EventCount",
    "TimeUnit",
    "plan_buckets",
)

PIVOT = datetime(2024, 4, 1, tzinfo=UTC)
MAXIMUM_BUCKETS = 1000
MINIMUM_INTERVAL = 0.01
_PIVOT_US = to_epoch_us(PIVOT)
_FIRST_US = to_epoch_us(EARLIEST)
_LAST_US = to_epoch_us(LATEST)
_CALENDAR_US = _LAST_US - _FIRST_US


class _Choice(enum.StrEnum):
    """A string enum whose error for an unknown value lists the known ones."""

    @classmethod
    def _missing_(cls, value: object) -> None:
        choices = ", ".join(member.value for member in cls)
        raise ValueError(f"{value!r} is not a {cls.__name__}: use one of {choices}")


class Countable(_Choice):
    """What a count-by groups on."""

    day = "day"
    time = "time"
    event = "event"
    resource = "resource"


class TimeUnit(_Choice):
    """Units of a time bucket."""

    week = "week"
    day = "day"
    hour = "hour"
    minute = "minute"
    second = "second"

    @property
    def microseconds(self) -> int:
        """Length of one unit."""
        return _UNIT_US[self]

    def period_end(self, instant: datetime) -> datetime:
        """The last microsecond of the calendar period (of this unit) containing ``instant``."""
        start_us = _floor(to_epoch_us(instant) - _PIVOT_US, self.microseconds)
        return from_epoch_us(_PIVOT_US + start_us + self.microseconds - 1)


_UNIT_US: Mapping[TimeUnit, int] = {
    TimeUnit.week: 7 * 86_400_000_000,
    TimeUnit.day: 86_400_000_000,
    TimeUnit.hour: 3_600_000_000,
    TimeUnit.minute: 60_000_000,
    TimeUnit.second: 1_000_000,
}


def _floor(value: int, step: int) -> int:
    return value // step * step  # Python's // floors, also for instants before the pivot


class EventCount(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a count-by answer."""

    value: str
    label: str
    count: int
    start_time: datetime
    end_time: datetime


class BucketPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The buckets a time count-by answers with: ``count`` buckets of ``width_us`` from
    ``first_start_us`` (epoch microseconds), gap-filled."""

    first_start_us: int
    width_us: int
    count: int

    @property
    def end_us(self) -> int:
        """The last microsecond covered by the plan."""
        return self.first_start_us + self.count * self.width_us - 1

    def covering(self, counts: Mapping[int, int]) -> BucketPlan:
        """The plan, extended through the last bucket that ``counts`` (by position) holds:
        the plan ends with the current period, and events stamped later still belong in
        the answer (a producer's clock ahead, or future events the filter's ``until``
        takes). Within the bucket limit, which counts up to ``until``."""
        last = max(counts, default=-1)
        if last < self.count:
            return self
        extended = msgspec.structs.replace(self, count=last + 1)
        _check_years(extended)
        return extended

    def index_of(self, instant_us: int) -> int:
        """Position in the answer of the bucket holding ``instant_us``."""
        return (instant_us - self.first_start_us) // self.width_us

    def rows(self, counts: Mapping[int, int]) -> list[EventCount]:
        """Every bucket in order, with the counts by position (missing = 0)."""
        rows = []
        for i in range(self.count):
            start = from_epoch_us(self.first_start_us + i * self.width_us)
            rows.append(
                EventCount(
                    value=str(i),
                    label=start.isoformat(),
                    count=counts.get(i, 0),
                    start_time=start,
                    end_time=start + timedelta(microseconds=self.width_us - 1),
                )
            )
        return rows


def plan_buckets(
    since: datetime,
    until: datetime | None,
    time_unit: TimeUnit,
    time_interval: float,
    now: datetime,
) -> BucketPlan:
    """Validate a time count-by and lay out its buckets.

    The range is clipped at the end of the current period of ``time_unit`` when ``until`` is
    in the future; buckets run from the one holding ``since`` through the one holding the end
    (and through the last one holding an event, see :meth:`BucketPlan.covering`).
    """
    if time_interval < MINIMUM_INTERVAL:
        raise InvalidRequestError(f"The minimum interval is {MINIMUM_INTERVAL}")
    width = time_interval * time_unit.microseconds
    if not width <= _CALENDAR_US:  # NaN and infinity too
        raise InvalidRequestError(
            f"The interval {time_interval:g} {time_unit.value}s is longer than years 1-9999"
        )
    width_us = round(width)
    _check_order(since, until, now)
    until = now if until is None else until
    span_us = to_epoch_us(until) - to_epoch_us(since)
    requested = math.ceil(span_us / width_us)
    if requested > MAXIMUM_BUCKETS:
        raise TooManyBuckets(
            f"The given interval would create {requested} buckets, which is too many. "
            "Please increase the interval or reduce the time range to produce "
            f"{MAXIMUM_BUCKETS} buckets or fewer."
        )
    end = min(until, time_unit.period_end(now)) if until > now else until
    since_us = to_epoch_us(since)
    first_start_us = _PIVOT_US + _floor(since_us - _PIVOT_US, width_us)
    last_index = (max(to_epoch_us(end), since_us) - first_start_us) // width_us
    plan = BucketPlan(first_start_us=first_start_us, width_us=width_us, count=last_index + 1)
    _check_years(plan)
    return plan


def _check_order(since: datetime, until: datetime | None, now: datetime) -> None:
    """Refuse a range that ends before it starts: it has no bucket to lay out."""
    if until is None and since > now:
        raise InvalidRequestError(
            f"occurred.since ({since.isoformat()}) is in the future and occurred.until is "
            f"not given, so the range ends now ({now.isoformat()}), before it starts: give "
            "an occurred.until after occurred.since"
        )
    if until is not None and since > until:
        raise InvalidRequestError(
            f"occurred.since ({since.isoformat()}) is after occurred.until "
            f"({until.isoformat()}): the range ends before it starts"
        )


def _check_years(plan: BucketPlan) -> None:
    if plan.first_start_us < _FIRST_US or plan.end_us > _LAST_US:
        raise InvalidRequestError(
            "The buckets would reach outside years 1-9999 (buckets of the interval are "
            f"aligned to {PIVOT.isoformat()}): narrow the range or shorten the interval"
        )
