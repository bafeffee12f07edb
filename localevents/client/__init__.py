"""The SDK's network side: the retrying HTTP client, the API client, the lifespan driver, and
the events clients and subscriber that stream over WebSockets."""

from __future__ import annotations

from localevents.client._api import EventsAPIClient, get_client
from localevents.client._events_clients import (
    EventsClient,
    NullEventsClient,
    WebSocketEventsClient,
    get_events_client,
)
from localevents.client._http import RetryingAsyncClient
from localevents.client._lifespan import app_lifespan
from localevents.client._subscriber import EventSubscriber, get_events_subscriber

__all__ = (
    "EventSubscriber",
    "EventsAPIClient",
    "EventsClient",
    "NullEventsClient",
    "RetryingAsyncClient",
    "WebSocketEventsClient",
    "app_lifespan",
    "get_client",
    "get_events_client",
    "get_events_subscriber",
)
