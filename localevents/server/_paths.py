"""Where the events API lives on a server."""

from __future__ import annotations

__all__ = ("API_PREFIX",)

API_PREFIX = "/api"
"""Every route of the API is under this path; an API URL (``LOCALEVENTS_API_URL``) ends in it."""
