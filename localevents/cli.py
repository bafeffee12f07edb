"""The ``localevents`` command line: ``serve``, ``emit``, ``tail``, ``query``, ``count``,
``export``, ``import`` and ``sample``.

Every command but ``serve`` talks to the server at ``--api-url`` / ``LOCALEVENTS_API_URL``
(with ``--api-key`` / ``LOCALEVENTS_API_KEY``) or, without one, to the events file itself in
its own process (ephemeral mode: ``--database``, else ``LOCALEVENTS_DATABASE``, else
``~/.localevents/events.duckdb``). Bad arguments exit with 2, failures (an unreachable
server, a refused key, an error answer) with 1 and one line on stderr; a command whose
output's reader has gone (``| head``) stops quietly with 141. The commands live in
``localevents._cli``, one module each.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from localevents._cli._count import count
from localevents._cli._emit import emit
from localevents._cli._export import export
from localevents._cli._import import import_
from localevents._cli._query import query
from localevents._cli._sample import sample
from localevents._cli._serve import serve
from localevents._cli._tail import tail
from localevents._cli._target import BROKEN_PIPE, stdout_dropped

__all__ = ("main",)


class _Main(click.Group):
    """The command group, leaving at once when its output's reader has gone."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command; exit as it says."""
        try:
            return super().main(*args, **kwargs)
        except SystemExit as leaving:
            if leaving.code == BROKEN_PIPE and stdout_dropped():
                # Everything was closed on the way here (the events file released, the
                # in-process app's lifespan ended). The interpreter's teardown is skipped:
                # DuckDB's bindings may report the objects still referenced by then as
                # leaked, noise on a terminal whose reader has already left.
                sys.stderr.flush()
                os._exit(BROKEN_PIPE)
            raise


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="localevents")
def main() -> None:
    """localevents: an embeddable event store speaking the Prefect events protocol."""


for _command in (serve, emit, tail, query, count, export, import_, sample):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
