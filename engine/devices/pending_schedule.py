"""A plan's view of a schedule with what the plan has placed so far laid over it.

Why: several messages scheduled in one plan (Scheduler.schedule_many_later: the batch a worker's
socket read brings) must each see the slots placed before them, as if each had been its own plan;
the store writes them all at once when the plan returns (one statement per table, not per message).
"""

from __future__ import annotations

from aonode.engine.store.base import Assignment, ScheduleView


class PendingView:
    """ScheduleView over `view` plus the assignments `add`ed (not yet stored; `added` in order)."""

    def __init__(self, view: ScheduleView) -> None:
        self.view = view
        self.added: list[Assignment] = []
        self._by_message: dict[str, Assignment] = {}

    def add(self, batch: list[Assignment]) -> None:
        self.added.extend(batch)
        for a in batch:
            self._by_message[a.message_id] = a

    def last(self) -> Assignment | None:
        return self.added[-1] if self.added else self.view.last()

    def get(self, slot: int) -> Assignment | None:
        if self.added and slot >= self.added[0].slot:
            index = slot - self.added[0].slot
            return self.added[index] if index < len(self.added) else None
        return self.view.get(slot)

    def for_message(self, mid: str) -> Assignment | None:
        return self._by_message.get(mid) or self.view.for_message(mid)
