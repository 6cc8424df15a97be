"""spare_cores: the cores this process could have had = its CPU time + the machine's idle time, per second."""

from __future__ import annotations

import time

from aonode.engine.devices.spare_cores import (
    AHEAD_FROM,
    WINDOW,
    Sample,
    SpareCores,
    blend,
    cores_between,
    idle_seconds,
)


def test_own_cpu_and_idle_time_add_up_per_second_of_the_window() -> None:
    before = Sample(wall=10.0, cpu=1.0, idle=100.0)
    assert cores_between(before, Sample(wall=10.5, cpu=1.5, idle=100.5)) == 2.0  # busy one core, the other idle
    assert cores_between(before, Sample(wall=10.5, cpu=1.25, idle=100.0)) == 0.5  # half a core, none idle
    assert cores_between(before, Sample(wall=10.5, cpu=1.5, idle=None)) is None  # no /proc/stat: unknown


def test_the_machine_idle_time_is_read_and_grows() -> None:
    first = idle_seconds()
    assert first is not None  # Linux: /proc/stat
    time.sleep(0.05)
    second = idle_seconds()
    assert second is not None and second >= first


def test_one_cpu_never_runs_ahead_and_an_unmeasured_machine_does() -> None:
    assert not SpareCores(cpus=1).ahead_pays()
    spare = SpareCores(cpus=2)
    assert spare.estimate == 2.0 >= AHEAD_FROM and spare.ahead_pays()  # before the first window ends


def test_two_windows_of_one_busy_core_and_nothing_idle_turn_it_off_and_two_free_cores_back_on() -> None:
    spare = SpareCores(cpus=2)
    for _ in range(2):
        spare.estimate = blend(spare.estimate, 1.0, 2)
    spare._last = Sample.now()  # no window ended since: the estimate decides
    assert not spare.ahead_pays()
    for _ in range(2):
        spare.estimate = blend(spare.estimate, 2.5, 2)  # counted at most as the machine's 2
    assert spare.estimate <= 2.0 and spare.ahead_pays()


def test_the_estimate_follows_this_machine_window_by_window() -> None:
    spare = SpareCores(cpus=2)
    start = spare._last
    time.sleep(2 * WINDOW)
    spare.ahead_pays()
    assert spare._last.wall > start.wall  # a window ended and was measured
    assert 0.0 <= spare.estimate <= 2.0
