"""pace: a process's backlogs run their wasm ahead or one slot at a time, whichever computed faster
lately, the other measured again now and then; time between backlogs is no way's."""

from __future__ import annotations

import time

import pytest

from aonode.engine.devices import pace as pace_module
from aonode.engine.devices.pace import EXPLORE, WINDOW, Pace


def test_a_single_cpu_never_runs_ahead_and_two_start_ahead() -> None:
    one = Pace(cpus=1)
    assert not one.ahead
    one.record(0.001, WINDOW)
    assert not one.ahead
    assert Pace(cpus=2).ahead


def test_it_measures_the_other_way_then_keeps_the_faster_until_it_is_time_to_look_again() -> None:
    pace, window = Pace(cpus=2), EXPLORE / 6  # windows of 0.5 s of computing
    pace.record(0.002, window)  # ahead: 2 ms a slot
    assert not pace.ahead  # one at a time not measured yet: a window of it
    pace.record(0.001, window)  # one at a time: 1 ms a slot
    assert not pace.ahead  # faster: kept
    for _ in range(4):  # until EXPLORE seconds of computing since ahead was measured
        pace.record(0.001, window)
        assert not pace.ahead
    pace.record(0.001, window)
    assert pace.ahead  # a window of ahead again
    pace.record(0.0005, window)  # a core freed up: ahead 0.5 ms a slot now (not blended with 2 ms)
    assert pace.ahead
    pace.record(0.0025, window)  # and taken again: 1.5 ms (blended with the window before)
    assert not pace.ahead


def test_time_between_backlogs_is_not_counted_as_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pace_module, "WINDOW", 1.0)  # longer than a stall of a loaded machine between two lines
    window = pace_module.WINDOW
    pace = Pace(cpus=2)
    pace.start()
    pace.ahead_pays()
    pace.stop()
    time.sleep(1.5 * window)  # idle: a node waiting for messages
    pace.start()
    assert pace.ahead_pays()
    assert pace.per_slot == {}  # no window ended: the idle time was not the backlog's
    time.sleep(1.5 * window)
    pace.ahead_pays()
    assert pace.per_slot == {}  # one ended: the warm-up, which measures nothing
    time.sleep(1.5 * window)
    pace.ahead_pays()
    pace.stop()
    assert set(pace.per_slot) == {True}  # now one did, of the way in use
