"""localevents: an embeddable, single-file event store with an async SDK.

Everything public is exported here; ``__all__`` is the whole API.
"""

from __future__ import annotations

from localevents._exceptions import (
    AuthenticationError,
    ConfigurationError,
    DatabaseInUseError,
    EventTooLarge,
    HTTPStatusError,
    InvalidEventError,
    InvalidPageToken,
    InvalidRequestError,
    LocalEventsError,
    RequestTooLarge,
    ServiceUnavailable,
    StorageError,
    TooManyBuckets,
)
from localevents._settings import (
    ServerType,
    Settings,
    determine_server_type,
    get_settings,
    temporary_settings,
)
from localevents.client import EventsAPIClient, RetryingAsyncClient, app_lifespan, get_client
from localevents.ephemeral import EphemeralStore, ephemeral
from localevents.events import (
    Countable,
    Event,
    EventAnyResourceFilter,
    EventCount,
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventPage,
    EventRelatedFilter,
    EventResourceFilter,
    EventTextFilter,
    ReceivedEvent,
    RelatedResource,
    Resource,
    TimeUnit,
    uuid7,
)

__version__ = "0.1.0"

__all__ = (
    "AuthenticationError",
    "ConfigurationError",
    "Countable",
    "DatabaseInUseError",
    "EphemeralStore",
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
    "EventTooLarge",
    "EventsAPIClient",
    "HTTPStatusError",
    "InvalidEventError",
    "InvalidPageToken",
    "InvalidRequestError",
    "LocalEventsError",
    "ReceivedEvent",
    "RelatedResource",
    "RequestTooLarge",
    "Resource",
    "RetryingAsyncClient",
    "ServerType",
    "ServiceUnavailable",
    "Settings",
    "StorageError",
    "TimeUnit",
    "TooManyBuckets",
    "app_lifespan",
    "determine_server_type",
    "ephemeral",
    "get_client",
    "get_settings",
    "temporary_settings",
    "uuid7",
)
