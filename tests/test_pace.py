"""pace: a process's backlogs run their wasm ahead on a second thread while that is not clearly
slower than in batches on the compute thread; the pace of each way is the time between FINISHED
slots, the way not taken is measured again now and then, and time between backlogs is no way's."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest

from aonode.engine.devices import pace as pace_module
from aonode.engine.devices.pace import (
    BUSY,
    EXPLORE,
    EXPLORE_BUSY,
    EXPLORE_LONGEST,
    MARGIN,
    WARMUP_SLOTS,
    WINDOW,
    WINDOW_SLOTS,
    Pace,
    Waited,
    waited,
)


@dataclass
class Clock:
    """Seconds that pass only when a test says so: each slot takes exactly what the test gives it."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def backlog(pace: Pace, clock: Clock, slots: int, per_slot: float) -> None:
    """A backlog of `slots` slots, each finished `per_slot` seconds after the one before, the way
    pace chooses (asked before each slot is begun, as wasm_ahead.py asks)."""
    pace.start()
    for _ in range(slots):
        ahead = pace.ahead_pays()
        clock.now += per_slot
        pace.finished(ahead)
    pace.stop()


@dataclass
class RunQueue:
    """This thread's wait for a CPU as the test says: `share` of the clock's time (None: not kept)."""

    clock: Clock
    share: float | None = 0.0
    thread: int = 1

    def __call__(self) -> Waited | None:
        return None if self.share is None else (self.thread, self.share * self.clock.now)


def warmed(cpus: int = 2, queue: RunQueue | None = None) -> tuple[Pace, Clock]:
    clock = queue.clock if queue is not None else Clock()
    pace = Pace(cpus=cpus, clock=clock, wait=queue or RunQueue(clock))
    backlog(pace, clock, WARMUP_SLOTS, 1.0)  # slow first slots: measured by no way
    assert pace.per_slot == {}
    return pace, clock


def window(per_slot: float) -> int:
    """Slots in one window at that pace."""
    return max(WINDOW_SLOTS, int(WINDOW / per_slot) + 1)


def test_a_single_cpu_never_runs_ahead_and_two_start_ahead() -> None:
    one, clock = warmed(cpus=1)
    assert not one.ahead
    backlog(one, clock, 10 * window(0.001), 0.001)
    assert not one.ahead and set(one.per_slot) == {False}
    assert Pace(cpus=2).ahead


def windows_to_explore(per_slot: float) -> int:
    """Windows at that pace until EXPLORE seconds of computing."""
    return math.ceil(EXPLORE / (window(per_slot) * per_slot))


def windows(pace: Pace, clock: Clock, count: int, per_slot: float) -> list[bool]:
    """`count` windows at that pace; the way chosen after each."""
    chosen = []
    for _ in range(count):
        backlog(pace, clock, window(per_slot), per_slot)
        chosen.append(pace.ahead)
    return chosen


def test_ahead_runs_until_explore_seconds_then_batches_get_one_window_and_the_faster_is_kept() -> None:
    pace, clock = warmed()
    n = windows_to_explore(0.001)
    assert windows(pace, clock, n - 1, 0.001) == [True] * (n - 1)  # batches never measured: no time on them
    assert set(pace.per_slot) == {True}
    assert windows(pace, clock, 1, 0.001) == [False]  # EXPLORE seconds ahead: a window of batches
    assert windows(pace, clock, 1, 0.0012) == [True]  # batches slower
    assert windows(pace, clock, n - 1, 0.001) == [True] * (n - 1)  # kept until it is time to look again
    assert pace.per_slot[False] == pytest.approx(0.0012)


def test_batches_are_kept_only_when_faster_by_the_margin() -> None:
    pace, clock = warmed()
    n = windows_to_explore(0.001)
    assert windows(pace, clock, n, 0.001)[-1] is False
    assert windows(pace, clock, 1, 0.001 * (1 - MARGIN / 2)) == [True]  # a little faster: noise, not a reason
    assert pace.explore == 2 * EXPLORE  # it lost: looked at later next time
    assert windows(pace, clock, 2 * n, 0.001)[-1] is False
    assert windows(pace, clock, 1, 0.0005) == [False]  # the second core is taken: batches twice as fast
    assert pace.explore == EXPLORE  # it won: ahead is looked at again after EXPLORE
    m = windows_to_explore(0.0005) - 1  # EXPLORE seconds since ahead's window, that one batches window included
    assert windows(pace, clock, m, 0.0005) == [False] * (m - 1) + [True]  # kept, then ahead looked at again


