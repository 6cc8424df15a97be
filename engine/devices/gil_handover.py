"""A short GIL switch interval while a backlog runs its wasm ahead on a worker thread (wasm_ahead.py).

Why: the worker needs the GIL for a few µs after each wasm call (read the result, write the next
message into memory, call again), and the compute thread holds it for a whole slot's post-processing
(decode, patch, push, store: ~150 µs on a quiet machine). CPython hands the GIL to a waiting thread
only when its holder blocks or after the switch interval (5 ms by default), so a worker back from wasm
while the compute thread is mid-slot waited for that slot to end before its next wasm call could
start: the two threads ran in a convoy. With the interval at SWITCH_INTERVAL the worker waits at most
about that long. Measured with paired blocks of 100 token Transfers always ahead (load 5-10, the run
at nice -20): 1.07x and 1.05x the throughput with the default interval (quartiles 0.98-1.17); in
batches on the compute thread alone (the control: no worker) 0.98x. The interval is the process's,
so it is shortened only while a worker runs (nested and concurrent backlogs share it) and put back
after the last one ends (unless someone else set it meanwhile: their value stays); other threads
then switch sooner too, which costs them little.
"""

from __future__ import annotations

import sys
import threading

SWITCH_INTERVAL = 0.0001  # seconds a thread waits for the GIL before its holder is asked to drop it

_lock = threading.Lock()
_holders = 0
_saved = 0.0  # the interval before the first holder
_short = 0.0  # the interval the first holder set (as read back)


def hold() -> None:
    """A worker starts: the interval is short until every holder has released it."""
    global _holders, _saved, _short
    with _lock:
        if _holders == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved, SWITCH_INTERVAL))
            _short = sys.getswitchinterval()
        _holders += 1


def release() -> None:
    """A worker ended (once per `hold`)."""
    global _holders
    with _lock:
        _holders -= 1
        if _holders == 0 and sys.getswitchinterval() == _short:  # else set by someone else meanwhile
            sys.setswitchinterval(_saved)
