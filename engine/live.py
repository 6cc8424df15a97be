"""Live processes: one writer per process, a bounded set of warm states, eviction by snapshot.

Only work that evaluates new slots takes a process's lock. Live states sit in an LRU of
`max_live`; an evicted one is snapshotted (unless its newest snapshot is of its current slot) and
comes back from that snapshot. A cold state is restored from its newest snapshot and computed
forward to its last stored result (pushes are idempotent, so that replay sends nothing twice).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from aonode.engine import metrics
from aonode.engine.devices.base import ProcessConfig, ProcessState
from aonode.engine.devices.process import ProcessDevice
from aonode.engine.errors import NotFound
from aonode.engine.gateway import gateway_url
from aonode.engine.views import Views
from aonode.engine.wasm import DriveStore


def release_instance(state: ProcessState) -> None:
    """Free a discarded instance's wasmtime store here and now, in the thread that discards it,
    instead of whenever (and in whichever thread) the garbage collector gets to its cycles."""
    instance, state.instance = state.instance, None
    if instance is not None:
        instance.close()


class LiveProcesses:
    def __init__(
        self,
        processes: ProcessDevice,
        views: Views,
        data_dir: Path,
        max_live: int = 32,
        on_evict: Callable[[str], object] = lambda pid: None,
    ) -> None:
        self.processes = processes
        self.on_evict = on_evict  # the node's compute lease on the process ends with its live state
        self.views = views
        self.data_dir = data_dir
        self.max_live = max_live
        self._live: OrderedDict[str, ProcessState] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._drive: DriveStore | None = None

    def __len__(self) -> int:
        return len(self._live)

    def lock(self, pid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(pid, threading.Lock())

    def config(self) -> ProcessConfig:
        """WeaveDrive reads `<data dir>/weavedrive` and fills it from the gateway (AONODE_GATEWAY)."""
        if self._drive is None:
            self._drive = DriveStore(self.data_dir / "weavedrive", gateway_url())
        return ProcessConfig(weavedrive_dir=self._drive)

    def state(self, pid: str) -> ProcessState:
        """The live state of `pid` (caller holds its lock), restored from its newest snapshot if cold."""
        with self._guard:
            state = self._live.get(pid)
            if state is not None and state.stale:  # its memory ran past its slot: restored below
                self._live.pop(pid)
            elif state is not None:
                self._live.move_to_end(pid)
        if state is not None and state.stale:
            release_instance(state)
            state = None
        if state is not None:
            if self.views.shared:  # another node may have computed further since: catch up (same results)
                last = self.processes.store.last_result_slot(pid)
                if last is not None and last > state.at_slot:
                    self.processes.compute_to(state, last)
            return state
        state = self.processes.new_state(pid, self.views.definition(pid), self.config())
        last = self.processes.store.last_result_slot(pid)
        state.at_slot = -1 if last is None else last
        self.processes.normalize(state)  # back to the newest snapshot at or below `last` ...
        if last is not None:
            self.processes.compute_to(state, last)  # ... and forward again (pushes are idempotent)
        with self._guard:
            self._live[pid] = state
            metrics.live_instances(len(self._live))
            victims = list(self._live.items())[: max(0, len(self._live) - self.max_live)]
        for victim_pid, victim in victims:
            self._evict(victim_pid, victim)
        return state

    def compute_to(self, pid: str, slot: int) -> None:
        """Evaluate `pid` up to `slot` (caller holds its lock)."""
        self.processes.compute_to(self.state(pid), slot)

    def snapshot(self, pid: str) -> tuple[int, str | None]:
        """Snapshot `pid` at its last computed slot (nothing new is computed): (slot, sha256 of the
        whole memory, computed here because it is asked for: snapshots are named by their chunks)."""
        with self.lock(pid):
            state = self.state(pid)
            if state.at_slot < 0:
                raise NotFound(f"{pid} has no computed slot to snapshot yet")
            self.processes.snapshot(state)
            return state.at_slot, None if state.instance is None else state.instance.memory_sha256()

    def _evict(self, pid: str, state: ProcessState) -> None:
        lock = self.lock(pid)
        if not lock.acquire(blocking=False):
            return  # busy: it stays live this time
        try:
            if state.snapshot_slot != state.at_slot and not state.stale:  # never a memory past its slot
                self.processes.snapshot(state)
            with self._guard:
                self._live.pop(pid, None)
                metrics.live_instances(len(self._live))
            metrics.evicted()
            release_instance(state)
        finally:
            lock.release()
        self.on_evict(pid)

    def forget(self, pid: str) -> ProcessState | None:
        """Drop the live state without a snapshot: another node computed the process since (its
        memory here is stale). The caller frees the instance if it holds the process's lock."""
        with self._guard:
            return self._live.pop(pid, None)

    def close(self) -> None:
        """Snapshot every live process so the next start replays nothing."""
        with self._guard:
            live = list(self._live.items())
        for pid, state in live:
            self._evict(pid, state)
        self.processes.flush()  # periodic snapshots still being hashed and stored in the background
