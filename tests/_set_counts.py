"""Checking the label sets' event counts against the events themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localevents.storage import EventStore

__all__ = ("assert_set_counts_exact",)


def assert_set_counts_exact(store: EventStore) -> None:
    """Each recorded label set counts exactly the events below the tables' reach that have
    its key, with their first and last instants; no set counts nothing."""
    for table, key in (("resource_sets", "resource_key"), ("related_sets", "related_key")):
        recorded = store.fetchall(
            f"SELECT key, event_count, first_us, last_us FROM {table} ORDER BY key"
        )
        actual = store.fetchall(
            f"SELECT {key}, count(*), min(epoch_us(occurred)), max(epoch_us(occurred)) "
            "FROM events WHERE seq < (SELECT value::BIGINT FROM localevents_meta "
            f"WHERE key = 'label_sets_through') GROUP BY {key} ORDER BY {key}"
        )
        assert recorded == actual, table
