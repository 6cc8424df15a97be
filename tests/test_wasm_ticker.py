"""The epoch ticker ticks while a call has a deadline and sleeps otherwise (an idle node never wakes
for it); a deadline set while it sleeps is still reached."""

from __future__ import annotations

import ctypes
import time

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
    late, soon = (ctypes.c_ubyte * 1)(), (ctypes.c_ubyte * 1)()
    far = ticker.watch_deadline(late, 30.0)
    try:
        time.sleep(0.02)
        near = ticker.watch_deadline(soon, 0.02)
        try:
            assert wait_for(lambda: soon[0] == 1, timeout=5.0), "slept toward the later deadline"
            assert late[0] == 0
        finally:
            ticker.clear_deadline(near)
    finally:
        ticker.clear_deadline(far)


def test_a_deadline_past_the_longest_wait_a_lock_takes_leaves_the_ticker_running() -> None:
    """A fast-variant deadline is DEADLINE_SLACK x fuel / FUEL_RATE_MAX seconds away, and an operator may
    lift the compute cap (--max-compute) until that is beyond what a lock's wait accepts
    (threading.TIMEOUT_MAX, ~292 years): the thread must still wake for nearer deadlines after such a
    watch, or every later runaway loop runs for ever (the thread died of OverflowError before)."""
    far = (ctypes.c_ubyte * 1)()
    entry = ticker.watch_deadline(far, DEADLINE_SLACK * 10**23 / FUEL_RATE_MAX)
    try:
        kick = (ctypes.c_ubyte * 1)()  # a nearer one first: once it is set, the far one is the next to sleep toward
        first = ticker.watch_deadline(kick, 0.01)
        try:
            assert wait_for(lambda: kick[0] == 1, timeout=5.0)
        finally:
            ticker.clear_deadline(first)
        time.sleep(0.05)  # the thread went to sleep toward the far deadline
        soon = (ctypes.c_ubyte * 1)()
        near = ticker.watch_deadline(soon, 0.02)
        try:
            assert wait_for(lambda: soon[0] == 1, timeout=5.0), "the ticker no longer sets flags"
            assert far[0] == 0
        finally:
            ticker.clear_deadline(near)
    finally:
        ticker.clear_deadline(entry)
