"""Keyset paging over a real events file: stable pages and tamper-evident tokens (SPEC A.2 D10)."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from localevents._exceptions import InvalidPageToken
from localevents.events._filters import EventFilter
from localevents.events._schemas import ReceivedEvent
from localevents.events._time import uuid7
from localevents.storage import _queries, open_store, query_events, query_next_page, release

if TYPE_CHECKING:
    from pathlib import Path

    from localevents.storage import EventStore, QueryPage

T0 = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = {"since": "2025-03-01T00:00:00Z", "until": "2025-03-01T01:00:00Z"}


def event(
    minute: float,
    *,
    name: str = "acme.tick",
    resource: str = "acme.r.1",
    id: uuid.UUID | None = None,
) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=T0 + timedelta(minutes=minute),
        event=name,
        resource={"prefect.resource.id": resource},  # type: ignore[arg-type]
        id=id or uuid7(),
    )


def numbered_id(n: int) -> uuid.UUID:
    """An id whose order is the order of ``n``."""
    return uuid.UUID(f"01950000-0000-7000-8000-{n:012x}")


def make_filter(**body: Any) -> EventFilter:
    return msgspec.json.decode(msgspec.json.encode({"occurred": WINDOW, **body}), type=EventFilter)


class _Row(msgspec.Struct):
    id: uuid.UUID
    occurred: datetime


_decode_row = msgspec.json.Decoder(_Row).decode


def ids_of(page: QueryPage) -> list[uuid.UUID]:
    return [_decode_row(e).id for e in page.events]


def walk(store: EventStore, event_filter: EventFilter, limit: int) -> list[QueryPage]:
    """Every page of a query, first to last, by following ``next_token``."""
    pages = [query_events(store, event_filter, limit)]
    while (token := pages[-1].next_token) is not None:
        pages.append(query_next_page(store, token))
        assert len(pages) < 100, "paging does not end"
    return pages


# 23 events (so no page size divides it), four instants shared by several events, two resources.
MINUTES = [0, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15, 15, 15, 16]


@pytest.fixture
def dataset(store: EventStore) -> list[ReceivedEvent]:
    """23 stored events, in (occurred, id) order."""
    events = [event(m, resource=f"acme.r.{i % 2}") for i, m in enumerate(MINUTES)]
    store.write_events(events[::-1])
    return sorted(events, key=lambda e: (e.occurred, e.id))


@pytest.mark.parametrize("limit", [1, 3, 7])
@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_walking_pages_returns_every_event_once_in_order(
    store: EventStore, dataset: list[ReceivedEvent], limit: int, order: str
) -> None:
    """Following next_token yields every match exactly once, in (occurred, id) order."""
    pages = walk(store, make_filter(order=order), limit)
    expected = [e.id for e in (dataset if order == "ASC" else dataset[::-1])]
    assert [i for page in pages for i in ids_of(page)] == expected
    assert [len(ids_of(p)) for p in pages[:-1]] == [limit] * (len(pages) - 1)
    assert 1 <= len(pages[-1].events) <= limit
    assert len(pages) == -(-23 // limit)
    assert {p.total for p in pages} == {23}


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_walking_a_filtered_distinct_query_matches_its_single_page(
    store: EventStore, dataset: list[ReceivedEvent], order: str
) -> None:
    """Pages of a filtered distinct query concatenate to what one large page returns."""
    event_filter = make_filter(order=order, resource={"distinct": True, "id_prefix": ["acme."]})
    whole = query_events(store, event_filter, 1000)
    pages = walk(store, event_filter, 1)
    assert [i for page in pages for i in ids_of(page)] == ids_of(whole)
    assert len(whole.events) == 2
    assert {p.total for p in pages} == {2}


def test_pages_do_not_shift_when_events_arrive_desc(store: EventStore) -> None:
    """DESC pages continue strictly after the last key served, whatever is inserted meanwhile."""
    store.write_events([event(i, id=numbered_id(100 + i)) for i in range(20)])
    first = query_events(store, make_filter(), 3)
    assert ids_of(first) == [numbered_id(119), numbered_id(118), numbered_id(117)]
    store.write_events(
        [
            event(30, id=numbered_id(1)),  # newer than everything: before the cursor
            event(18.5, id=numbered_id(2)),  # inside the pages already read
            event(17, id=numbered_id(999)),  # same instant as the cursor, larger id: read
            event(17, id=numbered_id(3)),  # same instant, smaller id: still to come
            event(5.5, id=numbered_id(4)),  # inside the pages still to come
        ]
    )
    pages = [first]
    while (token := pages[-1].next_token) is not None:
        pages.append(query_next_page(store, token))
    rest = [i for page in pages[1:] for i in ids_of(page)]
    later = [numbered_id(100 + i) for i in range(16, 5, -1)]
    earlier = [numbered_id(100 + i) for i in range(5, -1, -1)]
    assert rest == [numbered_id(3), *later, numbered_id(4), *earlier]
    assert {p.total for p in pages} == {20}


def test_pages_do_not_shift_when_events_arrive_asc(store: EventStore) -> None:
    """ASC pages continue strictly after the last key served and never repeat an event."""
    store.write_events([event(i, id=numbered_id(100 + i)) for i in range(20)])
    first = query_events(store, make_filter(order="ASC"), 3)
    assert ids_of(first) == [numbered_id(100), numbered_id(101), numbered_id(102)]
    store.write_events(
        [
            event(30, id=numbered_id(1)),  # newer than everything: still to come
            event(1.5, id=numbered_id(2)),  # inside the pages already read
            event(10.5, id=numbered_id(3)),  # inside the pages still to come
        ]
    )
    pages = [first]
    while (token := pages[-1].next_token) is not None:
        pages.append(query_next_page(store, token))
    rest = [i for page in pages[1:] for i in ids_of(page)]
    assert rest == [
        *(numbered_id(100 + i) for i in range(3, 11)),
        numbered_id(3),
        *(numbered_id(100 + i) for i in range(11, 20)),
        numbered_id(1),
    ]
    assert {p.total for p in pages} == {20}


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_a_burst_at_one_instant_pages_one_event_at_a_time(store: EventStore, order: str) -> None:
    """Many events at one microsecond, one more at the next, read one per page in either
    order: the first page's time window (sized by the matches per microsecond) stays at
    least a microsecond wide, so it grows until it holds a page (it used to round to zero
    and never grow: the query spun for ever)."""
    burst = [event(0) for _ in range(19)]
    burst = [msgspec.structs.replace(e, occurred=T0) for e in burst]
    later = msgspec.structs.replace(event(0), occurred=T0 + timedelta(microseconds=1))
    store.write_events([*burst, later])
    found: list[list[QueryPage]] = []
    walker = threading.Thread(target=lambda: found.append(walk(store, make_filter(order=order), 1)))
    walker.daemon = True  # a spinning query must not keep the test run alive
    walker.start()
    walker.join(timeout=30)
    assert found, "the query did not return within 30 s"
    ids = [i for page in found[0] for i in ids_of(page)]
    assert len(ids) == len(set(ids)) == 20
    assert (ids[0] == later.id) == (order == "DESC")


@pytest.mark.parametrize("body", [{"event": {"name": ["acme.tick"]}}, {}])
def test_a_pages_total_and_rows_agree_when_a_commit_lands_between_them(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> None:
    """A commit landing after a query counted its matches but before it read its rows
    (another request's, in a server) is in neither: the total and the rows come from one
    snapshot, whether or not the filter uses the label sets."""
    store.write_events([event(1), event(2)])
    counted = _queries._count

    def count_then_commit(*args: Any) -> Any:
        span = counted(*args)
        store.write_events([event(3)])
        return span

    monkeypatch.setattr(_queries, "_count", count_then_commit)
    page = query_events(store, make_filter(**body), 10)
    assert (page.total, len(page.events)) == (2, 2)


def test_a_distinct_listing_keeps_each_resource_while_events_arrive(store: EventStore) -> None:
    """Paging a `distinct` query lists every resource once even when a resource not yet
    listed gets a late event (occurred among the pages already read): each resource is
    picked from the events stored before the first page. Before, the late event became
    its pick, on the side of the keyset already read, and the resource was never listed."""
    first = zip((50, 40, 30, 10), "ABCS", strict=True)
    store.write_events([event(minute, resource=r) for minute, r in first])
    distinct = make_filter(resource={"distinct": True}, order="DESC")
    page = query_events(store, distinct, 2)
    listed = [_decode_resource(e) for e in page.events]
    store.write_events([event(45, resource="S")])  # late: among what page 1 covered
    while page.next_token is not None:
        page = query_next_page(store, page.next_token)
        listed += [_decode_resource(e) for e in page.events]
    assert listed == ["A", "B", "C", "S"]


def _decode_resource(event_json: str) -> str:
    resource: str = msgspec.json.decode(event_json)["resource"]["prefect.resource.id"]
    return resource


def test_limit_zero_returns_no_events_and_no_token(
    store: EventStore, dataset: list[ReceivedEvent]
) -> None:
    """limit 0 answers the total only: no events and no next page."""
    page = query_events(store, make_filter(), 0)
    assert page.events == []
    assert page.next_token is None
    assert page.total == 23


def test_the_last_page_has_no_token(store: EventStore, dataset: list[ReceivedEvent]) -> None:
    """A page that holds the last match carries no token, even when it is exactly full."""
    assert query_events(store, make_filter(), 23).next_token is None
    assert query_events(store, make_filter(), 22).next_token is not None


def test_the_id_filter_caps_the_page_at_the_number_of_ids(
    store: EventStore, dataset: list[ReceivedEvent]
) -> None:
    """With an id filter, a page never exceeds the listed ids and paging still works."""
    wanted = [dataset[2].id, dataset[10].id, dataset[20].id]
    event_filter = make_filter(id={"id": [str(i) for i in wanted]}, order="ASC")
    whole = query_events(store, event_filter, 1000)
    assert ids_of(whole) == wanted
    assert whole.total == 3
    assert whole.next_token is None
    pages = walk(store, event_filter, 2)
    assert [ids_of(p) for p in pages] == [wanted[:2], wanted[2:]]


def test_tokens_are_url_safe(store: EventStore, dataset: list[ReceivedEvent]) -> None:
    """A page token needs no escaping in a query string."""
    token = query_events(store, make_filter(), 1).next_token
    assert token is not None
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)


def test_a_token_outlives_reopening_its_file(tmp_path: Path) -> None:
    """The signing secret lives in the events file, so tokens survive a restart."""
    path = str(tmp_path / "events.duckdb")
    store = open_store(path)
    store.write_events([event(i) for i in range(5)])
    token = query_events(store, make_filter(), 2).next_token
    release(store)
    store = open_store(path)
    try:
        assert token is not None
        assert len(query_next_page(store, token).events) == 2
    finally:
        release(store)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip(text: str, index: int) -> str:
    """Flip the lowest bit of one base64 character (in the last one, a bit decoders ignore)."""
    char = _ALPHABET[_ALPHABET.index(text[index]) ^ 1]
    return text[:index] + char + text[index + 1 :]


def _tamper(token: str, how: str) -> str:
    body, _, mac = token.partition(".")
    return {
        "flip-body-first": lambda: f"{_flip(body, 0)}.{mac}",
        "flip-body-middle": lambda: f"{_flip(body, len(body) // 2)}.{mac}",
        "flip-body-last": lambda: f"{_flip(body, len(body) - 1)}.{mac}",
        "flip-mac-first": lambda: f"{body}.{_flip(mac, 0)}",
        "flip-mac-last": lambda: f"{body}.{_flip(mac, len(mac) - 1)}",
        "truncated-mac": lambda: f"{body}.{mac[:-2]}",
        "no-mac": lambda: body,
        "empty-mac": lambda: f"{body}.",
        "padded": lambda: f"{token}=",
        "trailing-space": lambda: f"{token} ",
        "inner-newline": lambda: f"{body}.\n{mac}",
        "foreign-character": lambda: f"{body}!.{mac}",
        "standard-alphabet": lambda: token.replace("-", "+").replace("_", "/"),
        "swapped-parts": lambda: f"{mac}.{body}",
    }[how]()


TAMPERINGS = [
    "flip-body-first",
    "flip-body-middle",
    "flip-body-last",
    "flip-mac-first",
    "flip-mac-last",
    "truncated-mac",
    "no-mac",
    "empty-mac",
    "padded",
    "trailing-space",
    "inner-newline",
    "foreign-character",
    "swapped-parts",
]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_token_is_rejected(
    store: EventStore, dataset: list[ReceivedEvent], how: str
) -> None:
    """Any change to a token, even one that decodes to the same bytes, raises InvalidPageToken."""
    token = query_events(store, make_filter(), 3).next_token
    assert token is not None
    with pytest.raises(InvalidPageToken):
        query_next_page(store, _tamper(token, how))


def test_a_token_in_the_standard_base64_alphabet_is_rejected(
    store: EventStore, dataset: list[ReceivedEvent]
) -> None:
    """Only the URL-safe spelling of a token is accepted."""
    # Find a token that holds a URL-safe-only character: about half of the signatures do
    # (22 characters), and little of the JSON body can: 11 tries missed about one run in
    # 2,000 (0.5 ** 11).
    tokens = (
        query_events(store, make_filter(order=order), limit).next_token
        for order in ("ASC", "DESC")
        for limit in range(1, len(dataset))
    )
    token = next((t for t in tokens if t is not None and ("-" in t or "_" in t)), None)
    assert token is not None, f"no token with '-' or '_' among {2 * (len(dataset) - 1)}"
    with pytest.raises(InvalidPageToken):
        query_next_page(store, _tamper(token, "standard-alphabet"))


@pytest.mark.parametrize(
    "token", ["", ".", "garbage", "just-bad", "a.b", "é.é", "%%%.%%%", "AAAA.AAAA", "\x00.\x00"]
)
def test_a_garbage_token_is_rejected(store: EventStore, token: str) -> None:
    """Tokens that were never issued raise InvalidPageToken, not another error."""
    with pytest.raises(InvalidPageToken):
        query_next_page(store, token)


def test_a_token_from_another_store_is_rejected(
    store: EventStore, dataset: list[ReceivedEvent], tmp_path: Path
) -> None:
    """A token signed by another events file is refused, though that file holds the same events."""
    other = open_store(str(tmp_path / "other.duckdb"))
    try:
        other.write_events(dataset)
        foreign = query_events(other, make_filter(), 3).next_token
        assert foreign is not None
        assert query_next_page(other, foreign).events
    finally:
        release(other)
    with pytest.raises(InvalidPageToken):
        query_next_page(store, foreign)
