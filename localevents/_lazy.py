"""Exports a package loads on first use (PEP 562), so importing it stays cheap.

A package lists its lazy names by module and binds the result under ``if not
TYPE_CHECKING`` (type checkers and IDEs read the same names from imports under
``TYPE_CHECKING``)::

    __getattr__, __dir__ = lazy_exports(__name__, {"localevents.client._api": ("get_client",)})

The first access imports the module and keeps the name in the package, so later accesses
are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("lazy_exports",)


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names ``modules`` define."""
    namespace = vars(sys.modules[package])
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
