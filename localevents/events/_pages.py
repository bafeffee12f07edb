"""One page of a query, as the API answers it."""

from __future__ import annotations

import msgspec

from localevents.events._schemas import ReceivedEvent

__all__ = ("EventPage",)


class EventPage(msgspec.Struct, kw_only=True):
    """Events of one page, the total matching the query, and the next page's URL (or None)."""

    events: list[ReceivedEvent]
    total: int
    next_page: str | None
