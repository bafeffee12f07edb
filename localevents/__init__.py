"""localevents: an embeddable, single-file event store with an async SDK."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
