"""Where a command sends its requests, and how failures reach the terminal.

``--api-url`` / ``LOCALEVENTS_API_URL`` names a server; without one, the command serves the
events file itself, in its own process (ephemeral mode): ``--database``, else
``LOCALEVENTS_DATABASE``, else ``~/.localevents/events.duckdb``. Expected failures (an
unreachable server, a refused key, an answer naming an error) become one line on stderr
and exit code 1, without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import click
import httpx
from httpx_ws import HTTPXWSException

from localevents._exceptions import (
    ConfigurationError,
    HTTPStatusError,
    LocalEventsError,
    ServerUnreachable,
)
from localevents._log_records import ANSWERED_FIELD
from localevents._settings import get_settings, temporary_settings
from localevents.client._http_errors import server_explanation
from localevents.client._websocket import describe, unwrap

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = (
    "BROKEN_PIPE",
    "Target",
    "drop_stdout",
    "reporting_errors",
    "stdout_dropped",
    "target_options",
)

BROKEN_PIPE = 128 + 13
"""The exit code when standard output's reader has gone: a shell's for death by SIGPIPE."""

_F = TypeVar("_F", bound="Callable[..., Any]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """A server (``api_url`` and ``api_key``), or the events file ``database`` in-process."""

    api_url: str | None = None
    api_key: str | None = None
    database: str | None = None

    def __str__(self) -> str:
        if self.api_url:
            return self.api_url
        return f"the events file {self.database or get_settings().database_path}"

    def options(self) -> str:
        """The options that name this target again on a command line (never the key)."""
        if self.api_url:
            return f" --api-url {shlex.quote(self.api_url)}"
        if self.database:
            return f" --database {shlex.quote(self.database)}"
        return ""

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """The settings this target needs, for the duration of the command."""
        if self.database is None:
            yield
            return
        with temporary_settings(database=self.database):
            yield

    @contextlib.contextmanager
    def session(self, *, existing_file: bool = False) -> Iterator[None]:
        """A command's work against this target: in its settings, with failures (a bad
        ``LOCALEVENTS_*`` setting among them) reported as one line. In ephemeral mode, with
        ``existing_file``, an events file that does not exist is an error: a command that
        only reads would create an empty one and report nothing in it (a missing folder
        is refused by the store itself, see ``localevents.storage``)."""
        with reporting_errors(self), self.settings(), _quiet_answered_refusals(self):
            database = get_settings().database_path  # a bad setting fails here, as itself
            if existing_file and self.api_url is None:
                _require_events_file(database)
            yield


class _Answered(logging.Filter):
    """Leaves out the app's log records that repeat a refusal it answered (marked with
    ``localevents._log_records.ANSWERED``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, ANSWERED_FIELD, False)


@contextlib.contextmanager
def _quiet_answered_refusals(target: Target) -> Iterator[None]:
    """In ephemeral mode the app runs in this process, and its log would repeat each
    refusal (a 503 for every retry) before the command's own one line says it."""
    if target.api_url is not None:
        yield
        return
    server_log, answered = logging.getLogger("localevents.server"), _Answered()
    server_log.addFilter(answered)
    try:
        yield
    finally:
        server_log.removeFilter(answered)


def _require_events_file(path: str) -> None:
    if path != ":memory:" and not os.path.exists(path):
        raise ConfigurationError(
            f"there is no events file at {path}: nothing has been stored there yet "
            "(check --database or LOCALEVENTS_DATABASE, or set LOCALEVENTS_API_URL to read "
            "from a server)"
        )


def target_options(command: _F) -> _F:
    """Add ``--api-url``, ``--api-key`` and ``--database``; the command receives ``target``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any, api_url: str | None, api_key: str | None, database: str | None, **kwargs: Any
    ) -> Any:
        if api_url and database:
            raise click.UsageError(
                "--database is for ephemeral mode, without a server: drop --api-url "
                "(or unset LOCALEVENTS_API_URL) to use it"
            )
        target = Target(api_url=api_url or None, api_key=api_key or None, database=database)
        return command(*args, target=target, **kwargs)

    options = [
        click.option(
            "--api-url",
            metavar="URL",
            envvar="LOCALEVENTS_API_URL",
            show_envvar=True,
            help="The server's API URL, e.g. http://127.0.0.1:4200/api (default: no server, "
            "ephemeral mode on the events file).",
        ),
        click.option(
            "--api-key",
            metavar="KEY",
            envvar="LOCALEVENTS_API_KEY",
            show_envvar=True,
            help="The server's key.",
        ),
        click.option(
            "--database",
            metavar="FILE",
            help="Without a server: the events file to use (default LOCALEVENTS_DATABASE, "
            "else ~/.localevents/events.duckdb).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def reporting_errors(target: Target) -> Iterator[None]:
    """Turn the failures a user can act on into one line and exit code 1.

    The line is raised outside the ``except`` block, chained to nothing: the failure's
    traceback would keep its frames, and with them DuckDB's objects, alive until the
    interpreter ends, which then prints a screen of "nanobind: leaked instance" lines.
    """
    try:
        yield
    except Exception as exc:  # re-raised below unless it is a failure the user can act on
        error = unwrap(exc)
        ending: click.ClickException | click.exceptions.Exit
        if isinstance(error, BrokenPipeError):  # the reader left (`| head`): stop quietly
            drop_stdout()
            ending = click.exceptions.Exit(BROKEN_PIPE)
        else:
            message = _one_line(error, target)
            if message is None:
                raise
            ending = click.ClickException(message)
        del exc, error
    else:
        return
    raise ending


def _transport_line(error: httpx.TransportError, target: Target) -> str:
    """What to tell the user about a failure to talk to the server at all."""
    if isinstance(error, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        # reached, then cut off (an export the server stopped sending, say)
        return f"lost the connection to the events API at {target}: {describe(error)}"
    if isinstance(error, httpx.TimeoutException) and not isinstance(error, httpx.ConnectTimeout):
        return f"the events API at {target} took too long: {describe(error)}"
    # never reached: nothing listens, a URL without http://, a proxy that failed
    cause = error.__cause__ if isinstance(error, ServerUnreachable) else error
    return f"cannot reach the events API at {target}: {describe(cause or error)}"


def _one_line(error: BaseException, target: Target) -> str | None:
    """What to tell the user about ``error`` (None: not a failure they can act on)."""
    if isinstance(error, httpx.TransportError):
        return _transport_line(error, target)
    if isinstance(error, HTTPXWSException | OSError):
        return f"lost the events stream from {target}: {describe(error)}"
    if isinstance(error, HTTPStatusError) and target.api_url is None:
        # The app answered in this process: its URL and HTTP status mean nothing here.
        return server_explanation(error.response) or str(error)
    if isinstance(error, LocalEventsError):
        return str(error)
    return None


_dropped: list[bool] = []


def drop_stdout() -> None:
    """Point standard output at the null device, as the Python documentation advises after
    a BrokenPipeError: flushing it at exit cannot fail again (Python would print "Exception
    ignored ... BrokenPipeError"). :func:`stdout_dropped` says whether it did (not for a
    test's captured output)."""
    try:
        target = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, target)
    finally:
        os.close(null)
    _dropped.append(True)


def stdout_dropped() -> bool:
    """Whether standard output's reader left and the output now goes nowhere."""
    return bool(_dropped)
