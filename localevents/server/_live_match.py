"""Which events of one commit each live subscription takes.

Testing every event of a commit against every subscriber's filter costs events x filters
evaluations: 100 subscribers each following their own flow run took ~200 ms of Python per
1000-event commit, longer than the commit itself, so the hub fell behind and dropped them
all. Live filters mostly pin down something exact: event ids, the primary resource's id, a
related resource's id, any resource's id, event names. So each distinct filter gets a
:class:`Route` when it subscribes, the first of those it pins in that order. A commit
indexes its events by an axis the first time a route asks for it (one dictionary, built in
one pass), and a filter looks its candidates up there: the events carrying one of its
values, a superset of its matches. Only the candidates are decoded and tested with the
whole filter, and not even they when the route is all the filter tests (say, resource ids
alone). A filter that pins nothing exact is tested on every event. Text search, tested
last, reads each payload as the store keeps it (``storage._payload_text``), so that it
takes what a query takes.

Every figure here is per distinct filter but for the time window (see
``Subscription.key``): subscribers sharing one cost one lookup.
"""

from __future__ import annotations

import enum
import logging
import operator
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import msgspec

from localevents.events._filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventIDFilter,
    EventOccurredFilter,
    EventRelatedFilter,
    EventResourceFilter,
    fold_case,
    search_text,
)
from localevents.events._rules import RESOURCE_ID
from localevents.events._schemas import ReceivedEvent, reading_stored_events
from localevents.events._time import EARLIEST
from localevents.server._frames import text_frame
from localevents.storage._payload_text import stored_payload_texts

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

    from localevents.events._filters import EventNameFilter
    from localevents.events._schemas import AnyEvent
    from localevents.storage._rows import EncodedEvents, Storable

__all__ = (
    "EVERY_EVENT",
    "GIVE_UP_EVERY",
    "Axis",
    "CommitMatcher",
    "LiveEvent",
    "Route",
    "envelope",
    "live_event",
    "position",
    "route_of",
    "untimed",
)

GIVE_UP_EVERY = 64
"""Candidates tested between two questions to :meth:`CommitMatcher.matching`'s
``given_up``: one call per 64 events, and a filter at the filter limits (2 labels of 1000
patterns each, about half a millisecond per event here) is let go within some 30 ms."""

_ANY_TIME = EventOccurredFilter(since=EARLIEST)
logger = logging.getLogger("localevents.server")
_decoder = msgspec.json.Decoder(ReceivedEvent)
_encoder = msgspec.json.Encoder()


def untimed(event_filter: EventFilter) -> EventFilter:
    """``event_filter`` without its time window (the hub tests windows on their own)."""
    return msgspec.structs.replace(event_filter, occurred=_ANY_TIME, order="ASC")


EVERY_EVENT = untimed(EventFilter())
"""The untimed filter that takes every event."""


class LiveEvent(msgspec.Struct, frozen=True, gc=False):
    """A committed event as a subscriber gets it: its id, the text to send (``{"type":
    "event", "event": <the ReceivedEvent JSON>, "position": <where it stands>}``), and the
    same text as a complete WebSocket frame (for servers that take frames as they are: see
    ``_frames``)."""

    id: uuid.UUID
    frame: str
    wire: bytes


def position(stream: bytes, seq: int) -> bytes:
    """Where an event stands in a store's order (``stream``: the store's ``stream_id``,
    encoded): what a subscriber sends back as ``after`` to resume right after it (see
    ``_backfill``)."""
    return b"%s:%d" % (stream, seq)


def envelope(event_json: bytes, at: bytes | None) -> bytes:
    """The message that carries one event to a subscriber, with its position ``at`` if
    known."""
    if at is None:
        return b'{"type":"event","event":' + event_json + b"}"
    return b'{"type":"event","event":' + event_json + b',"position":"' + at + b'"}'


def live_event(event_id: uuid.UUID, line: bytes, at: bytes | None = None) -> LiveEvent:
    """The live event of a stored line (an event's compact ReceivedEvent JSON)."""
    message = envelope(line, at)
    return LiveEvent(event_id, message.decode(), text_frame(message))


class Axis(enum.Enum):
    """What a commit's events can be indexed by (``ALL``: nothing, every event is a
    candidate)."""

    ALL = "all"
    ID = "id"
    RESOURCE = "resource"  # the primary resource's id
    RELATED = "related"  # the ids of the related resources
    ANY_RESOURCE = "any_resource"  # the primary resource's id and the related ones
    NAME = "name"


class Route(NamedTuple):
    """How a filter finds its candidates: the events whose ``axis`` holds one of
    ``values`` (for :attr:`Axis.NAME`, whose name passes the filter's name criteria,
    tested once per distinct name). ``exact``: every candidate matches."""

    axis: Axis
    values: frozenset[Hashable]
    exact: bool


