"""The one background thread that bounds running wasm: it advances the epoch of the fast engine and
sets the interrupt flag of fast-variant messages past their deadline (transform/variant.py).

It ticks only while some call on the epoch engine has a deadline (`keep_ticking`). A fast-variant
message's deadline (`watch_deadline`) is ~0.2 s of its thread's CPU time (budget.py): the thread
sleeps until the earliest time one could be reached (its CPU time cannot pass it sooner) and looks
again there; a call that waited meanwhile (for a core on a busy machine, for the GIL its host
imports need while a snapshot's background encoder holds it) is not cut short and redone metered
for having waited, only one that computed that long. So a backlog of ~1 ms messages wakes it a few
times a second, not every tick (each wake takes the GIL from the threads computing; ~10% of bare
wasm's rate when it woke every 2 ms). Idle, it sleeps until a watch comes. An epoch that does not advance
can only let a call run longer, never stop one early, and every call with a deadline holds a watch
for as long as it runs, so no deadline is weakened.
"""

from __future__ import annotations

import atexit
import threading
import time
from _thread import allocate_lock

import wasmtime
from wasmtime._bindings import _wasmtime_engine_increment_epoch as _raw_increment_epoch

TICK_SECONDS = 0.002  # epoch and deadline resolution (bounds how late a runaway loop is stopped)
# The longest the thread sleeps toward a deadline before looking again: a deadline is fuel-derived and an
# operator's compute cap can put it past what a lock's wait accepts (threading.TIMEOUT_MAX: OverflowError).
LONGEST_SLEEP = 60.0
# A thread's CPU clock (Linux, the BSDs); without one a CPU deadline is a wall-clock one, as it was before.
_THREAD_CLOCKS = hasattr(time, "pthread_getcpuclockid")


