"""Whether a process's backlog runs its wasm ahead on a second thread or in batches on the compute
thread (wasm_ahead.py): the way that computed its slots faster lately, each measured as it runs.

Why: the worker thread wins when a second core is there for it; without one the two threads take
turns, each slot pays the hand-overs and a wasm call ~25-30% slower (measured on the 2-vCPU VM), and
the compute thread alone can be faster (one slot at a time did 0.80x vs 0.67x of bare wasm at load
~3). But which wins on a busy machine is not a matter of idle cores alone: with many runnable
threads from other processes, two threads also get a larger share of the cores (at load ~6 the
worker won, 0.77x vs 0.72x). So the choice is measured, not predicted: seconds per slot of each way over
windows of WINDOW seconds of computing (time between backlogs does not count), the faster one
kept, and the other measured again after EXPLORE seconds. A process's first window is a warm-up
and measures nothing: it pays for the first slots after a load (caches, the worker's start), and
charged to the way that happens to go first it decided for the other (bench_process on a quiet
machine: the node's pick stayed one slot at a time at 0.74x of bare wasm while always ahead did 0.92x).
The choice never changes what is computed (each slot's passes run in slot order either way); it only
decides how fast.
"""

from __future__ import annotations

import os
import time

WINDOW = 0.2  # seconds of computing per measurement
EXPLORE = 1.5  # seconds of computing after which the way not taken is measured again
WEIGHT = 0.5  # of the newest window in a way's seconds per slot (the rest: the window before, if the same way's)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Pace:
    """One process's measured pace of both ways (not shared between threads: a process computes on
    one thread at a time, under its live lock). `ahead_pays` is asked before each slot."""

    def __init__(self, cpus: int | None = None) -> None:
        self.cpus = cpus if cpus is not None else _cpus()
        self.ahead = self.cpus > 1  # the way in use (True: the worker thread); a single CPU never starts it
        self.per_slot: dict[bool, float] = {}  # way -> seconds per slot, lately
        self.measured_at: dict[bool, float] = {}  # way -> `computed` when it was last measured
        self.computed = 0.0  # seconds of computing measured so far
        self._spent = 0.0  # seconds of computing in the window, before the current run
        self._resumed: float | None = None  # when the current run began (None: not computing)
        self._slots = 0  # slots asked for in the window
        self._warm = False  # the first window (a warm-up) has ended

    def start(self) -> None:
        """A backlog begins: the window's clock runs."""
        self._resumed = time.perf_counter()

    def stop(self) -> None:
        """It ended: the time until the next one is not the way's."""
        if self._resumed is not None:
            self._spent += time.perf_counter() - self._resumed
            self._resumed = None

    def ahead_pays(self) -> bool:
        """Whether the next slot should run its wasm on the worker thread (else in batches here)."""
        self._slots += 1
        if self._resumed is None:
            return self.ahead
        now = time.perf_counter()
        spent = self._spent + now - self._resumed
        if spent >= WINDOW:
            if self._warm:
                self.record(spent / self._slots, spent)
            self._warm = True
            self._spent, self._resumed, self._slots = 0.0, now, 0
        return self.ahead

    def record(self, per_slot: float, spent: float) -> None:
        """A window of the way in use ended: note its pace, choose the way for the next one."""
        way = self.ahead
        before = self.per_slot.get(way)
        if before is not None and self.measured_at.get(way) == self.computed:  # the window before was this way's too
            per_slot = WEIGHT * per_slot + (1 - WEIGHT) * before
        self.per_slot[way] = per_slot  # else a value from before the other way ran is not blended in
        self.computed += spent
        self.measured_at[way] = self.computed
        if self.cpus <= 1:
            return
        other = not way
        if other not in self.per_slot or self.computed - self.measured_at[other] >= EXPLORE:
            self.ahead = other  # not measured lately: a window of it
        else:
            self.ahead = self.per_slot[True] < self.per_slot[False]
