"""JSON nested deeper than msgspec's decoder can follow (about a thousand levels on Python
3.11 and 3.12, 9999 on 3.13, where the interpreter's C recursion limit applies): refused
as JSON that cannot be read, wherever it arrives (a request, a frame, a file to import),
never an internal error."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("TOO_DEEP", "decoded")

TOO_DEEP = "it is nested too deeply to read"
"""Why JSON nested deeper than the decoder's recursion allows is refused."""

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def decoded(decode: Callable[[_In], _Out], data: _In) -> _Out:
    """``decode(data)``, with JSON nested too deeply for the decoder raised as a
    :class:`msgspec.DecodeError` (saying :data:`TOO_DEEP`), like any JSON it cannot read."""
    try:
        return decode(data)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None
