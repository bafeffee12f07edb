"""``localevents query``: stored events matching the filter options, a page at a time."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from localevents._cli._filters import Criteria, filter_options
from localevents._cli._hints import LOOKBACK, print_hint, window_hint
from localevents._cli._render import counted, event_line, json_line, stderr_console, stdout_console
from localevents._cli._target import target_options
from localevents.client._sync_api import get_sync_client

if TYPE_CHECKING:
    from collections.abc import Iterator

    from localevents._cli._target import Target
    from localevents.client._sync_api import SyncEventsAPIClient
    from localevents.events._pages import EventPage

__all__ = ("query",)

_NEXT_PATH = "events/filter/next"
_TOKEN = "page-token"


@click.command()
@filter_options(window=True)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Events per page.",
)
@click.option(
    "--order",
    type=click.Choice(["desc", "asc"], case_sensitive=False),
    default="desc",
    show_default=True,
    help="Newest first (desc) or oldest first (asc).",
)
@click.option("--all", "every_page", is_flag=True, help="Follow every page to the end.")
@click.option("--page-token", help="Continue an earlier query from the token it printed.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON event per line (NDJSON), as the SDK reads it: a payload's repeated key "
    "keeps its last value (export keeps them all).",
)
@target_options
def query(
    *,
    criteria: Criteria,
    limit: int,
    order: str,
    every_page: bool,
    page_token: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """Print stored events matching the filter options (one line each, or NDJSON).

    Without --all, a query that has more pages ends with the command for the next one.
    """
    if page_token is not None:
        _refuse_changes_to_the_token(criteria)
    event_filter = criteria.to_filter(order="ASC" if order.lower() == "asc" else "DESC")
    out = stdout_console()
    shown, hint = 0, None
    with (
        target.session(existing_file=True),
        get_sync_client(api_url=target.api_url, api_key=target.api_key) as client,
    ):
        if page_token is None:
            pages = client.iter_pages(event_filter, page_size=limit)
        else:
            pages = _continue(client, page_token)
        for page in pages:
            if as_json:
                if page.events:
                    click.echo("\n".join(json_line(event) for event in page.events))
            else:
                for event in page.events:
                    out.print(event_line(event))
            shown += len(page.events)
            if not every_page:
                break
        if page_token is None:
            hint = window_hint(client, event_filter, found=shown, window=LOOKBACK)
    _footer(page, shown, target)
    print_hint(hint)


def _refuse_changes_to_the_token(criteria: Criteria) -> None:
    """A page token holds its query's filter, page size and order, signed by the store that
    issued it (the next-page route takes nothing else), so options that would change them
    cannot be honoured: refuse them rather than ignore them."""
    context = click.get_current_context()
    given = [
        flag
        for name, flag in (("limit", "-n/--limit"), ("order", "--order"))
        if context.get_parameter_source(name) is not ParameterSource.DEFAULT
    ]
    if criteria != Criteria():
        given.insert(0, "the filter options")
    if given:
        raise click.UsageError(
            "--page-token continues an earlier query with its filter, page size and order: "
            f"drop {' and '.join(given)} (or start a new query with them)"
        )


def _continue(client: SyncEventsAPIClient, page_token: str) -> Iterator[EventPage]:
    """The pages from ``page_token`` (a token or a whole ``next_page`` URL) on."""
    if "://" in page_token:
        url = page_token
    else:
        url = f"{_NEXT_PATH}?{urllib.parse.urlencode({_TOKEN: page_token})}"
    page = client.read_events_page(url)
    yield page
    while page.next_page is not None:
        page = client.read_events_page(page.next_page)
        yield page


def _footer(page: EventPage, shown: int, target: Target) -> None:
    """How many events were shown, and the command for the next page (on stderr), naming
    the same server or events file (a token only works on the store that issued it)."""
    err = stderr_console()
    err.print(f"{shown} shown of {counted(page.total, 'matching event')}", style="dim")
    if page.next_page is not None:
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(page.next_page).query)[_TOKEN][0]
        command = f"localevents query{target.options()} --page-token {token}"
        err.print(f"next page: {command}", style="dim", soft_wrap=True)
