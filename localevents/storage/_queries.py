"""Filtered, paged queries over a store (blocking; run in worker threads)."""

from __future__ import annotations

import contextlib
import functools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from localevents.events._time import from_epoch_us, now_utc
from localevents.storage._cursors import PageCursor, decode_cursor, encode_cursor
from localevents.storage._label_sets import KeyTables, uses_label_sets
from localevents.storage._rows import SELECT_COLUMNS, event_json
from localevents.storage._set_counts import set_scope, span_by_set
from localevents.storage._sql import Where, build_where, tests_beyond_label_sets

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents.events._filters import EventFilter
    from localevents.storage._engine import EventStore

__all__ = (
    "QueryPage",
    "events_after",
    "query_events",
    "query_next_page",
    "resolve_filter",
    "snapshot",
)


class QueryPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page: each event as ReceivedEvent JSON, the total, and the next page's token."""

    events: list[str]
    total: int
    next_token: str | None


def resolve_filter(event_filter: EventFilter, now: datetime | None = None) -> EventFilter:
    """The filter with an open ``until`` fixed to now, so later pages see the same window."""
    if event_filter.occurred.until is not None:
        return event_filter
    occurred = msgspec.structs.replace(event_filter.occurred, until=now or now_utc())
    return msgspec.structs.replace(event_filter, occurred=occurred)


@contextlib.contextmanager
def snapshot(
    store: EventStore, event_filter: EventFilter, *, always: bool = False
) -> Iterator[KeyTables | None]:
    """One read transaction for all of the query's statements (so its total and its rows
    see the same commits), and for a filter on the primary resource's labels or on related
    resources, or ``always``, the key tables in which each such test finds the keys of its
    label sets once (the tables caught up first when many events lie past them; see
    ``_label_sets``). None instead of the key tables otherwise, or when the tables cannot be
    used: each event is tested on its own columns."""
    sets = store.label_sets
    with store.reading() as cursor:
        use_sets = sets.exact and (always or uses_label_sets(event_filter))
        if use_sets and not sets.catch_up(cursor, stored=store.next_seq):
            use_sets = False  # two label sets share a key
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield KeyTables(cursor, sets.through(cursor)) if use_sets else None
        finally:
            cursor.execute("ROLLBACK")  # it only read (its key tables go with it)


def _source(event_filter: EventFilter, where: Where) -> str:
    if _distinct(event_filter):
        direction = event_filter.order
        return (
            f"(SELECT rowid AS row, * FROM events WHERE {where.sql} QUALIFY row_number() OVER ("
            f"PARTITION BY resource_id ORDER BY occurred {direction}, id {direction}) = 1)"
        )
    return f"(SELECT rowid AS row, * FROM events WHERE {where.sql})"


class _Span(msgspec.Struct, frozen=True):
    """About ``total`` matches (events, or resources for ``distinct``) lie between
    ``oldest`` and ``newest`` (None when none match)."""

    total: int
    oldest: datetime | None
    newest: datetime | None


def _distinct(event_filter: EventFilter) -> bool:
    return event_filter.resource is not None and event_filter.resource.distinct


def _where(event_filter: EventFilter, keys: KeyTables | None, before_seq: int | None) -> Where:
    """The filter's conditions; for ``distinct``, only over the events stored before
    ``before_seq`` (the first page's), so that each resource's pick stays where it was
    while the pages are read, whatever is stored meanwhile."""
    where = build_where(event_filter, keys=keys)
    if before_seq is not None and _distinct(event_filter):
        where.add("seq < ?", before_seq)
    return where


def _count(
    store: EventStore,
    event_filter: EventFilter,
    keys: KeyTables | None,
    before_seq: int | None = None,
) -> _Span:
    scope = None if keys is None else set_scope(event_filter, keys)
    if scope is not None:
        total, oldest, newest = span_by_set(store, scope)
        return _Span(total=total, oldest=oldest, newest=newest)
    where = _where(event_filter, keys, before_seq)
    what = "count(DISTINCT resource_id)" if _distinct(event_filter) else "count(*)"
    total, oldest, newest = store.fetchall(
        f"SELECT {what}, min(occurred), max(occurred) FROM events WHERE {where.sql}",
        where.params,
    )[0]
    return _Span(total=int(total), oldest=oldest, newest=newest)


