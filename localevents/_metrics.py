"""Prometheus metrics of the SDK and the server, defined in one place.

prometheus-client is optional (``pip install localevents[metrics]``). When it is installed,
every metric below is registered in its default registry, so an application that exposes
its own ``/metrics`` shows them too, and the server answers ``GET /api/metrics``. Without
it, each metric is a stand-in that accepts the same calls (``.labels(...).inc()``,
``.set()``, ``.observe()``, ``.time()``) and does nothing.

Hot paths count once per batch, not per event, and keep the labelled child of a metric
whose labels are known up front (``labels()`` costs about four times an ``inc()``).

Metrics (counters end in ``_total``; ``client`` is the class name of the client or subscriber):

- SDK: ``localevents_events_emitted_total{client}``,
  ``localevents_events_observed_total{client}``,
  ``localevents_websocket_connections_total{client, direction, kind}``,
  ``localevents_websocket_checkpoints_total{client}``,
  ``localevents_worker_events_dropped_total{client}``.
- Server: ``localevents_server_events_ingested_total{transport}``,
  ``localevents_server_rejections_total{transport, reason}``,
  ``localevents_server_query_duration_seconds{kind}`` (histogram),
  ``localevents_server_subscribers`` (gauge),
  ``localevents_server_subscribers_fell_behind_total``,
  ``localevents_server_writer_pending_batches`` (gauge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from localevents._exceptions import EventTooLarge, InvalidEventError

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Sequence
    from types import TracebackType

try:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram
    from prometheus_client.exposition import choose_encoder
except ImportError:  # the optional "metrics" extra is not installed: AVAILABLE is False
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = (
    "AVAILABLE",
    "CHECKPOINTS",
    "EVENTS_EMITTED",
    "EVENTS_INGESTED",
    "EVENTS_OBSERVED",
    "QUERY_SECONDS",
    "REJECTIONS",
    "SUBSCRIBERS",
    "SUBSCRIBERS_FELL_BEHIND",
    "SUBSCRIBERS_TOO_COSTLY",
    "WEBSOCKET_CONNECTIONS",
    "WORKER_EVENTS_DROPPED",
    "WRITER_PENDING_BATCHES",
    "count_connection",
    "count_rejection",
    "counting_rejections",
    "exposition",
)


class Count(Protocol):
    """A counter, or one labelled child of it."""

    def inc(self, amount: float = 1) -> None: ...


class LabelledCount(Protocol):
    """A counter with labels."""

    def labels(self, *values: str) -> Count: ...


class Level(Protocol):
    """A gauge without labels."""

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...

    def set(self, value: float) -> None: ...

    def set_function(self, function: Callable[[], float]) -> None: ...


class Timing(Protocol):
    """One labelled child of a histogram."""

    def observe(self, amount: float) -> None: ...

    def time(self) -> contextlib.AbstractContextManager[Any]: ...


class LabelledTiming(Protocol):
    """A histogram with labels."""

    def labels(self, *values: str) -> Timing: ...


class _Nothing:
    """What every metric is without prometheus-client: each call does nothing."""

    def labels(self, *values: str) -> Self:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def set_function(self, function: Callable[[], float]) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def time(self) -> Self:
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass


_NOTHING = _Nothing()


def _counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
    if not AVAILABLE:
        return _NOTHING
    return Counter(name, documentation, labels)


def _gauge(name: str, documentation: str) -> Any:
    if not AVAILABLE:
        return _NOTHING
    return Gauge(name, documentation)


QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the query latency buckets: DuckDB answers many filters in
about a millisecond, and a wide count-by or an export can take seconds."""


def _histogram(name: str, documentation: str, labels: Sequence[str]) -> Any:
    if not AVAILABLE:
        return _NOTHING
    return Histogram(name, documentation, labels, buckets=QUERY_BUCKETS)


# -- the SDK ------------------------------------------------------------------------------

