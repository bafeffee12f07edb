"""The events API as a Litestar application (``create_app``)."""

from __future__ import annotations

from localevents.server._app import API_PREFIX, create_app
from localevents.server._ws_protocol import CheckpointWSProtocol

__all__ = ("API_PREFIX", "CheckpointWSProtocol", "create_app")
