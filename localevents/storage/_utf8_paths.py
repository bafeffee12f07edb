"""File names that DuckDB can open.

DuckDB takes a path as UTF-8 text. A name that is not (bytes in another encoding, which
Python carries as lone surrogates) ended in DuckDB's ``std::bad_cast`` or a "Python
Conversion Failure", with a traceback; it is refused up front, naming the path.
"""

from __future__ import annotations

import os

from localevents._exceptions import ConfigurationError

__all__ = ("utf8_path",)


def utf8_path(path: str, what: str) -> str:
    """``path``, when its name is UTF-8; otherwise a :class:`ConfigurationError` naming
    ``what`` it is (e.g. "the events file") and the path, its odd bytes escaped."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ConfigurationError(
            f"cannot open {what} {shown}: its name is not UTF-8, and DuckDB opens only "
            "UTF-8 names (rename it, or choose another)"
        ) from None
    return path
