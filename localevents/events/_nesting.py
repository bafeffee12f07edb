"""JSON that msgspec's decoder stops on without a :class:`msgspec.DecodeError`, refused as
JSON that cannot be read wherever it arrives (a request, a frame, a file to import), never
an internal error:

* nested deeper than the decoder can follow (about a thousand levels on Python 3.11 and
  3.12, 9999 on 3.13, where the interpreter's C recursion limit applies): a
  ``RecursionError``;
* a string holding bytes that are not UTF-8: a ``UnicodeDecodeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("TOO_DEEP", "NotUtf8", "decoded", "utf8_problem")

TOO_DEEP = "it is nested too deeply to read"
"""Why JSON nested deeper than the decoder's recursion allows is refused."""

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class NotUtf8(msgspec.DecodeError):
    """JSON with a string that is not UTF-8: a syntax error, whatever type was expected."""


def decoded(decode: Callable[[_In], _Out], data: _In) -> _Out:
    """``decode(data)``, with JSON nested too deeply for the decoder raised as a
    :class:`msgspec.DecodeError` (saying :data:`TOO_DEEP`), like any JSON it cannot read,
    and a string that is not UTF-8 as :class:`NotUtf8`."""
    try:
        return decode(data)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None
    except UnicodeError as exc:
        raise NotUtf8(_not_utf8(exc, data)) from None


def _not_utf8(exc: UnicodeError, data: object) -> str:
    """msgspec's way of naming a syntax error, for bytes that are not UTF-8 in a string.
    msgspec's error holds that string's bytes alone, so the offset comes from checking
    ``data`` itself (an error path: the first bad byte of the whole text)."""
    if isinstance(data, bytes | bytearray | memoryview):
        problem = utf8_problem(bytes(data))
        if problem is not None:
            return problem
    return "JSON is malformed: invalid UTF-8"


def utf8_problem(text: bytes, of: str = "") -> str | None:
    """Why raw JSON ``text`` is not UTF-8, naming the first bad byte and what it is ``of``
    (None: it is)."""
    if text.isascii():
        return None
    try:
        text.decode()
    except UnicodeDecodeError as exc:
        return f"JSON is malformed: invalid UTF-8 (byte {exc.start}{of})"
    return None
