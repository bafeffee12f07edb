"""The domain: events, resources, filters, counting and pages (pure, no I/O)."""

from __future__ import annotations

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
from localevents.events._samples import generate_events, standard_event
from localevents.events._schemas import Event, ReceivedEvent, RelatedResource, Resource
from localevents.events._time import uuid7

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
