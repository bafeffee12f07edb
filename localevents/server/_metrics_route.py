"""``GET /api/metrics``: the process's Prometheus metrics (see ``localevents._metrics``).

The route exists only when prometheus-client is installed (the ``metrics`` extra); without
it the path answers 404 like any unknown one. It answers the default registry, so it shows
the server's metrics, the SDK's (an in-process producer counts there too) and the process
collectors prometheus-client registers itself. In the OpenMetrics format when the scraper
asks for it (Prometheus does), else in the Prometheus text format.

Like every route but the health and readiness probes, it requires the API key when one is
configured (D12): metrics say how busy a store is and which clients use it, and Prometheus
sends a bearer token with ``authorization: {credentials: ...}`` in its scrape config.

The writer's queue depth is read at scrape time from every events file open in the
process, so ingest pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get

from localevents._metrics import AVAILABLE, WRITER_PENDING_BATCHES, exposition
from localevents.storage._engine import open_stores

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler

__all__ = ("METRICS_PATH", "METRICS_ROUTES")

METRICS_PATH = "/metrics"


def _pending_batches() -> float:
    return float(sum(store.pending_batches for store in open_stores()))


WRITER_PENDING_BATCHES.set_function(_pending_batches)


@get(METRICS_PATH, summary="Prometheus metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The process's metrics in the Prometheus text format (OpenMetrics when the ``Accept``
    header asks for it). Present only when prometheus-client is installed."""
    rendered = exposition(request.headers.get("accept"))
    assert rendered is not None  # registered only when prometheus-client is installed
    body, content_type = rendered
    # As a header: given as the media type, a text/* type would get a second charset.
    return Response(body, headers={"content-type": content_type})


METRICS_ROUTES: list[HTTPRouteHandler] = [metrics] if AVAILABLE else []
"""The metrics route, or nothing without prometheus-client."""
