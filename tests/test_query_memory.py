"""A query that runs out of DuckDB's memory limit (``LOCALEVENTS_DATABASE_MEMORY_LIMIT``):
503 naming the limit and the setting, the store left as it was; it was a 500 with a
traceback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest
from _stored import check_within_memory

from localevents import ServiceUnavailable
from localevents._settings import temporary_settings
from localevents.client._ws_transport import InProcessWebSocketTransport
from localevents.events._filters import EventFilter
from localevents.samples import write_sample_database
from localevents.server import create_app
from localevents.storage import open_store, query_events, release

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 2, 1, tzinfo=UTC)
WINDOW = {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
LIMIT = "10MB"
NAMED = {"labels": {"prefect.resource.name": "*-*"}}
HEAVY: dict[str, Any] = {
    "occurred": WINDOW,
    "resource": NAMED,
    "related": [NAMED] * 20,
    "any_resource": [NAMED] * 20,
}
"""Label tests at every list's limit: a few hash joins against the label sets' keys of a
few MB each, more than :data:`LIMIT` holds (~24 MB)."""
LIGHT: dict[str, Any] = {"occurred": WINDOW, "event": {"prefix": ["prefect."]}}
"""A filter that reads the events alone (~7 MB)."""


@pytest.fixture
def sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.duckdb"
    write_sample_database(path, 300, seed=5, start=T0, span=timedelta(hours=1))
    return path


def test_a_query_past_the_memory_limit_names_it_and_leaves_the_store_usable(
    sample_file: Path,
) -> None:
    with temporary_settings(database_memory_limit=LIMIT):
        store = open_store(str(sample_file))
        try:
            with pytest.raises(ServiceUnavailable) as raised:
                query_events(store, msgspec.convert(HEAVY, EventFilter), 10)
            light = query_events(store, msgspec.convert(LIGHT, EventFilter), 10)
            temporary = store.fetchall("SELECT count(*) FROM duckdb_tables() WHERE temporary")
        finally:
            release(store)
    message = str(raised.value)
    assert f"limit of {LIMIT}" in message
    assert "LOCALEVENTS_DATABASE_MEMORY_LIMIT" in message
    assert light.total > 0
    assert temporary == [(0,)]  # the failed query's key tables went with its transaction


@pytest.mark.anyio
async def test_the_server_answers_503_naming_the_memory_limit(sample_file: Path) -> None:
    with temporary_settings(database_memory_limit=LIMIT):
        app = create_app(None, database=str(sample_file), docs=False)
        transport = InProcessWebSocketTransport(app)
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://test/api/") as http,
        ):
            heavy = await http.post("events/filter", json={"filter": HEAVY})
            light = await http.post("events/filter", json={"filter": LIGHT})
    assert heavy.status_code == 503, heavy.text
    assert heavy.headers["Retry-After"] == "1"
    assert heavy.json()["error"] == "ServiceUnavailable"
    assert "LOCALEVENTS_DATABASE_MEMORY_LIMIT" in heavy.json()["detail"]
    assert light.status_code == 200, light.text
    assert light.json()["total"] > 0


@pytest.mark.parametrize(
    "query",
    [
        " ".join(f"-q{i}" for i in range(40)),
        " ".join(f'-"w{i} x{i}"' for i in range(12)),
        " ".join(f"-ü{i}" for i in range(20)),
    ],
    ids=["40-exclusions", "12-phrases", "20-non-ascii"],
)
def test_a_text_search_of_many_terms_folds_the_text_once(sample_file: Path, query: str) -> None:
    """Each term folded the searchable text anew (parsing the labels' JSON each time): 40
    exclusions or 12 phrases over 300 events needed more than 64 MB. Folded once per row
    for all the terms, they fit in 24 MB and match what ``includes`` says."""
    window = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=2)}
    event_filter = msgspec.convert({"occurred": window, "text": {"query": query}}, EventFilter)
    check_within_memory(sample_file, event_filter, "24MB")
