"""The ``localevents`` command line: ``serve``, ``emit``, ``tail``, ``query``, ``count``,
``export``, ``import`` and ``sample``.

Every command but ``serve`` talks to the server at ``--api-url`` / ``LOCALEVENTS_API_URL``
(with ``--api-key`` / ``LOCALEVENTS_API_KEY``) or, without one, to the events file itself in
its own process (ephemeral mode: ``--database``, else ``LOCALEVENTS_DATABASE``, else
``~/.localevents/events.duckdb``). Bad arguments exit with 2, failures (an unreachable
server, a refused key, an error answer) with 1 and one line on stderr. Two ways of being
stopped end every command quietly, here in one place, as shells report the signals: Ctrl-C
(KeyboardInterrupt) with 130, and a reader of the output that has gone (``| head``) with
141. The commands live in ``localevents._cli``, one module each.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

try:  # the commands take most of a second to load: Ctrl-C meanwhile ends quietly too
    import click

    from localevents._cli._count import count
    from localevents._cli._emit import emit
    from localevents._cli._export import export
    from localevents._cli._import import import_
    from localevents._cli._query import query
    from localevents._cli._sample import sample
    from localevents._cli._serve import serve
    from localevents._cli._tail import tail
    from localevents._cli._target import BROKEN_PIPE, drop_stdout, stdout_dropped
    from localevents.client._websocket import unwrap
except KeyboardInterrupt:
    raise SystemExit(128 + signal.SIGINT) from None

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = ("INTERRUPTED", "main")

INTERRUPTED = 128 + signal.SIGINT
"""The exit code after Ctrl-C: a shell's for death by SIGINT."""


class _Main(click.Group):
    """The command group: Ctrl-C and a closed output end every command quietly."""

    _interrupted = False
    """Whether Ctrl-C came while a command ran (see :func:`_quiet_once_interrupted`)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; Ctrl-C exits with 130 and a closed output with 141, without the
        "Aborted!" (and status 1) click would give either. A serving ``serve`` stops on
        Ctrl-C its own way (``_signals.StopSignals``: its events file closed, the process
        ends by the signal, which shells report as 130), so that never reaches here."""
        ending: click.ClickException | click.exceptions.Exit
        try:
            with _quiet_once_interrupted():
                return super().invoke(ctx)
        except BaseException as exc:  # re-raised below unless it is one of the two stops
            error = unwrap(exc)
            # After Ctrl-C, a failure is its doing too: DuckDB, say, turns the interrupt
            # into an error of the query it cut short ("Query interrupted").
            if isinstance(error, KeyboardInterrupt) or (
                _Main._interrupted and isinstance(error, Exception)
            ):
                ending = click.exceptions.Exit(INTERRUPTED)
            elif isinstance(error, OSError) and error.errno == errno.EPIPE:
                drop_stdout()
                ending = click.exceptions.Exit(BROKEN_PIPE)
            elif isinstance(error, UnicodeEncodeError) and _is_undecoded(error):
                ending = click.UsageError(
                    f"{error.object!r} is not UTF-8 text (the byte at position {error.start} "
                    "is not): names, labels and payloads are UTF-8"
                )
            else:
                raise
            del exc, error  # its traceback would keep DuckDB's objects alive until exit
        raise ending  # outside the except: chained to nothing

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command; exit as it says."""
        try:
            return super().main(*args, **kwargs)
        except SystemExit as leaving:
            gone = leaving.code == BROKEN_PIPE and stdout_dropped()
            # (not in a test's CliRunner, whose output is not the process's)
            stopped = leaving.code == INTERRUPTED and _Main._interrupted
            if gone or (stopped and sys.stdout is sys.__stdout__):
                # Everything was closed on the way here (the events file released, the
                # in-process app's lifespan ended). The interpreter's teardown is skipped:
                # DuckDB's bindings may report the objects still referenced by then (by an
                # interrupted request, say) as leaked, noise after a command that was told
                # to stop or whose reader has already left.
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(OSError, ValueError):
                        stream.flush()
                os._exit(BROKEN_PIPE if gone else INTERRUPTED)
            # Free now what reference cycles still hold (DuckDB's connections among
            # them), while DuckDB's bindings are whole: left to the interpreter's teardown,
            # they are sometimes reported as leaked, a screen of noise after the output.
            gc.collect()
            raise


def _is_undecoded(error: UnicodeEncodeError) -> bool:
    """Whether ``error`` is about a byte of a command-line argument that was not UTF-8:
    Python keeps such a byte as a lone surrogate (``\\udc80``-``\\udcff``), which then
    cannot be written as JSON."""
    return isinstance(error.object, str) and all(
        "\udc80" <= char <= "\udcff" for char in error.object[error.start : error.end]
    )


@contextlib.contextmanager
def _quiet_once_interrupted() -> Iterator[None]:
    """In the block, Ctrl-C raises KeyboardInterrupt as usual and also silences logging:
    what fails while the command unwinds is the interrupt's doing, not news (in ephemeral
    mode the in-process server logged, with a traceback, the request cut short as its
    events file closed). Only in the main thread, and only over Python's own handler."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    disabled = logging.root.manager.disable
    _Main._interrupted = False  # a process may run several commands (a test's runner)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.disable(disabled)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _Main._interrupted = True
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="localevents")
def main() -> None:
    """localevents: an embeddable event store speaking the Prefect events protocol."""


for _command in (serve, emit, tail, query, count, export, import_, sample):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
