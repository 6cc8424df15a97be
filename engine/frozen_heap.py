"""The objects that exist when a backlog starts, left alone by the garbage collector while it runs.

Why: a full collection walks every tracked object of the node (~60 ms on the bench's heap) holding
the GIL; during a backlog it runs on the compute thread, where it is triggered by the many small
objects a slot makes, and the wasm-ahead thread (devices/wasm_ahead.py) back from wasm waits for it.
With the older objects frozen (gc.freeze) a collection walks only what the backlog made. Both calls
move whole lists: O(1); neither can tell one frozen object from another.

One policy for everything frozen, whoever froze it:
- A start may freeze its long-lived objects for good (`freeze_start`: `aonode serve`); a freeze made
  with no block running is taken for one too. A block never unfreezes those.
- With nothing frozen before it, the last block to end unfreezes what it froze (back to the oldest
  generation: a garbage cycle among them is collected then, not lost).
- On top of a start's freeze, what blocks froze stays frozen until the frozen set has grown by a
  quarter since the start or the last full collection (CPython's own rule for its oldest generation);
  then it is unfrozen, collected once, and what is alive frozen again. So a garbage cycle a backlog
  froze is collected within that growth, and the start's objects are walked once per such growth.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

GROWTH = 0.25  # of the frozen set since the last full collection, that triggers the next one

_lock = threading.Lock()
_holders = 0
_base = 0  # objects frozen by a start or at the last full collection here; never unfrozen by a block
_left = False  # whether blocks left objects frozen on top of `_base`


def freeze_start() -> None:
    """Freeze every object that exists now for good (a start's modules, classes, functions)."""
    global _base, _left
    with _lock:
        gc.freeze()
        _base, _left = gc.get_freeze_count(), False


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap for the block (nested and concurrent blocks share one freeze)."""
    global _holders, _base, _left
    with _lock:
        if _holders == 0:
            frozen = gc.get_freeze_count()
            if frozen == 0:  # nothing frozen (whatever was, someone unfroze it)
                _base, _left = 0, False
            elif not _left:  # frozen by someone else while no block ran: a start's
                _base = frozen
            gc.freeze()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _thaw()


def _thaw() -> None:
    """The last block ended (caller holds `_lock`)."""
    global _base, _left
    if _base == 0:
        gc.unfreeze()
        _left = False
    elif gc.get_freeze_count() - _base > _base * GROWTH:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _base, _left = gc.get_freeze_count(), False
    else:
        _left = True
