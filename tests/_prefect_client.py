"""Prefect's own events clients against a localevents server, one scenario per run.

``tests/test_prefect_clients.py`` runs this in a process of its own: importing Prefect sets
up logging and settings for the whole process, and its events worker drains at exit, as it
would in a Prefect user's program. The server comes from ``PREFECT_API_URL``::

    python tests/_prefect_client.py SCENARIO TAG COUNT

Every scenario prints one JSON document per line (flushed), events as Prefect's models dump
them:

- ``emit``: emits COUNT events named ``TAG.<i>`` through ``PrefectEventsClient`` (a
  checkpoint every 10), then prints each.
- ``emit-twice``: emits COUNT, prints ``{"sent": COUNT}``, waits for a line on stdin, emits
  COUNT more on the same client, then prints all of them.
- ``subscribe``: follows the events whose name starts with TAG through
  ``PrefectEventSubscriber`` and prints each it yields, until it has COUNT.
- ``read``: reads the events whose name starts with TAG through Prefect's API client,
  COUNT per page, following ``next_page``; prints ``{"total": ..., "pages": ...}``, then
  each event.
- ``emit-event``: calls ``prefect.events.emit_event`` COUNT times and returns, leaving the
  delivery to Prefect's events worker (it drains at exit); prints each event.
- ``filters``: emits COUNT varied events, then reads them back through Prefect's API client
  with one Prefect filter of each kind, printing for each ``{"filter", "got", "expected"}``
  (ids in the order read): expected by Prefect's own ``EventFilter.includes`` where Prefect
  matches in memory as its SQL does, by the SPEC's rule where it does not (related resources
  and text, which ``includes`` lets through).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events import Event, emit_event
from prefect.events.clients import PrefectEventsClient, PrefectEventSubscriber
from prefect.events.filters import (
    EventAnyResourceFilter,
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventRelatedFilter,
    EventResourceFilter,
    EventTextFilter,
)
from prefect.events.schemas.events import ResourceSpecification

FLOW = {"prefect.resource.id": "prefect.flow.compat", "prefect.resource.role": "flow"}


def _print(document: Any) -> None:
    print(json.dumps(document), flush=True)


def _event(tag: str, index: int, follows: Event | None) -> Event:
    """Labels, a related resource, a payload with non-ASCII text and nesting, and (every
    other event) ``follows``: what Prefect's own events carry."""
    return Event(
        event=f"{tag}.{index}",
        resource={"prefect.resource.id": f"compat.{index % 3}", "prefect.resource.name": "é"},
        related=[FLOW],
        payload={"index": index, "text": "café ✓", "nested": {"list": [1, 2.5, None]}},
        follows=follows.id if follows is not None and index % 2 else None,
    )


async def _emit(client: PrefectEventsClient, tag: str, first: int, count: int) -> list[Event]:
    sent: list[Event] = []
    for index in range(first, first + count):
        event = _event(tag, index, sent[-1] if sent else None)
        await client.emit(event)
        sent.append(event)
    return sent


async def emit(tag: str, count: int) -> None:
    async with PrefectEventsClient(checkpoint_every=10) as client:
        sent = await _emit(client, tag, 0, count)
    for event in sent:
        _print(event.model_dump(mode="json"))


async def emit_twice(tag: str, count: int) -> None:
    async with PrefectEventsClient(checkpoint_every=1000) as client:
        sent = await _emit(client, tag, 0, count)
        _print({"sent": count})
        await asyncio.to_thread(sys.stdin.readline)
        sent += await _emit(client, tag, count, count)
    for event in sent:
        _print(event.model_dump(mode="json"))


async def subscribe(tag: str, count: int) -> None:
    names = EventFilter(event=EventNameFilter(prefix=[tag]))
    # Prefect's default of 10 attempts (1 s apart after the third) gives a restarting
    # server about 8 s; a slow machine's restart should not decide the test.
    async with PrefectEventSubscriber(filter=names, reconnection_attempts=30) as subscriber:
        received = 0
        async for event in subscriber:
            _print(event.model_dump(mode="json"))
            received += 1
            if received == count:
                return


async def read(tag: str, count: int) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    names = EventFilter(
        event=EventNameFilter(prefix=[tag]), occurred=EventOccurredFilter(since=since)
    )
    async with get_client() as client:
        page = await client.read_events(filter=names, limit=count)
        events, pages = list(page.events), 1
        while page.next_page is not None:
            page = await client.read_events_page(page.next_page)
            events += page.events
            pages += 1
    _print({"total": page.total, "pages": pages})
    for event in events:
        _print(event.model_dump(mode="json"))