def route_of(unwindowed: EventFilter) -> Route:
    """The route of an :func:`untimed` filter (:attr:`Axis.ALL` when it pins nothing exact).

    Sub-filters are ANDed, so any one of them that pins values narrows the whole filter;
    an empty list pins nothing (the filters read it as no constraint).
    """
    if unwindowed.id.id:
        exact = msgspec.structs.replace(unwindowed, id=EventIDFilter()) == EVERY_EVENT
        return Route(Axis.ID, frozenset(unwindowed.id.id), exact)
    resource = unwindowed.resource
    if resource is not None and resource.id:
        pinned = EventResourceFilter(id=resource.id, distinct=resource.distinct)
        exact = unwindowed == msgspec.structs.replace(EVERY_EVENT, resource=pinned)
        return Route(Axis.RESOURCE, frozenset(resource.id), exact)
    related_filters = unwindowed.related_filters
    for related in related_filters:
        ids = related.id or [rid for rid, _ in related.resources_in_roles or ()]
        if ids:
            exact = related_filters == [EventRelatedFilter(id=related.id)] and (
                msgspec.structs.replace(unwindowed, related=None) == EVERY_EVENT
            )
            return Route(Axis.RELATED, frozenset(ids), exact)
    involved_filters = unwindowed.any_resource_filters
    for involved in involved_filters:
        if involved.id:
            exact = involved_filters == [EventAnyResourceFilter(id=involved.id)] and (
                msgspec.structs.replace(unwindowed, any_resource=None) == EVERY_EVENT
            )
            return Route(Axis.ANY_RESOURCE, frozenset(involved.id), exact)
    if unwindowed.event is not None:
        exact = msgspec.structs.replace(unwindowed, event=None) == EVERY_EVENT
        return Route(Axis.NAME, frozenset(), exact)
    return Route(Axis.ALL, frozenset(), exact=unwindowed == EVERY_EVENT)


def _resource_id(labels: object) -> str:
    return cast("dict[str, str]", labels)[RESOURCE_ID]


class _Index:
    """A commit's events by one axis: each value, and the positions of the events holding
    it (ascending, each position once)."""

    def __init__(self, events: Sequence[Storable], axis: Axis) -> None:
        positions: dict[Hashable, list[int]] = {}
        value_of = _SINGLE_VALUED.get(axis)
        if value_of is not None:  # one value per event: the common case, in one tight loop
            for position, event in enumerate(events):
                positions.setdefault(value_of(event), []).append(position)
        else:
            for position, event in enumerate(events):
                for value in _values(event, axis):
                    found = positions.setdefault(value, [])
                    if not found or found[-1] != position:
                        found.append(position)
        self.positions = positions

    def lookup(self, values: Collection[Hashable]) -> list[int]:
        """The positions of the events holding any of ``values``, ascending."""
        found = [self.positions[v] for v in values if v in self.positions]
        if len(found) <= 1:
            return list(found[0]) if found else []
        return sorted({position for positions in found for position in positions})


_SINGLE_VALUED: dict[Axis, Callable[[Storable], Hashable]] = {
    Axis.ID: operator.attrgetter("id"),
    Axis.NAME: operator.attrgetter("event"),
    Axis.RESOURCE: lambda event: event.resource[RESOURCE_ID],
}
"""The axes on which every event has exactly one value, and how to read it."""


def _values(event: Storable, axis: Axis) -> Sequence[Hashable]:
    """An event's values on a multi-valued axis (the single-valued ones: ``_SINGLE_VALUED``)."""
    if axis is Axis.ALL:
        raise ValueError("every event is a candidate: nothing to index")
    related = [_resource_id(resource) for resource in event.related]
    if axis is Axis.RELATED:
        return related
    return [_resource_id(event.resource), *related]


def _payload_json(payload: Mapping[str, Any] | msgspec.Raw) -> bytes:
    return bytes(payload) if isinstance(payload, msgspec.Raw) else _encoder.encode(payload)


