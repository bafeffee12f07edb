"""The events API as a Litestar application (``create_app``)."""

from __future__ import annotations

from localevents.server._app import API_PREFIX, create_app

__all__ = ("API_PREFIX", "create_app")
