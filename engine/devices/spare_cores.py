"""Whether a backlog's wasm calls should run ahead on a second thread right now: the cores this
process could have had lately, measured.

Why: running wasm ahead (wasm_ahead.py) wins only when a second core is free for it. Without one the
two threads take turns on one core, and each slot pays the hand-overs and a wasm call ~25-30% slower
(measured on the 2-vCPU VM): computing one slot at a time is faster then (under load 13 it was). The
cores this process could have had over a window = the CPU time its threads used + the machine's
idle time (Linux's /proc/stat), per second of the window; while wasm runs ahead that is ~2 on a
quiet 2-core machine and ~1 when others keep a core busy; one slot at a time, ~2 and ~1 as well.
The choice never changes what is computed (each slot's passes run in slot order either way); it
only decides how fast.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

AHEAD_FROM = 1.5  # cores (own CPU + idle, per second) from which wasm runs ahead
WINDOW = 0.1  # seconds: the shortest window measured (/proc/stat counts in 10 ms ticks)
WEIGHT = 0.5  # of the newest window in the estimate (the rest: the estimate before it)
STAT = "/proc/stat"
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_seconds() -> float | None:
    """Seconds all CPUs have been idle (or waiting for I/O) since boot; None where not known."""
    try:
        with open(STAT, "rb") as stat:
            fields = stat.readline().split()
        return (int(fields[4]) + int(fields[5])) / TICKS  # "cpu user nice system idle iowait ..."
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Sample:
    wall: float  # time.monotonic()
    cpu: float  # time.process_time(): this process's threads
    idle: float | None  # idle_seconds()

    @classmethod
    def now(cls) -> Sample:
        return cls(time.monotonic(), time.process_time(), idle_seconds())


def cores_between(before: Sample, after: Sample) -> float | None:
    """Own CPU + idle CPU per second between two samples; None without idle times or a window."""
    wall = after.wall - before.wall
    if wall <= 0 or before.idle is None or after.idle is None:
        return None
    return (after.cpu - before.cpu + after.idle - before.idle) / wall


def blend(estimate: float, cores: float, cpus: int) -> float:
    """The estimate after a window that measured `cores` (at most the machine's)."""
    return WEIGHT * min(cores, float(cpus)) + (1 - WEIGHT) * estimate


class SpareCores:
    """An estimate of the cores this process could use, brought up to date by `ahead_pays` at most
    once per WINDOW (cheap in between: one clock read). Shared by every compute thread (a lock)."""

    def __init__(self, cpus: int | None = None) -> None:
        self.cpus = cpus if cpus is not None else _cpus()
        self.estimate = float(self.cpus)  # until measured: as many as the machine has
        self._last = Sample.now()
        self._lock = threading.Lock()

    def ahead_pays(self) -> bool:
        """Whether wasm should run ahead for the next slots."""
        if time.monotonic() - self._last.wall >= WINDOW:
            self._update()
        return self.cpus > 1 and self.estimate >= AHEAD_FROM

    def _update(self) -> None:
        with self._lock:
            now = Sample.now()
            cores = cores_between(self._last, now)
            if cores is None or now.wall - self._last.wall < WINDOW:
                return
            self._last = now
            self.estimate = blend(self.estimate, cores, self.cpus)


SPARE = SpareCores()
