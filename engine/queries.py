"""Queries: the reads the legacy MU/CU/SU and gateway routes make, typed in engine/answers.py.

None of them computes: they answer from the schedule and the stored results (the one exception,
`memory`, snapshots the live state at its last computed slot first). Each checks that the process
is on this node, so an unknown process is NotFound rather than an empty answer.
"""

from __future__ import annotations

from aonode.engine.answers import Assignment, Clock, ProcessMemory, SlotResult
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.devices.wasm64 import loaded
from aonode.engine.errors import NotFound
from aonode.engine.live import LiveProcesses
from aonode.engine.message import Message
from aonode.engine.store.base import Store
from aonode.engine.views import Views
from aonode.engine.wasm.chunked import StoredSnapshot


class Queries:
    def __init__(self, store: Store, scheduler: Scheduler, views: Views, live: LiveProcesses) -> None:
        self.store = store
        self.scheduler = scheduler
        self.views = views
        self.live = live

    def message(self, mid: str) -> Message | None:
        """A message this node holds (scheduled on any of its processes)."""
        return self.store.get_message(mid)

    def assignment(self, pid: str, slot: int) -> Assignment | None:
        self.views.definition(pid)
        return self.store.get_assignment(pid, slot)

    def assignment_of(self, pid: str, mid: str) -> Assignment | None:
        self.views.definition(pid)
        return self.store.assignment_for_message(pid, mid)

    def assignments_after(self, pid: str, timestamp: int | None, limit: int) -> list[Assignment]:
        """Up to `limit` assignments in slot order, from the first one stamped after `timestamp`
        (ms; None: from slot 0). Timestamps never decrease along slots, so a bisection finds it."""
        self.views.definition(pid)
        start = 0
        if timestamp is not None:
            last = self.store.last_assignment(pid)
            low, high = 0, (last.slot + 1 if last else 0)
            while low < high:
                mid = (low + high) // 2
                a = self.store.get_assignment(pid, mid)
                if a is not None and a.timestamp > timestamp:
                    high = mid
                else:
                    low = mid + 1
            start = low
        return self.store.assignments(pid, start, None, limit)

    def result_of(self, pid: str, mid: str) -> SlotResult | None:
        self.views.definition(pid)
        found = self.store.get_result_by_message(pid, mid)
        return None if found is None else SlotResult(found[0], found[1])

    def results(
        self, pid: str, frm: int | None, to: int | None, limit: int, descending: bool = False
    ) -> list[SlotResult]:
        self.views.definition(pid)
        return [SlotResult(slot, result) for slot, result in self.store.results(pid, frm, to, limit, descending)]

    def memory(self, pid: str) -> ProcessMemory:
        self.views.definition(pid)
        slot_taken, _ = self.live.snapshot(pid)
        found = self.store.latest_snapshot(pid, slot_taken)
        if found is None:
            raise NotFound(f"{pid} has no snapshot")
        slot, name, blob = found
        a = self.store.get_assignment(pid, slot)
        snapshot = loaded(blob, name, self.store.get_chunks)
        pieces = snapshot.raw_chunks() if isinstance(snapshot, StoredSnapshot) else iter((snapshot.raw(),))
        return ProcessMemory(slot, a.timestamp if a else 0, a.block_height if a else 0, snapshot.memory_size, pieces)

    def clock(self) -> Clock:
        return Clock(self.scheduler.clock(), self.scheduler.block_height())
