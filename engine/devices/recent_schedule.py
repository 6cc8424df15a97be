"""The assignments this node just committed, kept in memory until the process computes them.

Why: a backlog is usually computed right after it was scheduled here, and reading each message
back from the store decodes its row and re-checks its checksum (and a signed item's signature,
engine/store/checked.py), which cost as much as the JSON around the wasm call. An assignment is
immutable once committed (a slot is never reassigned), so the copy the scheduler committed is the
row; one that never went through the database needs no check for damage in it.

Bounded by count and message bytes (oldest first out); compute takes an assignment out as it
computes it, and anything not found here (another node scheduled it, a restart, a recompute) is
read from the store as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from aonode.engine.message import held_bytes
from aonode.engine.store.base import Assignment

MAX_ASSIGNMENTS = 8192
MAX_BYTES = 64 << 20  # message data held at most (a few large messages must not pin memory)


def _size(a: Assignment) -> int:
    return held_bytes(a.message) + 512  # (a message not decoded yet stays so: message.from_own_cbor)


@dataclass
class RecentSchedule:
    max_assignments: int = MAX_ASSIGNMENTS
    max_bytes: int = MAX_BYTES
    _held: OrderedDict[tuple[str, int], Assignment] = field(default_factory=OrderedDict)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._held)

    def committed(self, batch: Iterable[Assignment]) -> None:
        """`batch` is durable in the store (call only after the commit returned)."""
        with self._lock:
            for a in batch:
                key = (a.process, a.slot)
                old = self._held.pop(key, None)
                self._bytes += _size(a) - (0 if old is None else _size(old))
                self._held[key] = a
            while self._held and (len(self._held) > self.max_assignments or self._bytes > self.max_bytes):
                _, dropped = self._held.popitem(last=False)
                self._bytes -= _size(dropped)

    def take(self, pid: str, first: int, last: int, limit: int) -> list[Assignment]:
        """Slots `first`, `first`+1, ... (at most up to `last`, at most `limit`) as long as each is
        held, taken out; [] when `first` is not."""
        run: list[Assignment] = []
        with self._lock:
            slot = first
            while slot <= last and len(run) < limit:
                a = self._held.pop((pid, slot), None)
                if a is None:
                    break
                self._bytes -= _size(a)
                run.append(a)
                slot += 1
        return run
