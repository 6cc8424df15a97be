"""Node: the one entry point the server calls. It owns the store, the scheduler, the wasm runtime,
the device registry and the live processes, and keeps one writer per process.

Reads of already computed slots come straight from the store and never wait for a lock; only work
that evaluates new slots takes the process's lock. Live states sit in a bounded LRU; an evicted one
is snapshotted and comes back from that snapshot.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from aonode.engine.answers import Assignment, Clock, ProcessMemory, SlotResult
from aonode.engine.crypto import Wallet
from aonode.engine.devices.base import ProcessConfig, ProcessState, SlotContext, SnapshotMode
from aonode.engine.devices import cron, poda
from aonode.engine.devices.json_iface import module_id
from aonode.engine.devices.multipass import passes_of
from aonode.engine.devices.process import ProcessDevice, cache_frequency, has_poda, stack_names
from aonode.engine.devices.stack import Stack
from aonode.engine.devices.wasm64 import limits_for
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.errors import BadInput, Busy, NotFound
from aonode.engine.message import Message
from aonode.engine.store.sqlite import SQLiteStore
from aonode.engine.wasm.runtime import Runtime
from aonode.engine.wasm.snapshot import Snapshot

VERSION = "0.1.0"


def default_registry(node: Node) -> Registry:
    """Every device this node knows, by the name process definitions use."""
    from aonode.engine.devices.json_iface import JSONInterface
    from aonode.engine.devices.json_iface import INFO as JSON_IFACE
    from aonode.engine.devices.multipass import INFO as MULTIPASS, Multipass
    from aonode.engine.devices.patch import INFO as PATCH, Patch
    from aonode.engine.devices.poda import INFO as PODA, PoDA
    from aonode.engine.devices.process import INFO as PROCESS
    from aonode.engine.devices.push import INFO as PUSH, Push
    from aonode.engine.devices.stack import INFO as STACK
    from aonode.engine.devices.wasm64 import INFO as WASM64, WasmDevice

    registry = Registry()
    registry.register(PROCESS, lambda: node.processes)
    registry.register(node.scheduler.info(), lambda: node.scheduler)
    registry.register(STACK, lambda: Stack([]))
    registry.register(PUSH, lambda: Push(node))
    registry.register(cron.INFO, lambda: cron.Cron())
    registry.register(JSON_IFACE, JSONInterface)
    registry.register(MULTIPASS, Multipass)
    registry.register(PATCH, Patch)
    registry.register(PODA, PoDA)
    registry.register(WASM64, lambda: WasmDevice(node.runtime, node.load_image))
    return registry


def release_instance(state: ProcessState) -> None:
    """Free a discarded instance's wasmtime store here and now, in the thread that discards it,
    instead of whenever (and in whichever thread) the garbage collector gets to its cycles."""
    instance, state.instance = state.instance, None
    if instance is not None:
        instance.close()


class Node:
    def __init__(self, data_dir: Path | str, dev: bool = False, *, max_live: int = 32,
                 clock: Any = None, wallet: Wallet | None = None, dry_run_slots: int = 2) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.dev = dev
        self.max_live = max_live
        self.store = SQLiteStore(self.data_dir)
        self.wallet = wallet or self._wallet(self.data_dir / "wallet.json")
        self.address = self.wallet.address
        self.scheduler = Scheduler(self.store, clock=clock) if clock else Scheduler(self.store)
        self.runtime = Runtime(cache_dir=self.data_dir / "cache")
        self.registry = default_registry(self)
        self.processes = ProcessDevice(self.store, self.registry)
        self.processes.after = [self.registry.create("push@1.0", in_stack=False)]
        self._live: OrderedDict[str, ProcessState] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._images: dict[str, Any] = {}
        self._dry_runs = threading.BoundedSemaphore(dry_run_slots)
        self._definitions: dict[str, Message] = {}
        self._current: dict[str, int] = {}
        self._latest: dict[str, dict[str, Any]] = {}

    @property
    def slots_evaluated(self) -> int:
        """Slots computed since start: restart tests count them to prove nothing is replayed twice."""
        return self.processes.slots_evaluated

    @staticmethod
    def _wallet(path: Path) -> Wallet:
        if path.exists():
            return Wallet.load(path)
        wallet = Wallet.generate("rsa")
        wallet.save(path)
        return wallet

    # -- images ----------------------------------------------------------------------------------
    def load_image(self, ref: str) -> Any:
        with self._guard:
            image = self._images.get(ref)
        if image is None:
            from aonode.modules.catalogue import resolve

            image = self.runtime.load(resolve(ref, allow_path=False).read_bytes())
            with self._guard:
                self._images[ref] = image
        return image

    # -- writes -----------------------------------------------------------------------------------
    def spawn(self, msg: Message) -> dict[str, Any]:
        """Schedule a process definition as slot 0 of a new process whose id is the message id."""
        msg = self._complete_definition(msg)
        self._check_definition(msg)  # an unusable definition is refused before anything is stored
        pid = msg.id
        assignment = self.scheduler.spawn(pid, msg)
        self._scheduled(pid, assignment.slot)
        return {**assignment.to_json(), "process": pid}

    def _complete_definition(self, msg: Message) -> Message:
        module = module_id(msg)
        if not module and msg.signature is not None:
            raise BadInput("the process definition names no image: add a Module tag")
        if msg.signature is not None:
            return msg  # a signed definition is taken as signed
        extra: dict[str, str] = {}
        if not module:
            from aonode.modules.catalogue import default_name

            extra["Module"] = default_name()
        if msg.tag("Type") is None:
            extra["Type"] = "Process"
        if msg.tag("Data-Protocol") is None:
            extra["Data-Protocol"] = "ao"
        if msg.tag("Authority") is None:
            extra["Authority"] = self.address  # so messages the node pushes between processes are trusted
        if not extra:
            return msg
        tags = tuple(msg.tags) + tuple(extra.items())
        return Message.create(owner=msg.owner, target=msg.target, anchor=msg.anchor, tags=tags, data=msg.data,
                              from_=msg.from_)

    def _check_definition(self, msg: Message) -> None:
        """Everything a definition names must work here, or every later read of it would fail."""
        self._check_devices(msg)
        cache_frequency(msg)
        limits_for(msg)
        if passes_of(msg) > Stack.max_passes:
            raise BadInput(f"Passes must be at most {Stack.max_passes}")
        if has_poda(msg):
            poda.config(msg)
        self.load_image(module_id(msg))

    def _check_devices(self, msg: Message) -> None:
        for key, only in (("Execution-Device", "stack@1.0"), ("Scheduler-Device", "scheduler@1.0"),
                          ("Push-Device", "push@1.0")):
            value = msg.tag(key)
            if value is not None and value.strip().lower() != only:
                raise BadInput(f"{key} {value!r} is not available on this node (it runs {only})")
        known = set(self.registry.names())
        unknown = [n for n in stack_names(msg) if n.lower() not in known]
        if unknown:
            raise BadInput(f"unknown devices in the execution stack: {', '.join(unknown)}; "
                           f"this node has {', '.join(sorted(known))}")

    def schedule(self, pid: str, msg: Message) -> dict[str, Any]:
        self._definition(pid)
        assignment = self.scheduler.schedule(pid, msg)
        self._scheduled(pid, assignment.slot)
        return assignment.to_json()

    # -- reads ------------------------------------------------------------------------------------
    def _definition(self, pid: str) -> Message:
        process = self._definitions.get(pid)  # definitions never change: decode each once
        if process is None:
            process = self.store.get_process(pid)
            if process is None:
                raise NotFound(f"no process {pid!r} on this node")
            self._definitions[pid] = process
        return process

    # The hot read path (`/now` with nothing new, `/compute`) answers from these, kept by the only
    # writer (this node) right after each store write, instead of asking SQLite on every request.
    def _current_slot(self, pid: str) -> int:
        current = self._current.get(pid)
        if current is None:
            self._scheduled(pid, self.scheduler.current_slot(pid))  # max() under the guard
            current = self._current[pid]
        return current

    def _scheduled(self, pid: str, slot: int) -> None:
        with self._guard:
            self._current[pid] = max(self._current.get(pid, -1), slot)

    def _last_view(self, pid: str) -> dict[str, Any]:
        view = self._latest.get(pid)
        if view is None:
            last = self.store.last_result_slot(pid)
            view = {"process": pid, "at-slot": -1, "results": {}, "cache": {}} if last is None else \
                self._stored_view(pid, last) or {}
            self._remember(pid, view)
        return view

    def _remember(self, pid: str, view: dict[str, Any]) -> None:
        with self._guard:
            known = self._latest.get(pid)
            if known is None or view.get("at-slot", -1) >= known.get("at-slot", -1):
                self._latest[pid] = view

    def _stored_view(self, pid: str, slot: int) -> dict[str, Any] | None:
        result = self.store.get_result(pid, slot)
        if result is None:
            return None
        cached = self.store.get_cache(pid, slot)
        return {"process": pid, "at-slot": slot, "results": result, "cache": cached[1] if cached else {}}

    def compute(self, pid: str, slot: int | None = None) -> dict[str, Any]:
        """The state after `slot`; without a slot, the last computed state (never any new work)."""
        self._definition(pid)
        if slot is None:
            return self._last_view(pid)
        if slot < 0:
            raise BadInput(f"slot must be ≥ 0, not {slot}")
        current = self._current_slot(pid)
        if slot > current:
            raise NotFound(f"slot {slot} of {pid} is not scheduled yet (current slot is {current})")
        latest = self._latest.get(pid)
        if latest is not None and latest.get("at-slot") == slot:
            return latest
        view = self._stored_view(pid, slot)
        if view is not None:
            self._remember(pid, view)
            return view
        with self._lock(pid):
            view = self._stored_view(pid, slot)  # another thread may have computed it meanwhile
            if view is not None:
                return view
            self.processes.compute_to(self._live_state(pid), slot)
            # From the store, not the live state: later slots must not change an answer already given.
            view = self._stored_view(pid, slot) or {}
            self._remember(pid, view)
        return view

    def dry_run(self, pid: str, msg: Message) -> dict[str, Any]:
        """Evaluate `msg` on a throwaway copy of the last computed state; nothing is stored or pushed."""
        if not self._dry_runs.acquire(blocking=False):
            raise Busy("too many dry-runs in flight; retry shortly")
        try:
            process = self._definition(pid)
            with self._lock(pid):
                live = self._live_state(pid)
                if live.at_slot < 0:
                    self.processes.compute_to(live, 0)
                fork = SlotContext(snapshot_mode=SnapshotMode.FORK)
                self.processes.snapshot(live, fork)
                blob, at_slot, cache = fork.snapshot, live.at_slot, copy.deepcopy(live.cache)
                last = self.store.get_assignment(pid, at_slot)
            copy_state = self.processes.new_state(pid, process, live.config)
            assert copy_state.stack is not None
            copy_state.stack.normalize(copy_state, SlotContext(snapshot=blob))
            copy_state.at_slot, copy_state.cache = at_slot, cache
            ctx = SlotContext(message=msg, assignment=None if last is None else replace(last, slot=at_slot + 1))
            try:
                copy_state.stack.compute(copy_state, ctx)
            finally:
                release_instance(copy_state)
            return {"process": pid, "at-slot": at_slot, "results": ctx.results, "cache": copy_state.cache}
        finally:
            self._dry_runs.release()

    def now(self, pid: str) -> dict[str, Any]:
        """Compute everything scheduled, then answer."""
        self._definition(pid)
        return self.compute(pid, self._current_slot(pid))

    def pending(self, pid: str) -> int:
        """Scheduled slots not computed yet (0 means `now` would answer without any work)."""
        self._definition(pid)
        return self._current_slot(pid) - self._last_view(pid).get("at-slot", -1)

    def settle(self, max_rounds: int = 64) -> int:
        """Compute every process with scheduled work until all are quiet (pushed messages included)."""
        rounds = 0
        while rounds < max_rounds:
            busy = [pid for pid in self.store.list_processes() if self.pending(pid) > 0]
            if not busy:
                break
            for pid in busy:
                self.now(pid)
            rounds += 1
        return rounds

    def tick_crons(self) -> list[str]:
        """Append the cron messages due by now to every process with a cron frequency; the processes
        that got some. The server calls this on a timer, so a cron process runs without any traffic."""
        ticked = []
        for pid in self.store.list_processes():
            if cron.frequency_of(self._definition(pid)) is None:
                continue
            added = self.scheduler.tick(pid)
            if added:
                self._scheduled(pid, added[-1].slot)
                ticked.append(pid)
        return ticked

    def slot(self, pid: str) -> dict[str, Any]:
        self._definition(pid)
        last = self.store.last_assignment(pid)
        return {
            "process": pid,
            "current": last.slot,
            "timestamp": last.timestamp,
            "block-height": last.block_height,
            "block-hash": last.block_hash,
            "hash-chain": last.hash_chain,
        }

    def schedule_page(self, pid: str, frm: int | None = 0, to: int | None = None) -> dict[str, Any]:
        self._definition(pid)
        page, continues = self.scheduler.page(pid, 0 if frm is None else frm, to)
        return {"process": pid, "assignments": [a.to_json() for a in page], "continues": continues}

    def snapshot(self, pid: str) -> dict[str, Any]:
        """Capture the process's memory at its last computed slot (computing nothing new)."""
        self._definition(pid)
        with self._lock(pid):
            state = self._live_state(pid)
            if state.at_slot < 0:
                raise NotFound(f"{pid} has no computed slot to snapshot yet")
            self.processes.snapshot(state)
            return {"process": pid, "slot": state.at_slot, "memory-sha256": state.memory_sha256}

    def init(self, pid: str) -> dict[str, Any]:
        process = self._definition(pid)
        return {"process": pid, "at-slot": -1, "definition": process.to_legacy_json(),
                "stack": stack_names(process)}

    def info(self) -> dict[str, Any]:
        from aonode.modules.catalogue import entries

        return {
            "address": self.address,
            "version": VERSION,
            "devices": [info.name for info in self.registry.infos()],
            "modules": [{"name": e.name, "id": e.id} for e in entries()],
            "processes": self.store.list_processes(),
        }

    # -- live processes ---------------------------------------------------------------------------
    def _lock(self, pid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(pid, threading.Lock())

    def _live_state(self, pid: str) -> ProcessState:
        """The live state of `pid` (caller holds its lock), restored from its newest snapshot if cold."""
        with self._guard:
            state = self._live.get(pid)
            if state is not None:
                self._live.move_to_end(pid)
                return state
        process = self._definition(pid)
        weavedrive = self.data_dir / "weavedrive"  # Arweave data for WeaveDrive, when an operator provides it
        state = self.processes.new_state(pid, process, ProcessConfig(weavedrive_dir=weavedrive if weavedrive.is_dir() else None))
        last = self.store.last_result_slot(pid)
        state.at_slot = -1 if last is None else last
        self.processes.normalize(state)  # back to the newest snapshot at or below `last` ...
        if last is not None:
            self.processes.compute_to(state, last)  # ... and forward again (pushes are idempotent)
        with self._guard:
            self._live[pid] = state
            victims = list(self._live.items())[: max(0, len(self._live) - self.max_live)]
        for victim_pid, victim in victims:
            self._evict(victim_pid, victim)
        return state

    def _evict(self, pid: str, state: ProcessState) -> None:
        lock = self._lock(pid)
        if not lock.acquire(blocking=False):
            return  # busy: it stays live this time
        try:
            if state.snapshot_slot != state.at_slot:
                self.processes.snapshot(state)
            with self._guard:
                self._live.pop(pid, None)
            release_instance(state)
        finally:
            lock.release()

    # router interface for push@1.0
    def message(self, mid: str) -> Message | None:
        return self.store.get_message(mid)

    def is_local(self, pid: str | None) -> bool:
        return bool(pid) and self.store.get_process(pid) is not None

    def deliver(self, target: str, msg: Message) -> dict[str, Any]:
        """Schedule a pushed message; a PoDA target that lists this node gets the node's commitment."""
        definition = self._definition(target)
        if has_poda(definition) and self.address in poda.config(definition).authorities:
            msg = poda.with_commitments(msg, [poda.commit(msg.id, self.wallet)])
        return self.schedule(target, msg)

    def close(self) -> None:
        """Snapshot every live process so the next start replays nothing, then close the store."""
        with self._guard:
            live = list(self._live.items())
        for pid, state in live:
            self._evict(pid, state)
        self.processes.flush()  # periodic snapshots still being hashed and stored in the background
        self.store.close()

    # == Queries (issue 9, server side) ============================================================
    # Every read server/ makes beyond the HyperBEAM methods above, typed in engine/answers.py and
    # declared in server/api.py's NodeAPI. Keep this block together when node.py is split up.
    # (`message(mid)`, a message this node holds, is above with the router interface.)
    def definition(self, pid: str) -> Message:
        """The process's definition (its spawn message); NotFound for a process not on this node."""
        return self._definition(pid)

    def assignment(self, pid: str, slot: int) -> Assignment | None:
        """The assignment at `slot` of `pid`; None when that slot is not scheduled."""
        self._definition(pid)
        return self.store.get_assignment(pid, slot)

    def assignment_of(self, pid: str, mid: str) -> Assignment | None:
        """Where message `mid` sits in `pid`'s schedule; None when it is not scheduled there."""
        self._definition(pid)
        return self.store.assignment_for_message(pid, mid)

    def assignments_after(self, pid: str, timestamp: int | None, limit: int) -> list[Assignment]:
        """Up to `limit` assignments in slot order, from the first one stamped after `timestamp`
        (ms; None: from slot 0). Timestamps never decrease along slots, so a bisection finds it."""
        self._definition(pid)
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
        """The stored result of message `mid` on `pid`; None when not scheduled there or not computed."""
        self._definition(pid)
        found = self.store.get_result_by_message(pid, mid)
        return None if found is None else SlotResult(found[0], found[1])

    def results(self, pid: str, frm: int | None, to: int | None, limit: int,
                descending: bool = False) -> list[SlotResult]:
        """Up to `limit` stored results of slots `frm`..`to` (inclusive; None: open), in slot order
        or reversed. Nothing is computed: call `compute` first for slots not evaluated yet."""
        self._definition(pid)
        return [SlotResult(slot, result) for slot, result in self.store.results(pid, frm, to, limit, descending)]

    def memory(self, pid: str) -> ProcessMemory:
        """The process's linear memory at its last computed slot (snapshotted first, nothing computed)."""
        taken = self.snapshot(pid)
        found = self.store.latest_snapshot(pid, taken["slot"])
        if found is None:
            raise NotFound(f"{pid} has no snapshot")
        slot, _, blob = found
        a = self.store.get_assignment(pid, slot)
        return ProcessMemory(slot, a.timestamp if a else 0, a.block_height if a else 0,
                             Snapshot.from_bytes(blob).raw())

    def clock(self) -> Clock:
        """What the scheduler would stamp a new assignment with now."""
        return Clock(self.scheduler.clock(), self.scheduler.block_height())
