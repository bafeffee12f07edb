"""The store an app's requests use, found in its state while its lifespan holds it.

The lifespan opens the store before the app serves and removes it once released (see
``_app``). A request outside that span, one still running as the app shuts down or one sent
by an ASGI server started without the lifespan (``uvicorn --lifespan off``), is refused
with 503 and the reason, not an internal error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localevents._exceptions import ServiceUnavailable

if TYPE_CHECKING:
    from litestar.datastructures import State

    from localevents.storage._engine import EventStore

__all__ = ("NOT_OPEN", "store_of")

NOT_OPEN = (
    "the events store is not open: the app is shutting down, "
    "or its ASGI server did not run the app's lifespan"
)


def store_of(state: State) -> EventStore:
    """The app's open store; :class:`ServiceUnavailable` when it holds none."""
    store: EventStore | None = state.get("store")
    if store is None:
        raise ServiceUnavailable(NOT_OPEN)
    return store
