"""The epoch ticker ticks while a call has a deadline and sleeps otherwise (an idle node never wakes
for it); a deadline set while it sleeps is still reached."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from aonode.engine.wasm import ticker
from aonode.engine.wasm.budget import DEADLINE_SLACK, FUEL_RATE_MAX
from aonode.engine.wasm.ticker import _Ticker


def ticks_over(seconds: float) -> int:
    before = _Ticker._ticks
    time.sleep(seconds)
    return _Ticker._ticks - before


def wait_for(condition, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@contextmanager
def watching(seconds: float) -> Iterator[ctypes.Array[ctypes.c_ubyte]]:
    """A fresh interrupt flag with a deadline `seconds` away, watched for the block."""
    flag = (ctypes.c_ubyte * 1)()
    entry = ticker.watch_deadline(flag, seconds)
    try:
        yield flag
    finally:
        ticker.clear_deadline(entry)


def test_the_ticker_sleeps_while_no_call_has_a_deadline() -> None:
    entry = ticker.keep_ticking()  # what a call on the epoch engine holds while it runs
    try:
        start = _Ticker._ticks
        assert wait_for(lambda: _Ticker._ticks >= start + 5), "no ticks while a call had a deadline"
    finally:
        ticker.clear_deadline(entry)
    time.sleep(3 * ticker.TICK_SECONDS)  # a tick under way when the watch went ends
    assert ticks_over(0.2) == 0  # asleep: ~100 ticks if it still woke every tick


def test_a_deadline_set_while_it_sleeps_is_reached() -> None:
    assert ticks_over(0.05) == 0
    flag = (ctypes.c_ubyte * 1)()
    entry = ticker.watch_deadline(flag, 0.02)
    try:
        assert wait_for(lambda: flag[0] == 1), "the flag was never set"
    finally:
        ticker.clear_deadline(entry)


def test_a_cpu_deadline_is_reached_by_computing_not_by_waiting() -> None:
    """A fast-variant call's deadline counts its thread's CPU time: one that waits (for a core, for
    the GIL) is not cut short and redone metered for it; one that computes past it is."""
    flag = (ctypes.c_ubyte * 1)()
    entry = ticker.watch_deadline(flag, 0.05, cpu=True)
    try:
        time.sleep(0.3)  # six times the deadline in wall-clock time, no CPU time
        assert flag[0] == 0
        end = time.thread_time() + 0.06
        while time.thread_time() < end:
            pass
        assert wait_for(lambda: flag[0] == 1), "the flag was never set"
    finally:
        ticker.clear_deadline(entry)


def test_while_only_variant_calls_hold_deadlines_it_sleeps_until_the_earliest() -> None:
    """A fast-variant call's deadline is ~0.2 s away: the thread wakes for it, not every tick (each
    wake takes the GIL from the threads computing)."""
    flag = (ctypes.c_ubyte * 1)()
    entry = ticker.watch_deadline(flag, 5.0)
    try:
        time.sleep(0.02)  # the wake the watch caused is over
        before = _Ticker._wakes
        time.sleep(0.2)
        assert _Ticker._wakes - before <= 1  # ~100 if it woke every tick
        assert flag[0] == 0
    finally:
        ticker.clear_deadline(entry)


def test_an_earlier_deadline_set_while_it_sleeps_toward_a_later_one_is_reached_in_time() -> None:
    with watching(30.0) as late:
        time.sleep(0.02)
        with watching(0.02) as soon:
            assert wait_for(lambda: soon[0] == 1, timeout=5.0), "slept toward the later deadline"
            assert late[0] == 0


def test_a_deadline_past_the_longest_wait_a_lock_takes_leaves_the_ticker_running() -> None:
    """A fast-variant deadline is DEADLINE_SLACK x fuel / FUEL_RATE_MAX seconds away, and an operator may
    lift the compute cap (--max-compute) until that is beyond what a lock's wait accepts
    (threading.TIMEOUT_MAX, ~292 years): the thread must still wake for nearer deadlines after such a
    watch, or every later runaway loop runs for ever (the thread died of OverflowError before)."""
    with watching(DEADLINE_SLACK * 10**23 / FUEL_RATE_MAX) as far:
        with watching(0.01) as kick:  # a nearer one first: once it is set, the far one is next to sleep toward
            assert wait_for(lambda: kick[0] == 1, timeout=5.0)
        time.sleep(0.05)  # the thread went to sleep toward the far deadline
        with watching(0.02) as soon:
            assert wait_for(lambda: soon[0] == 1, timeout=5.0), "the ticker no longer sets flags"
            assert far[0] == 0


PAUSED_AFTER_ITS_LOCK = """
import ctypes, threading, time
from aonode.engine.wasm import ticker
from aonode.engine.wasm.ticker import _Ticker

pause, paused, resume = threading.Event(), threading.Event(), threading.Event()

def profile(frame, event, arg):  # the thread taken off its core right after it lets go of its lock
    if (event == "c_return" and pause.is_set() and threading.current_thread().name == "aonode-epoch"
            and getattr(arg, "__self__", None) is _Ticker._watch_lock and arg.__name__ == "__exit__"):
        pause.clear()
        paused.set()
        resume.wait(10)

threading.setprofile(profile)  # before the thread starts: it is the threads started later that get it
epoch = ticker.keep_ticking()  # a call on the original image's engine
start = _Ticker._ticks
while _Ticker._ticks < start + 3:
    time.sleep(0.001)
pause.set()
assert paused.wait(10), "the thread never let go of its lock"
ticker.clear_deadline(epoch)  # that call ends, and the next message runs on the fast variant
flag = (ctypes.c_ubyte * 1)()
watch = ticker.watch_deadline(flag, 0.02)
resume.set()
end = time.monotonic() + 5
while not flag[0] and time.monotonic() < end:
    time.sleep(0.005)
print("set" if flag[0] else "never set")
"""


def test_a_variant_deadline_set_as_the_last_epoch_call_ends_is_reached() -> None:
    """A process runs its first messages on the original image (epoch ticks) and moves on to the fast
    variant (flag deadlines). If the thread is preempted after it decided, under its lock, that it was
    ticking, and the last epoch watch goes before it runs again, it must still look at the variant's
    deadline: before, it went to sleep with no timeout while a watch compared its deadline with the
    tick time it had published, so nothing woke it and a runaway loop on the variant ran for ever.
    A fresh interpreter: the preemption is placed by a profile hook, which only threads started after
    it get."""
    done = subprocess.run([sys.executable, "-c", PAUSED_AFTER_ITS_LOCK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "set", "the variant's deadline was never reached"
