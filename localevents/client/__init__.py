"""The SDK's network side: the retrying HTTP client, the API client, the lifespan driver."""

from __future__ import annotations

from localevents.client._api import EventsAPIClient, get_client
from localevents.client._http import RetryingAsyncClient
from localevents.client._lifespan import app_lifespan

__all__ = ("EventsAPIClient", "RetryingAsyncClient", "app_lifespan", "get_client")
