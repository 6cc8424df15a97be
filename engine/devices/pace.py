"""Whether a process's backlog runs its wasm ahead on a second thread or in batches on the compute
thread (wasm_ahead.py): ahead while a second core is there, the other way measured now and then and
kept while it is clearly faster.

Why: the worker thread wins when a second core is there for it (bench_process on a quiet 2-vCPU
machine: always ahead 0.87-0.93x of bare wasm, one slot at a time 0.76x); without one the two threads
take turns, each slot pays the hand-overs and a wasm call ~25-30% slower, and the compute thread alone
can be faster (0.80x vs 0.67x at load ~3). Which wins on a busy machine is not a matter of idle cores
alone (with many runnable threads from other processes, two threads also get a larger share of the
cores: at load ~6 the worker won, 0.77x vs 0.72x), so it is measured, not predicted. Ahead is the
default on more than one CPU, and a backlog starts on it; batches are measured only after EXPLORE
seconds of computing, so a short backlog on a quiet machine never pays for exploring the slower way.
What is measured: the seconds between one FINISHED slot and the next (a slot's results out), charged
to the way that computed that slot, over windows of at least WINDOW seconds and WINDOW_SLOTS slots
(time between backlogs is no way's). Counting slots handed to the worker instead would credit a
window with up to wasm_ahead.AHEAD slots it had not finished, and charge the slots still in flight at
a switch to the next way. The slots a process finishes first (WARMUP_SLOTS) measure nothing: they pay
for a load (caches, the variant's first calls). The faster way is kept (batches only when faster by
MARGIN: a noisy window does not move a quiet machine off ahead), the other measured again after
EXPLORE seconds (doubled each time it loses again, up to EXPLORE_LONGEST: a long backlog on a quiet
machine spends ~2% of its time measuring batches), or EXPLORE_BUSY while the machine is busy: the
computing thread spent BUSY of its last window runnable but waiting for a CPU (Linux's schedstat run
delay; at load 8-13 the second core was not there, ahead used 1.05 cores and one slot at a time beat
it on Transfer, 0.77x vs 0.70x).
The choice never changes what is computed (each slot's passes run in slot order either way); it only
decides how fast.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

Waited = tuple[int, float]  # (thread id, seconds that thread has waited for a CPU while runnable)

WINDOW = 0.25  # seconds of computing per measurement, at least
WINDOW_SLOTS = 64  # slots finished per measurement, at least
WARMUP_SLOTS = 32  # a process's first slots finished, measured by no way
EXPLORE = 2.0  # seconds of computing after which the way not taken is measured again
EXPLORE_BUSY = 1.0  # ... while the machine is busy (the computing thread waited for a CPU lately)
EXPLORE_LONGEST = 16.0  # EXPLORE doubles each time the way measured again loses, up to this
BUSY = 0.2  # share of a window the computing thread waited for a CPU while runnable, from which it is busy
MARGIN = 0.05  # batches are kept only when this much faster per slot than ahead
WEIGHT = 0.5  # of the newest window in a way's seconds per slot (the rest: the window before, if the same way's)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def waited() -> Waited | None:
    """This thread's wait for a CPU so far (Linux schedstat's run delay); None where it is not kept."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            return threading.get_ident(), int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Pace:
    """One process's measured pace of both ways (not shared between threads: a process computes on
    one thread at a time, under its live lock). `ahead_pays` is asked before each slot is begun,
    `finished` after each slot is finished."""

    def __init__(
        self,
        cpus: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wait: Callable[[], Waited | None] = waited,
    ) -> None:
        self.clock, self.wait = clock, wait
        self.busy = False  # the computing thread waited for a CPU for BUSY of the last window or more
        self.explore = EXPLORE  # seconds of computing after which the way not taken is measured again
        self._exploring = False  # the window under way measures the way not taken
        self.cpus = cpus if cpus is not None else _cpus()
        self.ahead = self.cpus > 1  # the way in use (True: the worker thread); a single CPU never starts it
        self.per_slot: dict[bool, float] = {}  # way -> seconds per slot, lately
        self.measured_at: dict[bool, float] = {}  # way -> `computed` when it was last measured
        self.computed = 0.0  # seconds of computing measured so far
        self._last: float | None = None  # when the last slot finished or the backlog began (None: not computing)
        self._spent = 0.0  # seconds of the window so far
        self._slots = 0  # slots finished in the window
        self._warmup = WARMUP_SLOTS
        self._waited: Waited | None = None  # at the window's start
        self.slots = {True: 0, False: 0}  # way -> slots finished that way (bench_process reports it)

    def start(self) -> None:
        """A backlog begins: the window's clock runs."""
        self._last = self.clock()

    def stop(self) -> None:
        """It ended: the time until the next one is not the way's."""
        self._last = None

    def ahead_pays(self) -> bool:
        """Whether the next slot should run its wasm on the worker thread (else in batches here)."""
        return self.ahead

    def finished(self, ahead: bool) -> None:
        """A slot whose wasm ran that way (True: on the worker thread) is finished."""
        now = self.clock()
        self.slots[ahead] += 1
        last, self._last = self._last, now
        if last is None or ahead != self.ahead:
            return  # outside a backlog, or begun before a switch: finished the old way, measured by none
        if self._warmup:
            self._warmup -= 1
            return
        if not self._slots:
            self._waited = self.wait()
        self._spent += now - last
        self._slots += 1
        if self._slots >= WINDOW_SLOTS and self._spent >= WINDOW:
            self.busy = self._busy(self._spent)
            self.record(self._spent / self._slots, self._spent)

    def _busy(self, spent: float) -> bool:
        """Whether the computing thread waited for a CPU for BUSY of the window or more (unknown when
        the window's backlogs ran on more than one thread: not busy)."""
        before, after = self._waited, self.wait()
        if before is None or after is None or before[0] != after[0]:
            return False
        return after[1] - before[1] >= BUSY * spent

    def record(self, per_slot: float, spent: float) -> None:
        """A window of the way in use ended: note its pace, choose the way for the next one."""
        self._spent, self._slots = 0.0, 0
        way = self.ahead
        before = self.per_slot.get(way)
        if before is not None and self.measured_at.get(way) == self.computed:  # the window before was this way's too
            per_slot = WEIGHT * per_slot + (1 - WEIGHT) * before
        self.per_slot[way] = per_slot  # else a value from before the other way ran is not blended in
        self.computed += spent
        self.measured_at[way] = self.computed
        if self.cpus <= 1:
            return
        other, explored = not way, False
        if self.computed - self.measured_at.get(other, 0.0) >= (EXPLORE_BUSY if self.busy else self.explore):
            self.ahead, explored = other, True  # not measured lately (or ever): a window of it
        elif other in self.per_slot:
            self.ahead = self.per_slot[False] >= (1 - MARGIN) * self.per_slot[True]
        if self._exploring:  # this window measured the way not taken: looked at sooner if it won
            self.explore = EXPLORE if self.ahead == way else min(2 * self.explore, EXPLORE_LONGEST)
        self._exploring = explored