class CommitMatcher:
    """The events of one commit, prepared for the fan-out: which of them each filter
    takes (:meth:`matching`), and their live events, each built once however many
    subscribers get it (:meth:`live`)."""

    def __init__(self, batches: Sequence[EncodedEvents], stream_id: str | None = None) -> None:
        self._batches = batches
        self.events: list[Storable] = [event for batch in batches for event in batch.events]
        self._stream = None if stream_id is None else stream_id.encode()
        self._seqs: list[int | None] | None = None
        self._indexes: dict[Axis, _Index] = {}
        self._decoded: list[ReceivedEvent | None] = [None] * len(self.events)
        self._lines: list[bytes] | None = None
        self._live: dict[int, LiveEvent] = {}
        self._payload_texts: dict[int, str] = {}

    def candidates(self, untimed: EventFilter, route: Route) -> Sequence[int]:
        """The positions of the events that ``untimed`` (whose route is ``route``) is to be
        tested on, decoded: the work that every filter shares (indexes, decoding), done
        once per commit whichever filter comes first, apart from a filter's own tests."""
        if route.axis is Axis.ALL:
            candidates: Sequence[int] = range(len(self.events))
        elif route.axis is Axis.NAME:  # routed by name: the filter has a name filter
            candidates = self._named(cast("EventNameFilter", untimed.event))
        else:
            candidates = self._index(route.axis).lookup(route.values)
        if not route.exact:
            for position in candidates:
                self._decode(position)
        return candidates

    def matching(
        self,
        untimed: EventFilter,
        route: Route,
        given_up: Callable[[], bool] | None = None,
        candidates: Sequence[int] | None = None,
    ) -> list[int]:
        """The positions of the events that pass ``untimed`` (a filter without a time
        window, whose route is ``route``), ascending; ``candidates`` from
        :meth:`candidates`, if taken already.

        ``given_up`` is asked between runs of :data:`GIVE_UP_EVERY` candidates: once it
        answers ``True`` (nobody takes the result any more) the matching stops and finds
        nothing, so that the hub need not finish a filter it has shed (see ``_hub``)."""
        if candidates is None:
            candidates = self.candidates(untimed, route)
        if route.exact:
            return list(candidates)
        text = untimed.text
        if text is not None:  # tested last, on the text the store keeps (D6)
            untimed = msgspec.structs.replace(untimed, text=None)
        passing: list[int] = []
        with reading_stored_events():  # the store accepted them: its limits applied
            for start in range(0, len(candidates), GIVE_UP_EVERY):
                if given_up is not None and given_up():
                    return []
                run = candidates[start : start + GIVE_UP_EVERY]
                passing += [i for i in run if untimed.includes(self._decode(i), live=True)]
        if text is None or text.folded.is_empty or not passing:
            return passing
        folded, payloads = text.folded, self._stored_payloads(passing)
        return [
            i
            for i in passing
            if folded.matches(fold_case(search_text(self._decode(i), payloads[i])))
        ]

    def live(self, positions: Sequence[int]) -> list[LiveEvent]:
        """The live events at ``positions``."""
        built = self._live
        for at in positions:
            if at not in built:
                built[at] = live_event(self.events[at].id, self._line(at), self._position(at))
        return [built[at] for at in positions]

    def _position(self, at: int) -> bytes | None:
        """The store position of the event at ``at`` (None: unknown, as in tests that
        build commits by hand; see :func:`position`)."""
        if self._stream is None:
            return None
        if self._seqs is None:
            self._seqs = []
            for batch in self._batches:
                first = batch.first_seq
                self._seqs += (
                    [None] * len(batch) if first is None else range(first, first + len(batch))
                )
        seq = self._seqs[at]
        return None if seq is None else position(self._stream, seq)

    def _index(self, axis: Axis) -> _Index:
        index = self._indexes.get(axis)
        if index is None:
            index = self._indexes[axis] = _Index(self.events, axis)
        return index

    def _named(self, names: EventNameFilter) -> list[int]:
        """The positions of the events whose name passes ``names``, each distinct name
        tested once (a name filter reads nothing else)."""
        passing = [
            found
            for found in self._index(Axis.NAME).positions.values()
            if names.includes(cast("AnyEvent", self.events[found[0]]))
        ]
        if len(passing) == 1:
            return list(passing[0])
        return sorted(position for found in passing for position in found)

    def _stored_payloads(self, positions: Sequence[int]) -> dict[int, str]:
        """The payload texts the store keeps for the events at ``positions`` (where text
        search looks: not always msgspec's spelling; see ``storage._payload_text``)."""
        known = self._payload_texts
        missing = [position for position in positions if position not in known]
        payloads = [_payload_json(self.events[position].payload) for position in missing]
        try:
            texts = stored_payload_texts(payloads)
        except Exception:  # the store parsed them all: not expected, but never lose a commit
            logger.exception("could not spell payloads as stored; searching them as sent")
            texts = [payload.decode() for payload in payloads]
        known.update(zip(missing, texts, strict=True))
        return known

    def _line(self, position: int) -> bytes:
        if self._lines is None:
            self._lines = [line for batch in self._batches for line in batch.split_lines()]
        return self._lines[position]

    def _decode(self, position: int) -> ReceivedEvent:
        event = self._decoded[position]
        if event is None:
            event = self._decoded[position] = _decoder.decode(self._line(position))
        return event
