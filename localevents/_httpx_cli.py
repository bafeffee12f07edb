"""``import httpx`` without loading httpx's command-line client until it is used.

httpx imports its command-line client (click, rich's console, pygments' lexers) with the
package whenever those are installed, and localevents' own command line installs them. On
this project's 2-core machine that was about 60 ms of every start-up: ``import httpx`` took
145-178 ms, and 77-105 ms without the client.

:func:`defer_httpx_cli` runs when the ``localevents`` package is imported, before any of
its modules imports httpx: it registers a stand-in
module for ``httpx._main``. httpx binds the stand-in's ``main``, which loads the real
module when it is called or inspected; any other attribute of the stand-in does the same.
Nothing changes for code that uses the httpx command line, and the ``httpx`` console script
runs in its own process, without localevents.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ("defer_httpx_cli",)

_NAME = "httpx._main"


def _real() -> types.ModuleType:
    """The real ``httpx._main``, imported in place of the stand-in on first use."""
    if sys.modules.get(_NAME) is _STAND_IN:
        del sys.modules[_NAME]
    return importlib.import_module(_NAME)


class _DeferredModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probes e.g. ``__path__``
            raise AttributeError(name)
        return getattr(_real(), name)


class _DeferredMain:
    """Stands for httpx's ``main`` command until it is called or inspected."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _real().main(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(_real().main, name)


_STAND_IN = _DeferredModule(_NAME, "httpx's command-line client, loaded on first use")
_STAND_IN.main = _DeferredMain()  # type: ignore[attr-defined]


def defer_httpx_cli() -> None:
    """Register the stand-in, unless httpx (or its client) is already imported."""
    if "httpx" not in sys.modules and _NAME not in sys.modules:
        sys.modules[_NAME] = _STAND_IN


defer_httpx_cli()
