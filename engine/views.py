"""Views: the read side of the Node, answered from memory where the store would say the same.

Definitions never change, so each is decoded once. The hot read path (`/now` with nothing new,
`/compute`) answers from the current slot and the latest computed view kept here, updated by the
only writer (this node) right after each store write, instead of asking SQLite on every request.
"""

from __future__ import annotations

import threading
from typing import cast

from aonode.engine.answers import ProcessView
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.errors import NotFound
from aonode.engine.message import Message
from aonode.engine.store.base import Store


def empty_view(pid: str) -> ProcessView:
    return {"process": pid, "at-slot": -1, "results": {}, "cache": {}}


def at_slot(view: ProcessView) -> int:
    return view.get("at-slot", -1)


class Views:
    def __init__(self, store: Store, scheduler: Scheduler, *, shared: bool = False) -> None:
        self.store = store
        self.scheduler = scheduler
        self.shared = shared  # other nodes write this store too: current slot and latest come from it
        self._guard = threading.Lock()
        self._definitions: dict[str, Message] = {}
        self._current: dict[str, int] = {}
        self._latest: dict[str, ProcessView] = {}

    def definition(self, pid: str) -> Message:
        """The process's definition; NotFound when this node has no such process."""
        process = self._definitions.get(pid)
        if process is None:
            process = self.store.get_process(pid)
            if process is None:
                raise NotFound(f"no process {pid!r} on this node")
            self._definitions[pid] = process
        return process

    def current_slot(self, pid: str) -> int:
        current = self._current.get(pid)
        if current is None or self.shared:
            self.scheduled(pid, self.scheduler.current_slot(pid))  # max() under the guard
            current = self._current[pid]
        return current

    def scheduled(self, pid: str, slot: int) -> None:
        """Slot `slot` of `pid` is now assigned."""
        with self._guard:
            self._current[pid] = max(self._current.get(pid, -1), slot)

    def last(self, pid: str) -> ProcessView:
        """The last computed state (the empty view before slot 0 is computed)."""
        view = self._latest.get(pid)
        if view is None or self.shared:
            last = self.store.last_result_slot(pid)
            if view is not None and at_slot(view) == (-1 if last is None else last):
                return view
            view = empty_view(pid) if last is None else self.stored(pid, last) or cast(ProcessView, {})
            self.remember(pid, view)
        return view

    def latest_at(self, pid: str, slot: int) -> ProcessView | None:
        """The remembered latest view when it is the one at `slot`."""
        latest = self._latest.get(pid)
        return latest if latest is not None and latest.get("at-slot") == slot else None

    def remember(self, pid: str, view: ProcessView) -> None:
        with self._guard:
            known = self._latest.get(pid)
            if known is None or at_slot(view) >= at_slot(known):
                self._latest[pid] = view

    def stored(self, pid: str, slot: int) -> ProcessView | None:
        """The state after `slot` as stored; None when it is not computed yet."""
        result = self.store.get_result(pid, slot)
        if result is None:
            return None
        cached = self.store.get_cache(pid, slot)
        return {"process": pid, "at-slot": slot, "results": result, "cache": cached[1] if cached else {}}

    def pending(self, pid: str) -> int:
        """Scheduled slots not computed yet (0 means `now` would answer without any work)."""
        self.definition(pid)
        return self.current_slot(pid) - at_slot(self.last(pid))
