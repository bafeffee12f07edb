"""The SDK's network side: the retrying HTTP clients and API clients (async, and sync twins),
the lifespan driver, and the events clients and subscriber that stream over WebSockets.

Each name loads with its module on first use (PEP 562): httpx and httpx-ws only when needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from localevents._lazy import lazy_exports

if TYPE_CHECKING:
    from localevents.client._api import EventsAPIClient, get_client
    from localevents.client._asserting import (
        AssertingEventsClient,
        AssertingPassthroughEventsClient,
    )
    from localevents.client._emit import emit_event, should_emit_events
    from localevents.client._events_clients import (
        EventsClient,
        NullEventsClient,
        WebSocketEventsClient,
        get_events_client,
    )
    from localevents.client._http import RetryingAsyncClient
    from localevents.client._lifespan import app_lifespan
    from localevents.client._subscriber import EventSubscriber, get_events_subscriber
    from localevents.client._sync_api import SyncEventsAPIClient, get_sync_client
    from localevents.client._sync_http import RetryingClient
    from localevents.client._worker import EventsWorker, EventsWorkerStatistics

__all__ = (
    "AssertingEventsClient",
    "AssertingPassthroughEventsClient",
    "EventSubscriber",
    "EventsAPIClient",
    "EventsClient",
    "EventsWorker",
    "EventsWorkerStatistics",
    "NullEventsClient",
    "RetryingAsyncClient",
    "RetryingClient",
    "SyncEventsAPIClient",
    "WebSocketEventsClient",
    "app_lifespan",
    "emit_event",
    "get_client",
    "get_events_client",
    "get_events_subscriber",
    "get_sync_client",
    "should_emit_events",
)

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "localevents.client._api": ("EventsAPIClient", "get_client"),
            "localevents.client._asserting": (
                "AssertingEventsClient",
                "AssertingPassthroughEventsClient",
            ),
            "localevents.client._emit": ("emit_event", "should_emit_events"),
            "localevents.client._events_clients": (
                "EventsClient",
                "NullEventsClient",
                "WebSocketEventsClient",
                "get_events_client",
            ),
            "localevents.client._http": ("RetryingAsyncClient",),
            "localevents.client._lifespan": ("app_lifespan",),
            "localevents.client._subscriber": ("EventSubscriber", "get_events_subscriber"),
            "localevents.client._sync_api": ("SyncEventsAPIClient", "get_sync_client"),
            "localevents.client._sync_http": ("RetryingClient",),
            "localevents.client._worker": ("EventsWorker", "EventsWorkerStatistics"),
        },
    )
