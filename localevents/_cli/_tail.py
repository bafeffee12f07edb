"""``localevents tail``: events as they happen, from the last minute on, until interrupted."""

from __future__ import annotations

import contextlib
import logging
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import click
import msgspec

from localevents._cli._filters import Criteria, filter_options
from localevents._cli._render import event_line, json_line, stderr_console, stdout_console
from localevents._cli._target import target_options
from localevents.client._api import get_client
from localevents.client._subscriber import CONNECTION_RECORD, EventSubscriber
from localevents.events._filters import EventOccurredFilter
from localevents.events._time import now_utc

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from localevents._cli._target import Target
    from localevents.events._filters import EventFilter

__all__ = ("tail",)


@click.command()
@filter_options(window=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line (NDJSON).")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    help="Stop after this many events (default: run until interrupted).",
)
@target_options
def tail(*, criteria: Criteria, as_json: bool, limit: int | None, target: Target) -> None:
    """Follow matching events live (starting with those of the last minute).

    Lost connections and server restarts are reconnected to, however long they take, without
    losing or repeating events; a line on stderr says when the connection is lost and when
    it is back. Without a server (ephemeral mode) only this process writes to the events file,
    so run 'localevents serve' and point LOCALEVENTS_API_URL at it to watch other programs.
    """
    event_filter = criteria.to_filter()
    with target.session(existing_file=True):  # Ctrl-C: exit 130 (see localevents.cli)
        anyio.run(_follow, event_filter, target, as_json, limit)


async def _follow(
    event_filter: EventFilter, target: Target, as_json: bool, limit: int | None
) -> None:
    out, err = stdout_console(), stderr_console()
    async with get_client(api_url=target.api_url, api_key=target.api_key) as client:
        # Fail fast, with the server's own words, on a wrong URL, key or filter: the
        # subscriber would go on reconnecting to a wrong URL until interrupted.
        recent = EventOccurredFilter(since=now_utc() - timedelta(minutes=1))
        await client.read_events(msgspec.structs.replace(event_filter, occurred=recent), limit=0)
        subscriber = EventSubscriber(
            target.api_url,
            api_key=target.api_key,
            filter=event_filter,
            reconnect_on_clean_close=True,  # a restarting server says 1001: follow it
            reconnection_attempts=sys.maxsize,  # like `tail -F`: until Ctrl-C
        )
        with _connection_notices(err):  # the first connection may need retries too
            async with subscriber:
                err.print(f"tailing {target} (Ctrl-C to stop)", style="dim")
                await _print(subscriber, as_json, limit, out)


async def _print(
    subscriber: EventSubscriber, as_json: bool, limit: int | None, out: Console
) -> None:
    seen = 0
    async for event in subscriber:
        if as_json:
            click.echo(json_line(event))
        else:
            out.print(event_line(event))
        seen += 1
        if limit is not None and seen >= limit:
            return


class _Notices(logging.Handler):
    """Says on stderr when the subscriber loses its connection and when it has it back;
    its other warnings are printed as they are."""

    def __init__(self, err: Console) -> None:
        super().__init__(logging.DEBUG)
        self.err = err

    def emit(self, record: logging.LogRecord) -> None:
        state = getattr(record, CONNECTION_RECORD, None)
        if state == "lost":
            reason = getattr(record, "reason", "")
            self.err.print(
                f"connection lost ({reason}); reconnecting until it is back", style="dim"
            )
        elif state == "back":
            self.err.print("reconnected", style="dim")
        elif record.levelno >= logging.WARNING:
            self.err.print(record.getMessage(), style="dim")


@contextlib.contextmanager
def _connection_notices(err: Console) -> Iterator[None]:
    client_logger = logging.getLogger("localevents.client")
    handler, level = _Notices(err), client_logger.level
    client_logger.addHandler(handler)
    client_logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        client_logger.removeHandler(handler)
        client_logger.setLevel(level)
