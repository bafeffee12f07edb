"""Page tokens: opaque, tamper-evident keyset cursors (D10).

A token carries the resolved filter, the page size, the total counted on the first page and
the (occurred, id) key of the last event served, signed with HMAC-SHA256 under a secret
kept in the database file. The next page continues strictly after that key, so pages do not
shift when events arrive and a deep page costs what the first one costs. Anything that does
not verify raises :class:`InvalidPageToken` (403), never a server error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import msgspec

from localevents._exceptions import InvalidPageToken
from localevents.events._filters import EventFilter

__all__ = ("PageCursor", "decode_cursor", "encode_cursor")

_MAC_BYTES = 16


class PageCursor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the next page starts, and what query it belongs to."""

    filter: EventFilter
    page_size: int
    total: int
    after_occurred_us: int
    after_id: str
    before_seq: int | None = None
    """For a ``distinct`` query: only the events stored before the first page count."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PageCursor)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # The decoder skips characters outside the alphabet and ignores the spare low bits of
    # the last character, so several spellings read as one token; only ours is accepted.
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.digest(secret, body, hashlib.sha256)[:_MAC_BYTES]


def encode_cursor(cursor: PageCursor, secret: bytes) -> str:
    """Serialize and sign a cursor; the result is URL-safe (``A-Z a-z 0-9 - _ .``)."""
    body = _encoder.encode(cursor)
    return f"{_b64(body)}.{_b64(_mac(secret, body))}"


def decode_cursor(token: str, secret: bytes) -> PageCursor:
    """Verify and read a token made by :func:`encode_cursor` with the same secret."""
    body_text, dot, mac_text = token.partition(".")
    if not dot or not body_text or not mac_text:
        raise InvalidPageToken("the page token is malformed")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise InvalidPageToken("the page token is malformed") from None
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise InvalidPageToken("the page token was not issued by this store or was altered")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:  # a signed token we cannot read: an older format
        raise InvalidPageToken("the page token can no longer be read") from None
