"""The events WebSockets (SPEC B §4 with D3, D5, D7-D9).

``/api/events/in``: after the handshake every frame is one event, checked exactly like one
element of ``POST /api/events`` and committed before the next frame is read. A frame that is
not a valid event closes the socket with 1007 and the reason; nothing else is ever sent. (A
pong proves the frames before its ping were stored only when the server answers pings in
order with the frames: see ``_ws_protocol``.)

``/api/events/out``: after the handshake one ``{"type": "filter", ...}`` message; the socket
subscribes to the live hub first, then sends the stored events of the (clamped) window oldest
first (or, for a subscriber resuming ``after`` a position, in the order they were stored:
see ``_backfill``), then the live ones, skipping those already sent. A subscriber the live
hub lets go is closed with the code and reason the hub gives (see ``_hub``): 1013 for one
that falls behind, or for all when the stream is overloaded, 1008 for one whose filter is
too costly to match live. One whose backfill runs past the query time limit is closed with
1008 (policy violation) and a reason saying what to do, not 1011 (server error): clients
retry 1011, and the same backfill would run as long again (the SDK's subscriber retried it
for ever when each attempt took the whole limit to fail). 1008 is what the server already
closes with when a client goes past a limit (an ``auth`` message over 16 KiB): a standard
code, final for every client, where one of 4000-4999 would mean nothing to most of them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
from litestar import WebSocket, websocket

from localevents._exceptions import (
    InvalidEventError,
    LocalEventsError,
    QueryTimeout,
    ServiceUnavailable,
)
from localevents._metrics import (
    EVENTS_INGESTED,
    SUBSCRIBERS_FELL_BEHIND,
    SUBSCRIBERS_TOO_COSTLY,
    count_rejection,
)
from localevents.events._filters import EventFilter
from localevents.events._nesting import NotUtf8, decoded
from localevents.events._time import ago, now_utc
from localevents.server._backfill import (
    NOT_A_POSITION,
    backfill,
    backfill_after,
    parse_position,
    past_time_limit,
    sent_twice,
)
from localevents.server._handshake import (
    CLIENT_GONE,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    TRY_AGAIN_LATER,
    Checkpoint,
    accept_prefect_socket,
    close_socket,
    end_handshake,
    mark_checkpoints,
    queued_messages,
    raw_frame_writer,
    raw_frame_writer_now,
    receive_frame,
    receive_frame_or_checkpoint,
    receive_handshake_frame,
)
from localevents.server._hub import FELL_BEHIND, FILTER_TOO_COSTLY, FellBehind, live_hub
from localevents.server._ingest import decode_event, syntax_error
from localevents.server._reading import Reader, query_limit
from localevents.server._state import store_of

if TYPE_CHECKING:
    import uuid
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from localevents._settings import Settings
    from localevents.server._hub import Dropped, LiveEvent, Subscription
    from localevents.storage._engine import EventStore
    from localevents.storage._rows import Row

__all__ = ("WEBSOCKETS", "SubscribeMessage", "frames_sender", "subscription_filter")

logger = logging.getLogger("localevents.server")

INVALID_FRAME = 1007
INTERNAL_ERROR = 1011


class SubscribeMessage(msgspec.Struct, kw_only=True):
    """The first message on ``/api/events/out`` after the handshake. ``after``, a
    localevents extension, is the ``position`` of the last event the subscriber got: the
    backfill then resumes right after it (see ``_backfill``)."""

    type: str
    filter: EventFilter | None = None
    backfill: bool = True
    after: str | None = None


class _Refused(Exception):
    """A subscription request that cannot be served; the message is the close reason."""


_subscribe_decoder = msgspec.json.Decoder(SubscribeMessage)


class _Typed(msgspec.Struct):
    """A message's ``type`` field, as sent (the rest is only checked for syntax)."""

    type: msgspec.Raw = msgspec.Raw(b"null")


_typed_decoder = msgspec.json.Decoder(_Typed)
_FILTER_TYPE = b'"filter"'


