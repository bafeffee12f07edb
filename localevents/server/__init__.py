"""The events API as a Litestar application (``create_app``).

``CheckpointWSProtocol`` (uvicorn's side of the checkpoint extension) loads on first use, so
an in-process app never imports uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localevents._lazy import lazy_exports
from localevents.server._app import API_PREFIX, create_app

if TYPE_CHECKING:
    from localevents.server._ws_protocol import CheckpointWSProtocol

__all__ = ("API_PREFIX", "CheckpointWSProtocol", "create_app")

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        __name__, {"localevents.server._ws_protocol": ("CheckpointWSProtocol",)}
    )
