"""The guard that keeps a record Faust dropped at a rebalance from being committed over."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.faust_glue import OffsetGuard

P0, P1 = TP("profile-updates", 0), TP("profile-updates", 1)


def events(*coordinates: tuple[TP, int]) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for tp, o in coordinates]


def offsets(admitted: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp.partition, e.message.offset) for e in admitted]


def test_records_in_order_pass_from_the_committed_offset() -> None:
    guard = OffsetGuard()
    guard.reset({P0: 10})
    admitted, seek = guard.admit(events((P0, 10), (P1, 0), (P0, 11), (P1, 1)))
    assert offsets(admitted) == [(0, 10), (1, 0), (0, 11), (1, 1)] and seek == {}


def test_a_dropped_record_holds_its_partition_back_and_is_read_again() -> None:
    guard = OffsetGuard()
    guard.reset({P0: 4, P1: 0})
    admitted, seek = guard.admit(events((P0, 5), (P1, 0), (P0, 6)))
    assert offsets(admitted) == [(1, 0)]  # 5 and 6 wait for 4; the other partition goes on
    assert seek == {P0: 4}
    # After the seek back: 4, then 5 and 6 again, in order.
    admitted, seek = guard.admit(events((P0, 4), (P0, 5), (P0, 6)))
    assert offsets(admitted) == [(0, 4), (0, 5), (0, 6)] and seek == {}
    # What was processed already is not processed twice.
    admitted, _ = guard.admit(events((P0, 5), (P0, 7)))
    assert offsets(admitted) == [(0, 7)]


def test_a_gap_still_there_after_repeated_seeks_is_accepted() -> None:
    """Transaction markers take offsets that no record has."""
    guard = OffsetGuard()
    guard.reset({P0: 8})
    for _ in range(OffsetGuard.SEEKS_BEFORE_GAP):
        assert guard.admit(events((P0, 9), (P0, 10))) == ([], {P0: 8})
    admitted, seek = guard.admit(events((P0, 9), (P0, 10)))
    assert offsets(admitted) == [(0, 9), (0, 10)] and seek == {}