def _page(
    store: EventStore,
    event_filter: EventFilter,
    limit: int,
    after: tuple[int, str] | None,
    bound: datetime | None = None,
    *,
    keys: KeyTables | None = None,
    before_seq: int | None = None,
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` rows in the filter's order, after the keyset ``after``; with
    ``bound``, only those at or after it (DESC) or at or before it (ASC). ``keys``: see
    :func:`build_where`; ``before_seq``: see :func:`_where`."""
    where = _where(event_filter, keys, before_seq)
    if bound is not None:
        where.add("occurred >= ?" if event_filter.order == "DESC" else "occurred <= ?", bound)
    params = list(where.params)
    direction = event_filter.order
    keyset = "true"
    if after is not None:
        op = "<" if direction == "DESC" else ">"
        # The first condition alone lets DuckDB skip the row groups before the keyset.
        keyset = f"occurred {op}= ? AND (occurred {op} ? OR (occurred = ? AND id {op} ?))"
        instant = from_epoch_us(after[0])
        params += [instant, instant, instant, uuid.UUID(after[1])]
    # The page's rows are picked by their order columns alone, then read whole: sorting
    # the matches with every column in tow took ~1 s for 600k matches at 10M, ~0.2 s so.
    order = f"ORDER BY occurred {direction}, id {direction}"
    sql = (
        f"SELECT {SELECT_COLUMNS} FROM events WHERE rowid IN (SELECT row FROM "
        f"{_source(event_filter, where)} WHERE {keyset} {order} LIMIT ?) {order}"
    )
    return store.fetchall(sql, [*params, limit])


_FIRST_WINDOW_MATCHES = 4  # the first window is sized to hold this many pages' worth
_WINDOW_GROWTH = 8
_ONE_US = timedelta(microseconds=1)


def _windowed_rows(
    store: EventStore,
    event_filter: EventFilter,
    limit: int,
    matches: _Span,
    *,
    after: tuple[int, str] | None = None,
    keys: KeyTables | None = None,
    before_seq: int | None = None,
) -> list[tuple[Any, ...]]:
    """The first ``limit`` rows in the filter's order after the keyset ``after``, without
    sorting every match.

    Rows are stored roughly in time order, so DuckDB skips the row groups outside a time
    window. The rows of a window that starts where the rows to return start (the newest
    match or the keyset for DESC, the oldest or the keyset for ASC) all come before any row
    outside it, so once the window holds ``limit`` rows its first ``limit`` are the answer.
    The first window is sized as if the ``matches.total`` matches were spread evenly over
    the span; each miss widens it ``_WINDOW_GROWTH`` times, up to the whole span.
    """
    oldest, newest = matches.oldest, matches.newest
    page = functools.partial(
        _page, store, event_filter, limit, after, keys=keys, before_seq=before_seq
    )
    if matches.total <= limit or oldest is None or newest is None or newest <= oldest:
        return page()
    span = newest - oldest
    # At least a microsecond: a window that rounds to nothing would never grow.
    window = max(span * (_FIRST_WINDOW_MATCHES * limit / matches.total), _ONE_US)
    while window < span:
        bound = newest - window if event_filter.order == "DESC" else oldest + window
        rows = page(bound)
        if len(rows) >= limit:
            return rows
        window *= _WINDOW_GROWTH
    return page()


def _build_page(
    store: EventStore,
    event_filter: EventFilter,
    limit: int,
    total: int,
    rows: list[Any],
    *,
    before_seq: int | None,
) -> QueryPage:
    token = None
    if limit > 0 and len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        cursor = PageCursor(
            filter=event_filter,
            page_size=limit,
            total=total,
            after_occurred_us=last[0],
            after_id=last[5],
            before_seq=before_seq,
        )
        token = encode_cursor(cursor, store.secret)
    return QueryPage(events=[event_json(row) for row in rows], total=total, next_token=token)


def events_after(
    store: EventStore, event_filter: EventFilter, after_seq: int, before_seq: int, limit: int
) -> list[tuple[int, str]]:
    """Up to ``limit`` events matching ``event_filter`` (its order and ``distinct`` aside)
    stored after the one at ``after_seq`` and before ``before_seq``, in the order the store
    took them: each one's ``seq`` and its ReceivedEvent JSON.

    The events are stored in ``seq`` order, so DuckDB skips the row groups outside the range.
    """
    with snapshot(store, event_filter) as keys:
        where = build_where(event_filter, keys=keys)
        where.add("seq > ?", after_seq)
        where.add("seq < ?", before_seq)
        rows = store.fetchall(
            f"SELECT seq, {SELECT_COLUMNS} FROM events WHERE {where.sql} ORDER BY seq LIMIT ?",
            [*where.params, limit],
        )
    return [(int(row[0]), event_json(row[1:])) for row in rows]


def _effective_limit(event_filter: EventFilter, limit: int) -> int:
    ids = event_filter.id.id
    return min(limit, len(ids)) if ids else limit


def query_events(store: EventStore, event_filter: EventFilter, limit: int) -> QueryPage:
    """The first page of events matching ``event_filter``, in its order."""
    event_filter = resolve_filter(event_filter)
    limit = _effective_limit(event_filter, limit)
    # Every event with a lower seq is committed, so the snapshot below holds all of them.
    before_seq = store.next_seq if _distinct(event_filter) else None
    # A filter on nothing but time and label sets is counted from the label sets.
    with snapshot(store, event_filter, always=not tests_beyond_label_sets(event_filter)) as keys:
        matches = _count(store, event_filter, keys, before_seq)
        rows = (
            _windowed_rows(
                store, event_filter, limit + 1, matches, keys=keys, before_seq=before_seq
            )
            if limit > 0
            else []
        )
    return _build_page(store, event_filter, limit, matches.total, rows, before_seq=before_seq)


def query_next_page(store: EventStore, token: str) -> QueryPage:
    """The page after the one that issued ``token`` (raises InvalidPageToken)."""
    cursor = decode_cursor(token, store.secret)
    after = (cursor.after_occurred_us, cursor.after_id)
    # The rest lies between the keyset and the window's other end; at most ``total``
    # matches are there.
    instant = from_epoch_us(after[0])
    occurred = cursor.filter.occurred
    if cursor.filter.order == "DESC":
        rest = _Span(total=cursor.total, oldest=occurred.since, newest=instant)
    else:
        rest = _Span(total=cursor.total, oldest=instant, newest=occurred.until or now_utc())
    with snapshot(store, cursor.filter) as keys:
        limit = cursor.page_size + 1
        rows = _windowed_rows(
            store, cursor.filter, limit, rest, after=after, keys=keys, before_seq=cursor.before_seq
        )
    return _build_page(
        store, cursor.filter, cursor.page_size, cursor.total, rows, before_seq=cursor.before_seq
    )
