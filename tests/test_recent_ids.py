"""The ids of recent writes that answer the duplicate check in memory: what they know, and
what they leave to the file."""

from __future__ import annotations

from localevents.storage._recent_ids import RecentIds


def test_ids_above_the_newest_stored_one_are_known_new_and_the_rest_left_to_the_file() -> None:
    recent = RecentIds(newest=100)

    known, older = recent.known([99, 100, 101, 150])

    assert known == set()
    assert older == [99, 100]


def test_stored_ids_are_known_until_dropped_and_the_horizon_rises_past_those_dropped() -> None:
    recent = RecentIds(newest=-1, capacity=4)
    recent.add([10, 30])
    recent.add([20, 25])
    assert recent.known([10, 20, 30, 40]) == ({10, 20, 30}, [])

    recent.add([40, 35])  # six ids: the oldest batch goes, and with it everything <= 30

    assert recent.horizon == 30
    assert recent.newest == 40
    known, older = recent.known([10, 20, 31, 35, 40])
    assert older == [10, 20]  # the file decides for these
    assert known - set(older) == {35, 40}  # and 31 is known new


def test_forgetting_leaves_every_id_up_to_the_newest_to_the_file() -> None:
    recent = RecentIds(newest=-1)
    recent.add([5, 9, 7])

    recent.forget()

    assert recent.horizon == 9
    assert recent.known([5, 9, 10]) == (set(), [5, 9])
    assert len(recent) == 0
