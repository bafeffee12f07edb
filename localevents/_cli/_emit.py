"""``localevents emit``: store one event and print its id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from localevents._cli._params import (
    parse_instant,
    parse_json_object,
    parse_labels,
    parse_related,
)
from localevents._cli._render import json_line
from localevents._cli._target import target_options
from localevents.client._sync_api import get_sync_client
from localevents.events._rules import RESOURCE_ID
from localevents.events._schemas import Event, RelatedResource, Resource

if TYPE_CHECKING:
    import uuid
    from datetime import datetime

    from localevents._cli._target import Target

__all__ = ("emit",)


@click.command()
@click.argument("event")
@click.argument("resource_id")
@click.option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    callback=parse_labels,
    metavar="KEY=VALUE",
    help="A resource label.",
)
@click.option(
    "--related",
    multiple=True,
    callback=parse_related,
    metavar="ROLE=ID",
    help="A related resource: ROLE=ID, or a JSON object of its labels.",
)
@click.option("--payload", callback=parse_json_object, metavar="JSON", help="A JSON object.")
@click.option(
    "--occurred", callback=parse_instant, metavar="TIME", help="When it happened (default now)."
)
@click.option("--id", "event_id", type=click.UUID, help="The event id (default: a new UUIDv7).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the event as JSON, as sent (the store adds its received time).",
)
@target_options
def emit(
    *,
    event: str,
    resource_id: str,
    labels: tuple[tuple[str, str], ...],
    related: tuple[dict[str, str], ...],
    payload: dict[str, Any] | None,
    occurred: datetime | None,
    event_id: uuid.UUID | None,
    as_json: bool,
    target: Target,
) -> None:
    """Store the event EVENT about the resource RESOURCE_ID and print its id.

    \b
    localevents emit acme.order.shipped acme.order.42 -l customer=7 \\
        --related tag=acme.tag.express --payload '{"items": 3}'
    """
    with target.session():  # the event's limits are settings: a bad one is one line too
        built = _event(
            event,
            resource_id,
            labels=labels,
            related=related,
            payload=payload,
            occurred=occurred,
            event_id=event_id,
        )
        with get_sync_client(api_url=target.api_url, api_key=target.api_key) as client:
            client.create_events([built])
    click.echo(json_line(built) if as_json else str(built.id))


def _event(
    name: str,
    resource_id: str,
    *,
    labels: tuple[tuple[str, str], ...],
    related: tuple[dict[str, str], ...],
    payload: dict[str, Any] | None,
    occurred: datetime | None,
    event_id: uuid.UUID | None,
) -> Event:
    optional: dict[str, Any] = {"occurred": occurred, "id": event_id}
    try:
        return Event(
            event=name,
            resource=Resource({**dict(labels), RESOURCE_ID: resource_id}),
            related=[RelatedResource(r) for r in related],
            payload=payload or {},
            **{key: value for key, value in optional.items() if value is not None},
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(f"invalid event: {exc}") from exc
