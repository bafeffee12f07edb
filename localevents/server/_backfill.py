"""What a subscriber of ``/api/events/out`` gets from storage before its live events.

A subscription opens on the live hub first, then reads the store, so an event committed
meanwhile may be both read and queued live: :func:`sent_twice` says which, so that the live
stream skips exactly those.

Two kinds of backfill:

- :func:`backfill`, Prefect's: the stored events of the window, oldest first (by
  ``occurred``).
- :func:`backfill_after`, for a subscriber that says where it stopped (``"after"``: the
  ``position`` of the last event it got, or ``"start"``): the events of the window stored
  after that one, in the order the store took them, each with its position. Live events
  go out in that same order, so a subscriber that reconnects with the position of the
  last event it got resumes exactly there, however the events' ``occurred`` times are
  ordered (a producer's backlog, an import, clocks that disagree). A position from another
  file (``stream_id``) is foreign: the whole window is sent, in the store's order. So is
  one past the newest event stored, which only a file restored from a backup can be asked
  for: the events it takes next get the seqs that position went past.

Each page is one read within the server's query time limit. A page past it ends the
subscription for good (see ``_websockets``), with :func:`past_time_limit` as the reason: the
same backfill would take as long again on a reconnect.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from localevents.events._time import LATEST
from localevents.server._hub import FellBehind, live_hub
from localevents.server._live_match import envelope, position
from localevents.storage._queries import events_after, query_events, query_next_page

if TYPE_CHECKING:
    from litestar import WebSocket

    from localevents.events._filters import EventFilter
    from localevents.server._hub import Subscription
    from localevents.server._reading import Reader
    from localevents.storage._engine import EventStore

__all__ = (
    "NOT_A_POSITION",
    "START",
    "backfill",
    "backfill_after",
    "parse_position",
    "past_time_limit",
    "sent_twice",
)

NOT_A_POSITION = "'after' must be \"start\" or the position of an event this server sent"
START = "start"
"""``after`` for a subscriber that has no position yet: the whole window, in store order."""
_POSITION = re.compile(r"([0-9a-f]{16}):(\d{1,19})")


class _Identified(msgspec.Struct, gc=False):
    id: uuid.UUID


_id_decoder = msgspec.json.Decoder(_Identified)


def past_time_limit(limit: float | None) -> str:
    """The close reason for a backfill stopped at the query time limit of ``limit`` seconds:
    what to do about it, whole in a close frame's 123 bytes whatever the limit."""
    limit_text = "" if limit is None else f" of {limit:g} s"
    return (
        f"backfill over the query time limit{limit_text}: narrow the filter or window, or "
        "raise LOCALEVENTS_SERVER_QUERY_TIMEOUT"
    )


def parse_position(text: str) -> tuple[str, int] | None:
    """The stream id and ``seq`` of a position a subscriber sent back, or of :data:`START`
    (a stream of no store's); None: neither."""
    if text == START:
        return "", -1
    match = _POSITION.fullmatch(text)
    return None if match is None else (match[1], int(match[2]))


def _open_ended(window: EventFilter) -> EventFilter:
    """Without ``until`` the window has no upper bound (D7), as live delivery has none: a
    stored event stamped ahead of the server's clock (a producer's clock runs fast) is
    backfilled too. A query's own default, "until now", would leave it out, and a
    subscriber reconnecting after it was stored would never get it."""
    if window.occurred.until is not None:
        return window
    occurred = msgspec.structs.replace(window.occurred, until=LATEST)
    return msgspec.structs.replace(window, occurred=occurred)


async def backfill(
    socket: WebSocket[Any, Any, Any], reader: Reader, subscription: Subscription, size: int
) -> set[uuid.UUID]:
    """Send the stored events of the window, oldest first; return their ids. Each page is a
    read within the query time limit."""
    sent: set[uuid.UUID] = set()
    window = _open_ended(subscription.filter)
    page = await reader.read("backfill", query_events, window, size)
    while True:
        for event_json in page.events:
            sent.add(_id_decoder.decode(event_json).id)
            await socket.send_text(envelope(event_json.encode(), None).decode())
        if subscription.fell_behind:  # live events overflowed meanwhile: stop now
            raise FellBehind
        if page.next_token is None:
            return sent
        page = await reader.read("backfill", query_next_page, page.next_token)


async def backfill_after(
    socket: WebSocket[Any, Any, Any],
    reader: Reader,
    subscription: Subscription,
    size: int,
    after: tuple[str, int],
) -> set[uuid.UUID]:
    """Send the stored events of the window that the store took after the position
    ``after`` (all of them for a foreign one), in that order, each with its position;
    return their ids.

    It reads only what was stored before it started: everything stored since is queued
    live (the subscription opened first).
    """
    store = reader.store
    stream_id, after_seq = after
    before_seq = store.next_seq
    if stream_id != store.stream_id or after_seq >= before_seq:
        after_seq = -1  # another file's, or this one's restored from before that position
    stream = store.stream_id.encode()
    window = _open_ended(subscription.filter)
    sent: set[uuid.UUID] = set()
    while True:
        rows = await reader.read("backfill", events_after, window, after_seq, before_seq, size)
        for seq, event_json in rows:
            sent.add(_id_decoder.decode(event_json).id)
            message = envelope(event_json.encode(), position(stream, seq))
            await socket.send_text(message.decode())
        if subscription.fell_behind:
            raise FellBehind
        if len(rows) < size:
            return sent
        after_seq = rows[-1][0]


def sent_twice(
    store: EventStore, subscription: Subscription, sent: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Of the backfilled ids ``sent``, those that the live stream also holds: the only
    ones its sending must skip. An event can be both only if the hub fanned it out after
    the subscription opened and the backfill read it; once the commit in progress has
    reached the hub and the hub has fanned out everything, every such event is in the
    subscription's queue. Keeping the rest would hold every backfilled id (up to 15
    minutes of events) for the connection's life.
    """
    if not sent:
        return sent
    store.wait_for_writes()
    live_hub(store).flush()
    return sent & subscription.queued_ids()
