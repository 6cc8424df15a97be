"""process@1.0: a process is its definition message plus the slots computed on it.

`compute_to` starts from the live state (or the newest snapshot at or below the target, or a fresh
init at slot -1), applies assignments one by one through the execution stack and stores each slot's
result before moving on, so a read never recomputes and a restart replays only what came after the
last snapshot.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from aonode.engine.devices.base import ProcessState, Signal
from aonode.engine.devices.json_iface import empty_results
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.stack import Stack
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import Message

AOS_STACK = ("json-iface@1.0", "wasm64@1.0", "multipass@1.0", "patch@1.0")
DEFAULT_CACHE_FREQUENCY = 256  # a snapshot costs ~0.2 s (sha256 of ~70 MiB dominates): ~1 ms a slot


def stack_names(process: Message) -> list[str]:
    """The execution stack a definition asks for, in the documented or the reference spelling."""
    raw = process.tag("Execution-Stack") or process.tag("Device-Stack")
    if raw:
        try:
            names = json.loads(raw) if raw.lstrip().startswith("[") else raw.split(",")
        except json.JSONDecodeError as err:
            raise BadInput(f"Execution-Stack is not a list: {err}") from err
        names = [str(n).strip() for n in names if str(n).strip()]
    else:
        names = list(AOS_STACK)
    lowered = [n.lower() for n in names]
    # json-iface decodes on a second pass: an AOS stack without multipass gets one after wasm64.
    if "json-iface@1.0" in lowered and "wasm64@1.0" in lowered and "multipass@1.0" not in lowered:
        names.insert(lowered.index("wasm64@1.0") + 1, "multipass@1.0")
    if has_poda(process) and "poda@1.0" not in lowered:
        names.insert(0, "poda@1.0")
    return names


def has_poda(process: Message) -> bool:
    return any(name.lower() in ("poda", "poda-quorum", "quorum") for name, _ in process.tags)


def cache_frequency(process: Message) -> int:
    raw = process.tag("Cache-Frequency")
    if not raw:
        return DEFAULT_CACHE_FREQUENCY
    try:
        value = int(raw.split("-")[0])
    except ValueError as err:
        raise BadInput(f"Cache-Frequency must be a number of slots, not {raw!r}") from err
    return max(1, value)


def json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class ProcessDevice:
    store: Any
    registry: Registry
    context: Any  # what device factories get (the node)
    after_slot: Callable[[ProcessState, int], None] | None = None  # e.g. push delivery
    name: str = "process@1.0"
    _in_flight: list = field(default_factory=list, repr=False)  # (pid, PendingSnapshot) not yet stored
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def new_state(self, pid: str, process: Message, config: dict[str, Any]) -> ProcessState:
        state = ProcessState(process_id=pid, process=process, config=config)
        state.scratch["stack"] = Stack([self.registry.create(n, self.context) for n in stack_names(process)])
        return state

    @staticmethod
    def stack(state: ProcessState) -> Stack:
        return state.scratch["stack"]

    # -- the four keys -------------------------------------------------------------------------
    def init(self, state: ProcessState, msg: Message | None = None) -> Signal:
        state.at_slot, state.cache, state.results = -1, {}, {}
        return self.stack(state).init(state, state.process)

    def normalize(self, state: ProcessState, msg: Message | None = None) -> Signal:
        """Bring `state` to the newest snapshot at or below `state.at_slot`, or to a fresh init."""
        found = self.store.latest_snapshot(state.process_id, state.at_slot)
        if found is None:
            return self.init(state)
        slot, _sha, blob = found
        state.scratch["snapshot"] = blob
        signal = self.stack(state).normalize(state, None)
        state.at_slot = slot
        cached = self.store.get_cache(state.process_id, slot)
        state.cache = cached[1] if cached else {}
        stored = self.store.get_result(state.process_id, slot)
        state.results = stored or {}
        return signal

    def snapshot(self, state: ProcessState, msg: Message | None = None, *, background: bool = False) -> Signal:
        """Store the state at `state.at_slot`. In the background (the periodic snapshots), the
        execution device only copies its memory; hashing, compressing and storing happen on another
        thread while the process computes on (`flush` waits for them)."""
        if state.at_slot < 0:
            return Signal.OK
        if background:
            pid, slot, cache = state.process_id, state.at_slot, json_safe(state.cache)

            def store(snap: Any) -> None:
                self.store.put_snapshot(pid, slot, snap.memory_sha256, snap.to_bytes())
                self.store.put_cache(pid, slot, cache)

            state.scratch["snapshot-in-background"] = store
        signal = self.stack(state).snapshot(state, None)
        state.scratch.pop("snapshot-in-background", None)
        pending = state.scratch.pop("snapshot-pending", None)
        blob = state.scratch.pop("snapshot", None)
        if pending is not None:
            with self._lock:
                self._in_flight.append((state.process_id, pending))
        elif blob is not None:
            self.store.put_snapshot(state.process_id, state.at_slot, state.memory_sha256, blob)
            self.store.put_cache(state.process_id, state.at_slot, state.cache)
        state.scratch["snapshot-slot"] = state.at_slot
        return signal

    def flush(self, pid: str | None = None) -> None:
        """Wait until the background snapshots of `pid` (of every process: None) are stored."""
        with self._lock:
            mine = [entry for entry in self._in_flight if pid is None or entry[0] == pid]
            self._in_flight = [entry for entry in self._in_flight if entry not in mine]
        for _, pending in mine:
            pending.wait()

    def compute(self, state: ProcessState, assignment: Any, *, more: bool = False) -> Signal:
        """Evaluate exactly the next slot and store its result. `more`: further slots follow at once,
        so a periodic snapshot here is made in the background while they compute."""
        if assignment.slot != state.at_slot + 1:
            raise BadInput(f"slot {assignment.slot} cannot follow slot {state.at_slot}")
        stack = self.stack(state)
        state.scratch["assignment"] = assignment.to_json()
        state.results = {}
        signal = stack.compute(state, assignment.message)
        if not state.results:
            state.results = empty_results()
        state.at_slot = assignment.slot
        if self.after_slot is not None:  # delivery first, so the stored result says where messages went
            self.after_slot(state, assignment.slot)
        self._store_slot(state, assignment)
        if state.at_slot % cache_frequency(state.process) == 0:
            self.snapshot(state, background=more)
        return signal

    def _store_slot(self, state: ProcessState, assignment: Any) -> None:
        record = json_safe({**state.results, "slot": assignment.slot, "message": assignment.message_id})
        self.store.put_result(state.process_id, assignment.slot, assignment.message_id, record)
        if state.results.get("Patches"):
            self.store.put_cache(state.process_id, assignment.slot, state.cache)

    # -- the loop ------------------------------------------------------------------------------
    def compute_to(self, state: ProcessState, slot: int) -> ProcessState:
        """Evaluate up to `slot`. Periodic snapshots are made in the background meanwhile and are
        stored before this returns, so what a caller has been answered is never recomputed after
        a crash beyond the last snapshot it saw."""
        try:
            while state.at_slot < slot:
                assignment = self.store.get_assignment(state.process_id, state.at_slot + 1)
                if assignment is None:
                    raise NotFound(f"slot {state.at_slot + 1} of {state.process_id} is not scheduled")
                self.compute(state, assignment, more=assignment.slot < slot)
        finally:
            self.flush(state.process_id)
        return state