EVENTS_EMITTED: LabelledCount = _counter(
    "localevents_events_emitted",
    "Events emitted by events clients, failed emits included, by client class",
    ["client"],
)
EVENTS_OBSERVED: LabelledCount = _counter(
    "localevents_events_observed",
    "Events delivered by subscribers to their consumers (repeats dropped), by subscriber class",
    ["client"],
)
WEBSOCKET_CONNECTIONS: LabelledCount = _counter(
    "localevents_websocket_connections",
    "WebSocket connections opened by the SDK, by client class, direction (in: to "
    "/events/in, out: to /events/out) and kind (initial or reconnect)",
    ["client", "direction", "kind"],
)
CHECKPOINTS: LabelledCount = _counter(
    "localevents_websocket_checkpoints",
    "Checkpoints (ping/pong) that confirmed delivery of the events sent before them, by client",
    ["client"],
)
WORKER_EVENTS_DROPPED: LabelledCount = _counter(
    "localevents_worker_events_dropped",
    "Events the background worker dropped because its queue was full, by client class",
    ["client"],
)

# -- the server ---------------------------------------------------------------------------

EVENTS_INGESTED: LabelledCount = _counter(
    "localevents_server_events_ingested",
    "Events stored, by transport (http, websocket); an event whose id is already stored "
    "(a resend) is acknowledged but not counted",
    ["transport"],
)
REJECTIONS: LabelledCount = _counter(
    "localevents_server_rejections",
    "Event submissions refused (one per HTTP batch or WebSocket frame), by transport and "
    "reason (invalid_event, event_too_large, body_too_large)",
    ["transport", "reason"],
)
QUERY_SECONDS: LabelledTiming = _histogram(
    "localevents_server_query_duration_seconds",
    "Seconds per read of the store, by kind (filter, next_page, count, backfill, "
    "export_ndjson: one per page, export_parquet: one per snapshot)",
    ["kind"],
)
SUBSCRIBERS: Level = _gauge(
    "localevents_server_subscribers", "Live subscriptions open (WebSockets on /events/out)"
)
SUBSCRIBERS_FELL_BEHIND: Count = _counter(
    "localevents_server_subscribers_fell_behind",
    "Subscribers closed with 1013 because they, or the whole live stream, fell behind",
)
SUBSCRIBERS_TOO_COSTLY: Count = _counter(
    "localevents_server_subscribers_too_costly",
    "Subscribers closed with 1008 because their filter took most of the live fan-out's time "
    "while it fell behind (final: the SDK raises instead of reconnecting)",
)
WRITER_PENDING_BATCHES: Level = _gauge(
    "localevents_server_writer_pending_batches",
    "Batches waiting for the next group commit, over every events file open in the process",
)


def count_connection(client: str, direction: str, *, reconnect: bool) -> None:
    """Count one WebSocket connection the SDK opened (``direction``: ``in`` or ``out``)."""
    WEBSOCKET_CONNECTIONS.labels(client, direction, "reconnect" if reconnect else "initial").inc()


def _rejection_reason(error: BaseException) -> str | None:
    """Why a submission was refused, or ``None`` for a failure that is no refusal."""
    if getattr(error, "status_code", None) == 413:
        return "body_too_large"
    if not isinstance(error, InvalidEventError):
        return None
    return "event_too_large" if isinstance(error, EventTooLarge) else "invalid_event"


def count_rejection(transport: str, error: BaseException) -> None:
    """Count a refused submission (nothing for an error that is not a refusal)."""
    reason = _rejection_reason(error)
    if reason is not None:
        REJECTIONS.labels(transport, reason).inc()


class counting_rejections:  # lower case: used like a function, as contextlib's are
    """``with counting_rejections(transport):`` counts the refusal that leaves the block,
    if it is one (a class: cheaper than a generator on every request)."""

    __slots__ = ("transport",)

    def __init__(self, transport: str) -> None:
        self.transport = transport

    def __enter__(self) -> None:
        pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            count_rejection(self.transport, exc)


def exposition(accept: str | None) -> tuple[bytes, str] | None:
    """The default registry as the exposition format ``accept`` asks for (Prometheus text,
    or OpenMetrics), with its content type; ``None`` without prometheus-client."""
    if not AVAILABLE:
        return None
    encode, content_type = choose_encoder(accept or "")
    return encode(REGISTRY), content_type