def _varied(tag: str, index: int) -> Event:
    """Two names, three resources with a name and a colour, a flow and sometimes a
    deployment related to them, and a word to search for in some payloads."""
    related = [
        {"prefect.resource.id": f"prefect.flow.f{index % 2}", "prefect.resource.role": "flow"}
    ]
    if index % 3 == 0:
        related.append(
            {"prefect.resource.id": "prefect.deployment.d", "prefect.resource.role": "deployment"}
        )
    return Event(
        event=f"{tag}.{'ab'[index % 2]}",
        resource={
            "prefect.resource.id": f"compat.resource.{index % 3}",
            "prefect.resource.name": ["alpha", "beta", "gamma"][index % 3],
            "color": ["red", "blue"][index % 2],
        },
        related=related,
        payload={"note": "needle" if index % 4 == 0 else "hay"},
    )


def _related_to(event: Event, flow: str | None = None, role: str | None = None) -> bool:
    """Whether one related resource has the id ``flow`` and the role ``role`` (each when
    given): the SPEC's rule for a related filter, which Prefect's ``includes`` skips."""
    return any(
        (flow is None or r.id == flow) and (role is None or r.role == role) for r in event.related
    )


async def filters(tag: str, count: int) -> None:
    async with PrefectEventsClient() as client:
        sent = [_varied(tag, index) for index in range(count)]
        for event in sent:
            await client.emit(event)
    since = EventOccurredFilter(since=datetime.now(UTC) - timedelta(hours=1))
    ours = EventNameFilter(prefix=[tag])
    by_includes: dict[str, EventFilter] = {
        "event prefix": EventFilter(event=EventNameFilter(prefix=[f"{tag}.a"])),
        "event exclude_prefix": EventFilter(
            event=EventNameFilter(prefix=[tag], exclude_prefix=[f"{tag}.a"])
        ),
        "event name": EventFilter(event=EventNameFilter(name=[f"{tag}.b"])),
        "event exclude_name": EventFilter(
            event=EventNameFilter(prefix=[tag], exclude_name=[f"{tag}.b"])
        ),
        "resource id": EventFilter(
            event=ours, resource=EventResourceFilter(id=["compat.resource.1"])
        ),
        "resource id_prefix": EventFilter(
            event=ours, resource=EventResourceFilter(id_prefix=["compat.resource.2"])
        ),
        "resource labels": EventFilter(
            event=ours,
            resource=EventResourceFilter(
                labels=ResourceSpecification(
                    {"prefect.resource.name": ["al*", "gamma"], "color": "!blue"}
                )
            ),
        ),
        "any_resource": EventFilter(
            event=ours, any_resource=EventAnyResourceFilter(id=["prefect.deployment.d"])
        ),
        "id": EventFilter(event=ours, id=EventIDFilter(id=[sent[1].id, sent[4].id])),
        "order ASC": EventFilter(event=ours, order=EventOrder.ASC),
    }
    by_rule = {
        "related role": (
            EventFilter(event=ours, related=EventRelatedFilter(role=["deployment"])),
            lambda e: _related_to(e, role="deployment"),
        ),
        "related resources_in_roles": (
            EventFilter(
                event=ours,
                related=EventRelatedFilter(resources_in_roles=[("prefect.flow.f1", "flow")]),
            ),
            lambda e: _related_to(e, flow="prefect.flow.f1", role="flow"),
        ),
        "related list": (
            EventFilter(
                event=ours,
                related=[
                    EventRelatedFilter(id=["prefect.flow.f0"]),
                    EventRelatedFilter(role=["deployment"]),
                ],
            ),
            lambda e: _related_to(e, flow="prefect.flow.f0") and _related_to(e, role="deployment"),
        ),
        "text": (
            EventFilter(event=ours, text=EventTextFilter(query="needle")),
            lambda e: e.payload["note"] == "needle",
        ),
    }
    checks = [(name, f, f.includes) for name, f in by_includes.items()]
    checks += [(name, f, rule) for name, (f, rule) in by_rule.items()]
    async with get_client() as api:
        for name, event_filter, rule in checks:
            event_filter.occurred = since
            page = await api.read_events(filter=event_filter, limit=50)
            got = [str(event.id) for event in page.events]
            newest_first = sent if event_filter.order == EventOrder.ASC else sent[::-1]
            expected = [str(event.id) for event in newest_first if rule(event)]
            _print({"filter": name, "got": got, "expected": expected})


def emit_events(tag: str, count: int) -> None:
    for index in range(count):
        emitted = emit_event(
            event=f"{tag}.{index}",
            resource={"prefect.resource.id": f"compat.{index}"},
            payload={"index": index},
        )
        assert emitted is not None, "emit_event found no events client to use"
        _print(emitted.model_dump(mode="json"))


def main() -> None:
    scenario, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if scenario == "emit-event":
        emit_events(tag, count)
        return
    run = {
        "emit": emit,
        "emit-twice": emit_twice,
        "subscribe": subscribe,
        "read": read,
        "filters": filters,
    }
    asyncio.run(run[scenario](tag, count))


if __name__ == "__main__":
    main()
