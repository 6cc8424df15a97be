"""The objects that exist when a backlog starts, left alone by the garbage collector while it runs.

Why: a full collection walks every tracked object of the node (~60 ms on the bench's heap) holding
the GIL; during a backlog it runs on the compute thread, where it is triggered by the many small
objects a slot makes, and the wasm-ahead thread (devices/wasm_ahead.py) back from wasm waits for it.
With the older objects frozen (gc.freeze) a collection walks only what the backlog made. The frozen
objects go back to the oldest generation when the last backlog ends (gc.unfreeze), so a garbage
cycle among them is collected then, not lost. Both calls move whole lists: O(1).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap for the block (nested and concurrent blocks share one freeze)."""
    global _holders
    with _lock:
        if _holders == 0:
            gc.freeze()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()
