"""When a worker reports itself unhealthy: crashed, or input waiting with no batch completing."""

from __future__ import annotations

from streams.health import WorkerHealth
from streams.processor import InputRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(*offsets: int) -> list[InputRecord]:
    return [InputRecord("profile-updates", 0, offset, b"m", b"{}", 0.0) for offset in offsets]


def test_a_crash_is_unhealthy_until_the_process_stops() -> None:
    health = WorkerHealth(60, Clock())
    assert health.problem() is None
    health.crashed(RuntimeError("broker gone"))
    assert health.problem() == "processing crashed: RuntimeError: broker gone"


def test_waiting_input_without_progress_is_a_stall() -> None:
    clock = Clock()
    health = WorkerHealth(60, clock)
    health.batch_done(records(0, 1))
    assert health.waiting({("profile-updates", 0): 2}) is False
    waiting = health.waiting({("profile-updates", 0): 5})
    assert waiting is True
    health.observe(waiting=waiting, recovering=False)
    clock.now += 59
    assert health.problem() is None
    clock.now += 2
    assert health.problem() is not None and "no batch completed" in health.problem()  # type: ignore[operator]
    health.batch_done(records(2, 3, 4))
    assert health.problem() is None


def test_idle_time_without_input_does_not_count_towards_a_stall() -> None:
    clock = Clock()
    health = WorkerHealth(60, clock)
    health.observe(waiting=False, recovering=False)
    clock.now += 3600
    health.observe(waiting=True, recovering=False)
    assert health.problem() is None
    clock.now += 61
    assert health.problem() is not None


def test_recovering_tables_is_not_a_stall() -> None:
    clock = Clock()
    health = WorkerHealth(60, clock)
    health.observe(waiting=True, recovering=True)
    clock.now += 600
    assert health.problem() is None
