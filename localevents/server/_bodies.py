"""Request bodies of the query routes (events themselves are ``ReceivedEvent``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from localevents.events._counting import MINIMUM_INTERVAL, TimeUnit
from localevents.events._filters import EventFilter

__all__ = ("MAXIMUM_PAGE_SIZE", "CountRequest", "FilterRequest")

MAXIMUM_PAGE_SIZE = 1000


class FilterRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/events/filter``: a filter (default: the last 180 days) and a
    page size."""

    filter: EventFilter | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=MAXIMUM_PAGE_SIZE)] = 50


class CountRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/events/count-by/{countable}``."""

    filter: EventFilter
    time_unit: TimeUnit = TimeUnit.day
    time_interval: Annotated[float, msgspec.Meta(ge=MINIMUM_INTERVAL)] = 1.0