class _Ticker:
    """One daemon thread that advances the fast engine's epoch every tick while an epoch watch is
    held, and sets the interrupt flag of every fast-variant message past its deadline (wasm runs
    without the GIL).

    It sleeps on `_wake` (locked: nothing to wake for) with no timeout while there is no watch, and
    with one until the earliest flag deadline not reached yet while there are only flag watches; a
    watch releases it when the thread must look sooner (an epoch watch, an earlier deadline). Its
    loop allocates no container objects and never drops the last reference to anything, so no
    garbage collection or finalizer ever runs in this thread; the engines it ticks live as long as
    the process, a flag is only written under the lock `unwatch` takes before its memory can go,
    and an exit hook stops the thread before interpreter shutdown frees anything.
    """

    _engines: list = []  # strong references: an engine is never freed while it is ticked
    _pointers: tuple = ()
    _ticks = 0  # epoch ticks
    _wakes = 0  # times the thread woke (tests: it sleeps through a backlog of quick messages)
    # [deadline in monotonic seconds, a one-byte ctypes array in a variant memory or None, the calling
    # thread's CPU clock or None, the CPU time on it to reach]: lists, so that the thread can put a
    # deadline off in place (the caller made them: the loop allocates no container)
    _watches: tuple = ()
    _epoch_watches = 0  # watches whose flag is None: the thread ticks every TICK_SECONDS while > 0
    _until = float("inf")  # the time the thread sleeps until (a watch due sooner wakes it)
    _thread: threading.Thread | None = None
    _running = True
    _lock = threading.Lock()
    _watch_lock = threading.Lock()
    _wake = allocate_lock()  # held while the thread may sleep; only `_watch_lock` holders release it
    _wake.acquire()

    @classmethod
    def register(cls, engine: wasmtime.Engine) -> None:
        with cls._lock:
            cls._engines.append(engine)
            cls._pointers = cls._pointers + (engine.ptr(),)
        cls._start()

    @classmethod
    def watch(cls, flag, seconds: float, cpu: bool = False) -> list:
        if cls._thread is None:
            cls._start()
        clock = time.pthread_getcpuclockid(threading.get_ident()) if cpu and _THREAD_CLOCKS else None
        entry = [time.monotonic() + seconds, flag, clock, 0.0 if clock is None else time.clock_gettime(clock) + seconds]
        with cls._watch_lock:
            cls._watches = cls._watches + (entry,)
            if flag is None:
                cls._epoch_watches += 1
                cls._release_wake()
            elif entry[0] < cls._until:
                cls._release_wake()
        return entry

    @classmethod
    def _release_wake(cls) -> None:
        """Wake the thread (caller holds `_watch_lock`; the thread itself only ever acquires `_wake`,
        so a lock seen held here stays held until this releases it)."""
        if cls._wake.locked():
            cls._wake.release()

    @classmethod
    def unwatch(cls, entry: list) -> None:
        with cls._watch_lock:
            cls._watches = tuple(w for w in cls._watches if w is not entry)
            if entry[1] is None:
                cls._epoch_watches -= 1

    @classmethod
    def _start(cls) -> None:
        with cls._lock:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._run, name="aonode-epoch", daemon=True)
                cls._thread.start()
                atexit.register(cls._shutdown)

    @classmethod
    def _run(cls) -> None:
        increment = _raw_increment_epoch  # the ctypes function itself: no Python wrapper frame
        sleep, tick, lock, wake, clock = time.sleep, TICK_SECONDS, cls._watch_lock, cls._wake, time.monotonic
        cpu_time = time.clock_gettime
        inf = float("inf")
        while cls._running:
            cls._wakes += 1
            if cls._epoch_watches:
                sleep(tick)
                cls._ticks += 1
                pointers = cls._pointers
                index, count = 0, len(pointers)
                while index < count:
                    increment(pointers[index])
                    index += 1
            with lock:
                watches, now, until = cls._watches, clock(), inf
                index, count = 0, len(watches)
                while index < count:
                    entry = watches[index]
                    deadline, flag = entry[0], entry[1]
                    if flag is not None and not flag[0]:
                        if now >= deadline and entry[2] is not None:
                            # (its thread is inside the call: `unwatch` needs this lock first)
                            left = entry[3] - cpu_time(entry[2])
                            if left > 0:
                                deadline = entry[0] = now + left  # it computed less: not before then
                        if now >= deadline:
                            flag[0] = 1
                        elif deadline < until:
                            until = deadline
                    index += 1
                # One reading decides both: had it published `now` (ticking) and then gone to sleep after
                # the last epoch watch went, a flag watch (not due before `now`) would never wake it.
                ticking = cls._epoch_watches > 0
                cls._until = now if ticking else until
            if ticking:
                continue
            if until == inf:
                wake.acquire()  # nothing to set: sleep until a watch comes
            else:
                wake.acquire(True, min(until - now + tick / 4, LONGEST_SLEEP))

    @classmethod
    def _shutdown(cls) -> None:
        cls._running = False
        with cls._watch_lock:
            cls._release_wake()
        if cls._thread is not None:
            cls._thread.join(timeout=1)


def register(engine: wasmtime.Engine) -> None:
    """Advance this engine's epoch every tick while a call has a deadline, for as long as the process lives."""
    _Ticker.register(engine)


def watch_deadline(flag, seconds: float, cpu: bool = False) -> list:
    """Set `flag[0] = 1` once `seconds` have passed (to the tick), until `clear_deadline`; with `cpu`,
    `seconds` of the calling thread's CPU time (it must stay in the call until `clear_deadline`)."""
    return _Ticker.watch(flag, seconds, cpu)


def keep_ticking() -> list:
    """Advance the epoch engines every tick until `clear_deadline` (a call with an epoch deadline)."""
    return _Ticker.watch(None, 0.0)


def clear_deadline(entry: list) -> None:
    """After this returns the flag is never written again (its memory may go)."""
    _Ticker.unwatch(entry)
