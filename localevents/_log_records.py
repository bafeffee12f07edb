"""Marks on log records that let a caller tell them apart (a module of its own, importing
nothing: the command line reads them without importing the server).

:data:`ANSWERED` marks a record that repeats a refusal the app answered the client with
(a 503 or 504, whose reason is the answer's detail): a caller that reports the answer
itself, such as the command line running the app in its own process, may leave it out.
"""

from __future__ import annotations

__all__ = ("ANSWERED", "ANSWERED_FIELD")

ANSWERED_FIELD = "answered"
"""The attribute of a log record set by :data:`ANSWERED`."""

ANSWERED = {ANSWERED_FIELD: True}
"""The ``extra`` of a log record that repeats a refusal the client was answered with."""