def test_a_way_that_keeps_losing_is_measured_ever_more_rarely() -> None:
    pace, clock = warmed()
    explored_after = []
    for _ in range(6):
        ahead = 0
        while pace.ahead:
            windows(pace, clock, 1, 0.001)
            ahead += 1
        explored_after.append(round(ahead * window(0.001) * 0.001))
        assert windows(pace, clock, 1, 0.0012) == [True]  # batches lost again
    assert explored_after == [2, 4, 8, 16, 16, 16]  # seconds of ahead between looks at batches
    assert pace.explore == EXPLORE_LONGEST


def test_a_busy_machine_measures_the_other_way_sooner() -> None:
    """Waiting for a CPU for BUSY of a window or more: the second core is likely not there, and the
    other way is measured after EXPLORE_BUSY seconds instead of EXPLORE."""
    queue = RunQueue(Clock(), share=BUSY * 1.5)
    pace, clock = warmed(queue=queue)
    busy = math.ceil(EXPLORE_BUSY / (window(0.001) * 0.001))
    assert busy < windows_to_explore(0.001)
    assert windows(pace, clock, busy, 0.001) == [True] * (busy - 1) + [False]
    assert pace.busy
    assert windows(pace, clock, 1, 0.0009) == [False]  # batches faster by more than the margin: kept
    queue.share = BUSY / 2  # quiet again
    n = windows_to_explore(0.0009)
    assert windows(pace, clock, n, 0.0009)[-1] is True and not pace.busy  # after EXPLORE seconds


@pytest.mark.parametrize("share, thread", [(None, 1), (BUSY * 2, 2)])
def test_a_wait_that_is_not_kept_or_not_one_threads_says_not_busy(share: float | None, thread: int) -> None:
    queue = RunQueue(Clock(), share=BUSY * 2)
    pace, clock = warmed(queue=queue)
    pace.start()
    pace.finished(True)  # the window's first slot: its wait is read here
    queue.share, queue.thread = share, thread  # then not kept, or the backlogs move to another thread
    backlog(pace, clock, window(0.001), 0.001)
    assert set(pace.per_slot) == {True} and not pace.busy


def test_this_threads_wait_for_a_cpu_is_read_where_linux_keeps_it() -> None:
    first = waited()
    if first is None:
        pytest.skip("no /proc/thread-self/schedstat here")
    sum(range(200_000))
    later = waited()
    assert later is not None and later[0] == first[0] and later[1] >= first[1] >= 0


def test_slots_handed_to_the_worker_count_only_once_finished() -> None:
    """wasm_ahead.py asks before each slot it begins, up to AHEAD slots before they are finished:
    a window is the slots finished in it, so the slots in flight do not make a way look faster."""
    pace, clock = warmed()
    pace.start()
    for _ in range(8):  # the first hand-overs of a backlog: nothing finished yet
        assert pace.ahead_pays()
    for _ in range(window(0.002)):
        clock.now += 0.002
        pace.finished(True)
    pace.stop()
    assert pace.per_slot[True] == pytest.approx(0.002)
    assert pace.slots == {True: WARMUP_SLOTS + window(0.002), False: 0}  # finished, by the way that ran them


def test_slots_of_the_way_left_finish_unmeasured() -> None:
    """At a switch the slots begun the old way are finished first: their time is neither way's."""
    pace, clock = warmed()
    assert windows(pace, clock, windows_to_explore(0.001), 0.001)[-1] is False
    pace.start()
    for _ in range(8):  # begun on the worker before the switch, finished after it, slowly
        clock.now += 0.01
        pace.finished(True)
    assert set(pace.per_slot) == {True} and pace.per_slot[True] == pytest.approx(0.001)
    for _ in range(window(0.0008)):
        clock.now += 0.0008
        pace.finished(False)
    pace.stop()
    assert pace.per_slot[False] == pytest.approx(0.0008)  # the old way's slots not in it


def test_time_between_backlogs_is_not_counted_as_computing() -> None:
    pace, clock = warmed()
    for _ in range(window(0.001)):
        backlog(pace, clock, 1, 0.001)
        clock.now += 5.0  # idle: a node waiting for messages
    assert pace.per_slot[True] == pytest.approx(0.001)
    assert pace.computed == pytest.approx(window(0.001) * 0.001)


def test_on_the_real_clock_idle_time_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pace_module, "WARMUP_SLOTS", 0)
    monkeypatch.setattr(pace_module, "WINDOW_SLOTS", 2)
    monkeypatch.setattr(pace_module, "WINDOW", 0.05)
    pace = Pace(cpus=2)
    pace.start()
    pace.finished(pace.ahead_pays())
    pace.stop()
    time.sleep(0.3)  # idle
    pace.start()
    time.sleep(0.06)
    pace.finished(pace.ahead_pays())
    pace.stop()
    assert set(pace.per_slot) == {True}
    assert pace.per_slot[True] < 0.25  # the window was ~0.06 s of computing, not the 0.3 s idle between
