"""The epoch ticker ticks while a call has a deadline and sleeps otherwise (an idle node never wakes
for it); a deadline set while it sleeps is still reached."""

from __future__ import annotations

import ctypes
import time

from aonode.engine.wasm import ticker
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
