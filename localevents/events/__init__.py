"""The domain: events, resources, filters, counting and pages (pure, no I/O).

The sample-data generator loads on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localevents._lazy import lazy_exports
from localevents.events._counting import Countable, EventCount, TimeUnit
from localevents.events._filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventRelatedFilter,
    EventResourceFilter,
    EventTextFilter,
)
from localevents.events._pages import EventPage
from localevents.events._schemas import Event, ReceivedEvent, RelatedResource, Resource
from localevents.events._time import uuid7

if TYPE_CHECKING:
    from localevents.events._samples import generate_events, standard_event

__all__ = (
    "Countable",
    "Event",
    "EventAnyResourceFilter",
    "EventCount",
    "EventFilter",
    "EventIDFilter",
    "EventNameFilter",
    "EventOccurredFilter",
    "EventPage",
    "EventRelatedFilter",
    "EventResourceFilter",
    "EventTextFilter",
    "ReceivedEvent",
    "RelatedResource",
    "Resource",
    "TimeUnit",
    "generate_events",
    "standard_event",
    "uuid7",
)

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        __name__, {"localevents.events._samples": ("generate_events", "standard_event")}
    )
