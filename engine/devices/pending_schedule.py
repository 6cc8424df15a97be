"""A plan's view of a schedule with what the plan has placed so far laid over it.

Why: several messages scheduled in one plan (Scheduler.schedule_many_later: the batch a worker's
socket read brings) must each see the slots placed before them, as if each had been its own plan;
the store writes them all at once when the plan returns (one statement per table, not per message).
"""

from __future__ import annotations

from collections.abc import Sequence

from aonode.engine.store.base import Assignment, ScheduleView


class PendingView:
    """ScheduleView over `view` plus the assignments `add`ed (not yet stored; `added` in order)."""

    def __init__(self, view: ScheduleView, expected: Sequence[str] = ()) -> None:
        """`expected`: the message ids the plan will ask about, looked up in one query."""
        self.view = view
        self.added: list[Assignment] = []
        # (one alone is asked for on its own, by for_message: taking it as asked would hide a repeat)
        self._asked = set(expected) if len(expected) > 1 else set()
        self._by_message: dict[str, Assignment] = view.for_messages(expected) if self._asked else {}

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
        found = self._by_message.get(mid)
        if found is not None or mid in self._asked:
            return found
        return self.view.for_message(mid)

    def for_messages(self, mids: Sequence[str]) -> dict[str, Assignment]:
        return {mid: a for mid in mids if (a := self.for_message(mid)) is not None}
