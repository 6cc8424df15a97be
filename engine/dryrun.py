"""Dry-runs: a message evaluated on a throwaway fork of a process's last computed state.

The live state is only held for the moment its memory is copied (an unnamed FORK snapshot);
the fork is restored into a fresh stack and computes without the process lock, so a slow dry-run
never delays the process. Nothing is stored or pushed. A bounded number run at once.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import replace

from aonode.engine import metrics
from aonode.engine.answers import ProcessView
from aonode.engine.devices.base import SlotContext, SnapshotMode
from aonode.engine.errors import BadInput, Busy
from aonode.engine.live import LiveProcesses, release_instance
from aonode.engine.message import Message


class DryRuns:
    def __init__(self, live: LiveProcesses, slots: int = 2) -> None:
        self.live = live
        self._slots = threading.BoundedSemaphore(slots)

    def run(self, pid: str, msg: Message) -> ProcessView:
        """Evaluate `msg` on a copy of the last computed state of `pid` (slot 0 is computed first)."""
        if not self._slots.acquire(blocking=False):
            raise Busy("too many dry-runs in flight; retry shortly")
        metrics.dry_run()
        try:
            return self._run(pid, msg)
        finally:
            self._slots.release()

    def _run(self, pid: str, msg: Message) -> ProcessView:
        processes = self.live.processes
        process = self.live.views.definition(pid)
        with self.live.lock(pid):
            live = self.live.state(pid)
            if live.at_slot < 0:
                processes.compute_to(live, 0)
            fork = SlotContext(snapshot_mode=SnapshotMode.FORK)
            processes.snapshot(live, fork)
            blob, at_slot, cache = fork.snapshot, live.at_slot, copy.deepcopy(live.cache)
            last = processes.store.get_assignment(pid, at_slot)
        state = processes.new_state(pid, process, live.config)
        if state.stack is None or blob is None:
            raise BadInput(f"{pid} cannot be forked for a dry-run")
        state.stack.normalize(state, SlotContext(snapshot=blob))
        state.at_slot, state.cache = at_slot, cache
        ctx = SlotContext(message=msg, assignment=None if last is None else replace(last, slot=at_slot + 1))
        try:
            state.stack.compute(state, ctx)
        finally:
            release_instance(state)
        return {"process": pid, "at-slot": at_slot, "results": ctx.results, "cache": state.cache}