def _subscribe_message(frame: str | bytes) -> tuple[SubscribeMessage, tuple[str, int] | None]:
    """The subscription request, and the position its ``after`` names (parsed).

    Its type is read first, into a struct of that field alone: the rest is checked for
    syntax without building anything (an untyped decode of a message of a million empty
    objects held hundreds of megabytes)."""
    try:
        kind = bytes(decoded(_typed_decoder.decode, frame).type)
    except msgspec.DecodeError as exc:  # not an object, or not JSON
        syntax = syntax_error(frame, exc)
        if syntax is not None:
            raise _Refused(f"Invalid filter: the message is not valid JSON: {syntax}") from None
        kind = b""
    if kind != _FILTER_TYPE:
        raise _Refused("Expected 'filter' message")
    try:
        request = decoded(_subscribe_decoder.decode, frame)
    except NotUtf8 as exc:
        raise _Refused(f"Invalid filter: the message is not valid JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _Refused(f"Invalid filter: {exc}") from None
    if request.after is None:
        return request, None
    after = parse_position(request.after)
    if after is None:
        raise _Refused(f"{NOT_A_POSITION}, not {request.after!r}")
    return request, after


def subscription_filter(
    event_filter: EventFilter | None, settings: Settings, now: datetime
) -> EventFilter:
    """The filter a subscription runs: ``occurred.since`` no earlier than the backfill
    limit before ``now``, oldest first; ``until`` as given (none: no upper bound, D7)."""
    event_filter = event_filter or EventFilter()
    earliest = ago(settings.events_maximum_websocket_backfill, now)
    occurred = msgspec.structs.replace(
        event_filter.occurred, since=max(event_filter.occurred.since, earliest)
    )
    return msgspec.structs.replace(event_filter, occurred=occurred, order="ASC")


async def _opened(socket: WebSocket[Any, Any, Any]) -> tuple[Settings, EventStore] | None:
    """Run the handshake; the app's settings and store, or ``None`` once the socket is
    refused or closed. An app that holds no open store (see ``localevents.server._state``)
    closes it with 1013 after the handshake, where a client reads the close (one closed
    during its handshake would wait out its handshake timeout first) and reconnects."""
    state = socket.app.state
    settings: Settings = state.settings
    if not await accept_prefect_socket(socket, settings.api_key):
        return None
    try:
        return settings, store_of(state)
    except ServiceUnavailable as exc:
        await close_socket(socket, TRY_AGAIN_LATER, str(exc))
        return None


# How /events/in batches: frames are committed together when a client's ping is reached
# (its pong then means "stored"), when MAXIMUM_BATCH frames are held, or when no frame
# arrives for BATCH_WAIT seconds. Without checkpoint marks (a server other than
# ``localevents serve``), a pong never meant more than "received".
MAXIMUM_BATCH = 1000
BATCH_WAIT = 0.002


@websocket("/events/in")
async def events_in(socket: WebSocket[Any, Any, Any]) -> None:
    """Store a stream of events, one per frame (Prefect's producer protocol)."""
    opened = await _opened(socket)
    if opened is None:
        return
    settings, store = opened
    end_handshake(socket)  # events may be as large as the server reads (a filter may not)
    await mark_checkpoints(socket)
    queued = queued_messages(socket)
    rows: list[Row] = []
    while True:
        frame: str | bytes | Checkpoint | None = _PAUSE
        # a timer only while rows are held and no frame waits already (one per frame was a
        # fifth of the server's time under a fast producer)
        wait = bool(rows) and not (queued and queued())
        with anyio.move_on_after(BATCH_WAIT) if wait else contextlib.nullcontext():
            frame = await receive_frame_or_checkpoint(socket)
        if isinstance(frame, str | bytes):
            try:
                rows.append(decode_event(frame, settings))
            except InvalidEventError as exc:
                count_rejection("websocket", exc)
                if await _store_rows(socket, store, rows):  # the frames before it are good
                    logger.info("refusing a frame on /events/in: %s", exc)
                    await close_socket(socket, INVALID_FRAME, str(exc))
                return
            if len(rows) < MAXIMUM_BATCH:
                continue
        # a client's ping, a pause, a full batch or the client gone: commit what is held
        if not await _store_rows(socket, store, rows) or frame is None:
            return


_PAUSE = Checkpoint()  # no frame arrived within BATCH_WAIT


async def _store_rows(socket: WebSocket[Any, Any, Any], store: EventStore, rows: list[Row]) -> bool:
    """Commit and empty ``rows``; on a storage failure close the socket and say so: 1013
    (try again later) when the store is unavailable for now (out of memory, closing,
    reopening), 1011 otherwise."""
    if not rows:
        return True
    try:
        stored = await anyio.to_thread.run_sync(store.write_rows, list(rows))
    except ServiceUnavailable as exc:  # out of memory for now, say: the client tries again
        logger.warning("could not store %d events from /events/in: %s", len(rows), exc)
        await close_socket(socket, TRY_AGAIN_LATER, str(exc))
        return False
    except LocalEventsError as exc:
        logger.error("could not store %d events from /events/in: %s", len(rows), exc)
        await close_socket(socket, INTERNAL_ERROR, f"could not store events: {exc}")
        return False
    EVENTS_INGESTED.labels("websocket").inc(len(stored))
    rows.clear()
    return True


_FRAMES_PER_WRITE = 16  # raw frames a subscriber writes at once before others run


async def _forward_live(
    socket: WebSocket[Any, Any, Any], subscription: Subscription, backfilled: set[uuid.UUID]
) -> None:
    """Send live events as they commit, each backfilled one skipped once.

    Sending rarely waits, so a checkpoint after each send lets the event loop serve ingest
    and the other subscribers in between; a subscriber that falls behind meanwhile stops
    at once. Where the server takes frames as they are (``localevents serve``), up to
    :data:`_FRAMES_PER_WRITE` prebuilt frames go out in one write, straight to the
    connection, and while this task waits, the hub itself sends that many or fewer new
    events (see :func:`frames_sender`); elsewhere, one text message per send.
    """
    write = raw_frame_writer(socket)
    write_now = raw_frame_writer_now(socket)
    subscription.sender = None if write_now is None else frames_sender(write_now, backfilled)
    try:
        while True:
            frames: list[bytes] = []
            for live in await subscription.receive():
                if subscription.fell_behind:
                    raise FellBehind
                if backfilled and live.id in backfilled:
                    backfilled.discard(live.id)
                elif write is None:
                    await socket.send_text(live.frame)
                    await anyio.lowlevel.checkpoint()
                else:
                    frames.append(live.wire)
                    if len(frames) == _FRAMES_PER_WRITE:
                        await _write_frames(write, frames, then_yield=True)
            if frames and write is not None:
                await _write_frames(write, frames, then_yield=subscription.pending)
    finally:
        subscription.sender = None


def frames_sender(
    write_now: Callable[[bytes], bool], backfilled: set[uuid.UUID]
) -> Callable[[Sequence[LiveEvent]], bool]:
    """The hub's way to send a waiting subscriber's live events on its loop without waking
    its task (:attr:`Subscription.sender`), through the server's ``write_now`` (see
    :data:`~localevents.server._checkpoint.RAW_FRAMES_NOW`), each backfilled event
    skipped once. It declines more than :data:`_FRAMES_PER_WRITE` events (the task sends
    those in turns with the other subscribers) and a connection the server cannot write
    to now."""

    def send(events: Sequence[LiveEvent]) -> bool:
        if len(events) > _FRAMES_PER_WRITE:
            return False
        frames = [live.wire for live in events if live.id not in backfilled]
        if frames and not write_now(b"".join(frames)):
            return False
        if backfilled:
            backfilled.difference_update(live.id for live in events)
        return True

    return send


async def _write_frames(
    write: Callable[[bytes], Awaitable[None]], frames: list[bytes], *, then_yield: bool
) -> None:
    """Write ``frames`` at once (and empty the list); then let others run if asked (not
    needed when the subscription is about to wait for events anyway)."""
    data = b"".join(frames)
    frames.clear()
    await write(data)
    if then_yield:
        await anyio.lowlevel.checkpoint()


async def _stream(
    socket: WebSocket[Any, Any, Any],
    reader: Reader,
    subscription: Subscription,
    request: SubscribeMessage,
    *,
    after: tuple[str, int] | None,
    page_size: int,
) -> None:
    try:
        # An overflow while this task waits on a client that reads nothing (its buffers
        # full) cancels the wait: the subscriber is closed, not left hanging (and with it
        # the events queued for it).
        with anyio.CancelScope() as sending:
            subscription.on_fell_behind = sending.cancel
            backfilled = set()
            if request.backfill:
                if after is None:
                    sent = await backfill(socket, reader, subscription, page_size)
                else:
                    sent = await backfill_after(socket, reader, subscription, page_size, after)
                backfilled = await anyio.to_thread.run_sync(
                    sent_twice, reader.store, subscription, sent
                )
            await _forward_live(socket, subscription, backfilled)
        if sending.cancelled_caught:
            raise FellBehind
    except FellBehind:
        dropped = subscription.dropped or FELL_BEHIND
        _note_let_go(socket, subscription, dropped)
        await close_socket(socket, dropped.code, dropped.reason)
    except QueryTimeout as exc:  # the same backfill would take as long again: no retry
        logger.warning("stopped the backfill of /events/out (%s): %s", _peer(socket), exc)
        await close_socket(socket, POLICY_VIOLATION, past_time_limit(reader.limit))
    except LocalEventsError as exc:
        logger.error("could not backfill a subscriber of /events/out: %s", exc)
        await close_socket(socket, INTERNAL_ERROR, f"could not read stored events: {exc}")
    except CLIENT_GONE:
        pass
    finally:
        subscription.on_fell_behind = None


def _note_let_go(
    socket: WebSocket[Any, Any, Any], subscription: Subscription, dropped: Dropped
) -> None:
    """Count and log a subscriber that the hub let go, for ``dropped``."""
    if dropped.code == TRY_AGAIN_LATER:  # it, or the whole stream, fell behind
        SUBSCRIBERS_FELL_BEHIND.inc()
    elif dropped is FILTER_TOO_COSTLY:
        SUBSCRIBERS_TOO_COSTLY.inc()
    if dropped is FELL_BEHIND:
        logger.warning(
            "closed a subscriber of /events/out (%s) that fell behind: more than %d "
            "events or %d bytes were waiting for it",
            _peer(socket),
            subscription.maximum,
            subscription.maximum_bytes,
        )
    else:  # the hub has logged why, once for all
        logger.info("closed a subscriber of /events/out (%s): %s", _peer(socket), dropped.reason)


def _peer(socket: WebSocket[Any, Any, Any]) -> str:
    """The client's address, as the access log shows it."""
    client = socket.scope.get("client")
    return "unknown client" if not client else f"{client[0]}:{client[1]}"


async def _watch_for_disconnect(socket: WebSocket[Any, Any, Any], scope: anyio.CancelScope) -> None:
    """Read (and ignore) client messages until the client goes, then end the stream."""
    while await receive_frame(socket) is not None:
        pass
    scope.cancel()


@websocket("/events/out")
async def events_out(socket: WebSocket[Any, Any, Any]) -> None:
    """Stream the stored, then the live events matching a filter (Prefect's subscriber
    protocol)."""
    opened = await _opened(socket)
    if opened is None:
        return
    settings, store = opened
    frame = await receive_handshake_frame(socket, "filter")
    if frame is None:
        return
    try:
        request, after = _subscribe_message(frame)
    except _Refused as exc:
        await close_socket(socket, PROTOCOL_ERROR, str(exc))
        return
    event_filter = subscription_filter(request.filter, settings, now_utc())
    page_size = settings.events_websocket_backfill_page_size
    with live_hub(store).open_subscription(event_filter) as subscription:  # before backfill
        async with anyio.create_task_group() as streaming:
            streaming.start_soon(_watch_for_disconnect, socket, streaming.cancel_scope)
            reader = Reader(store, query_limit(settings))
            await _stream(socket, reader, subscription, request, after=after, page_size=page_size)
            streaming.cancel_scope.cancel()


WEBSOCKETS = [events_in, events_out]
