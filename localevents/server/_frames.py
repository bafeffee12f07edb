"""WebSocket text frames built once and written as they are (RFC 6455 §5.2).

A frame from a server is not masked, so the frame of a live event is the same bytes for
every subscriber. ``localevents serve`` lets ``/api/events/out`` write such frames straight
to the connection (see :data:`~localevents.server._checkpoint.RAW_FRAMES`), several per
write: wsproto built every frame again for every subscriber and the connection took one
write per frame, together about half of the server's time with 100 subscribers (py-spy).

Unmasked, unfragmented, uncompressed frames are valid whatever the connection negotiated:
with permessage-deflate, a message whose RSV1 bit is clear is simply not compressed
(RFC 7692 §6).
"""

from __future__ import annotations

import struct

__all__ = ("text_frame",)

_FIN_TEXT = 0x81  # FIN, no RSV bits, opcode 1 (text)
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One complete, unmasked text frame carrying ``payload`` (UTF-8 text)."""
    size = len(payload)
    if size < 126:
        header = _SHORT.pack(_FIN_TEXT, size)
    elif size < 1 << 16:
        header = _MEDIUM.pack(_FIN_TEXT, 126, size)
    else:
        header = _LONG.pack(_FIN_TEXT, 127, size)
    return header + payload
