"""Node: the one entry point the server calls, a small facade over named collaborators.

- `Images` (images.py): module reference -> compiled image, through the injected `Catalogue`.
- `Views` (views.py): definitions, current slots and the latest computed view, kept in memory.
- `Router` (router.py): spawn (definition completed and checked), schedule, deliver (push@1.0).
- `LiveProcesses` (live.py): one writer per process, the LRU of warm states, eviction.
- `DryRuns` (dryrun.py), `CronTicker` (crons.py), `Queries` (queries.py: the legacy routes' reads).
- `ProcessDevice` (devices/process.py) computes slots with the devices of the `Registry`.

Reads of already computed slots come straight from the views and the store and never wait for a
lock; only work that evaluates new slots takes the process's lock. Nothing below holds the Node.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import cast

from aonode.engine.answers import (
    JSON,
    Assignment,
    AssignmentJSON,
    Clock,
    InitInfo,
    NodeInfo,
    ProcessMemory,
    ProcessView,
    SchedulePage,
    SlotInfo,
    SlotResult,
    SnapshotInfo,
)
from aonode.engine.chaintip import ChainTip
from aonode.engine.crons import CronTicker
from aonode.engine.crypto import Wallet
from aonode.engine.devices import cron
from aonode.engine.devices.json_iface import INFO as JSON_IFACE, JSONInterface
from aonode.engine.devices.multipass import INFO as MULTIPASS, Multipass
from aonode.engine.devices.patch import INFO as PATCH, Patch
from aonode.engine.devices.poda import INFO as PODA, PoDA
from aonode.engine.devices.process import INFO as PROCESS, ProcessDevice, stack_names
from aonode.engine.devices.push import INFO as PUSH, Push
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.devices.stack import INFO as STACK
from aonode.engine.devices.wasm64 import INFO as WASM64, WasmDevice, whole
from aonode.engine.dryrun import DryRuns
from aonode.engine.errors import BadInput, NotFound, StartupRefused
from aonode.engine.first_start import compile_cache, data_dir_wallet
from aonode.engine.images import Catalogue, Images
from aonode.engine.leases import DEFAULT_LEASES, Claim, LeaseConfig, Leases, LocalLeases, run_leased
from aonode.engine.live import LiveProcesses, release_instance
from aonode.engine.lua.modules import LuaModules, module_path_from_env
from aonode.engine.lua.reads import LuaCall, LuaReads
from aonode.engine.message import Message
from aonode.engine.queries import Queries
from aonode.engine.router import Router
from aonode.engine.store import SQLiteStore, Store, as_postgres, claim_scheduler, open_store
from aonode.engine.views import Views
from aonode.engine.wasm import Runtime

VERSION = "0.1.0"


def register_devices(registry: Registry, scheduler: Scheduler, router: Router, images: Images) -> Registry:
    """Every device this node knows, by the name process definitions use. process@1.0 and
    stack@1.0 are listed, not made by name: the Node makes the one process device, which makes
    each process's stack from the names its definition gives."""
    registry.register(PROCESS, None)
    registry.register(scheduler.info(), lambda: scheduler)
    registry.register(STACK, None)
    registry.register(PUSH, lambda: Push(router))
    registry.register(cron.INFO, cron.Cron)
    registry.register(JSON_IFACE, JSONInterface)
    registry.register(MULTIPASS, Multipass)
    registry.register(PATCH, Patch)
    registry.register(PODA, PoDA)
    registry.register(WASM64, lambda: WasmDevice(images.runtime, images.load))
    return registry


class Node:
    def __init__(
        self,
        data_dir: Path | str,
        dev: bool = False,
        *,
        catalogue: Catalogue | None = None,
        max_live: int = 32,
        clock: Callable[[], int] | None = None,
        wallet: Wallet | None = None,
        dry_run_slots: int = 2,
        store: str | None = None,
        leases: LeaseConfig = DEFAULT_LEASES,
        snapshots: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.dev = dev
        # A postgresql:// URL: shared with other nodes; the data dir then only caches snapshots.
        # `snapshots` (s3://bucket/prefix): the snapshots' bytes in that bucket, their index in the store.
        self.store = open_store(store or self.data_dir, cache_dir=self.data_dir / "snapshot-cache", snapshots=snapshots)
        self.wallet = wallet or data_dir_wallet(self.data_dir)
        self.address = self.wallet.address
        try:
            claim_scheduler(self.store, self.address)  # nodes on one database share one wallet
        except StartupRefused:
            self.store.close()
            raise
        self.chain = ChainTip(self.data_dir / "chain-tip.json")
        self.scheduler = (
            Scheduler(self.store, clock, self.chain.height, self.chain.hash)
            if clock
            else Scheduler(self.store, block_height=self.chain.height, block_hash=self.chain.hash)
        )
        self.images = Images(Runtime(cache_dir=compile_cache(self.data_dir), background=True), catalogue or Catalogue())
        self.views = Views(self.store, self.scheduler, shared=not isinstance(self.store, SQLiteStore))
        self.registry = Registry()  # filled below: push@1.0 needs the router, the router the registry
        self.router = Router(self.scheduler, self.views, self.registry, self.images, self.wallet)
        register_devices(self.registry, self.scheduler, self.router, self.images)
        push = self.registry.create(PUSH.name, in_stack=False)
        self.processes = ProcessDevice(self.store, self.registry, after=[push], recent=self.scheduler.recent)
        # The lease owner names this node instance (a restart is a new owner): address, host, pid.
        owner = f"{self.address}/{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.leases = _leases(self.store, owner, leases, on_work=self.now, on_lost=lambda pid: self.live.forget(pid))
        self.live = LiveProcesses(self.processes, self.views, self.data_dir, max_live, on_evict=self.leases.release)
        self.dry_runs = DryRuns(self.live, dry_run_slots)
        self.crons = CronTicker(self.scheduler, self.views)
        self.queries = Queries(self.store, self.scheduler, self.views, self.live)
        self.lua = LuaReads(LuaModules(self.data_dir / "lua-modules", module_path_from_env()))

    @property
    def runtime(self) -> Runtime:
        return self.images.runtime

    @property
    def slots_evaluated(self) -> int:
        """Slots computed since start: restart tests count them to prove nothing is replayed twice."""
        return self.processes.slots_evaluated

    # -- writes -----------------------------------------------------------------------------------
    def spawn(self, msg: Message) -> AssignmentJSON:
        """Schedule a process definition as slot 0 of a new process whose id is the message id."""
        return self.router.spawn(msg)

    def schedule(self, pid: str, msg: Message) -> AssignmentJSON:
        """Append `msg` to the schedule of `pid` (idempotent by message id); its assignment."""
        return self.router.schedule(pid, msg)

    def schedule_later(self, pid: str, msg: Message) -> Future[AssignmentJSON]:
        """`schedule` without waiting for the durable commit: a caller that must not block a thread
        (the server's event loop) takes the Future, settled by the committing thread."""
        return self.router.schedule_later(pid, msg)

    def schedule_many_later(self, pid: str, msgs: list[Message]) -> Future[list[Assignment]]:
        """`schedule_later` of each of `msgs` in order, settled once for all (the sequencer socket's batches)."""
        return self.router.schedule_many_later(pid, msgs)

    def tick_crons(self) -> list[str]:
        """Append the cron messages due by now to every cron process; the processes that got some."""
        return self.crons.tick()

    # -- reads ------------------------------------------------------------------------------------
    def compute(self, pid: str, slot: int | None = None) -> ProcessView:
        """The state after `slot`; without a slot, the last computed state (never any new work)."""
        self.views.definition(pid)
        if slot is None:
            return self.views.last(pid)
        if slot < 0:
            raise BadInput(f"slot must be ≥ 0, not {slot}")
        current = self.views.current_slot(pid)
        if slot > current:
            raise NotFound(f"slot {slot} of {pid} is not scheduled yet (current slot is {current})")
        latest = self.views.latest_at(pid, slot)
        if latest is not None:
            return latest
        view = self.views.stored(pid, slot)
        if view is None:
            # Here if this node holds the process's compute lease (always, on its own store), else by
            # the node that does; then from the store, not the live state: later slots must not
            # change an answer already given.
            run_leased(
                self.leases,
                pid,
                lambda: self.views.stored(pid, slot) is not None,
                lambda claim: self._compute_here(pid, slot, claim),
            )
            view = self.views.stored(pid, slot) or cast(ProcessView, {})
        self.views.remember(pid, view)
        return view

    def _compute_here(self, pid: str, slot: int, claim: Claim) -> None:
        with self.live.lock(pid):
            if claim is Claim.FRESH:  # another node may have computed it since this one last did
                stale = self.live.forget(pid)
                if stale is not None:
                    release_instance(stale)
            if self.views.stored(pid, slot) is None:  # another thread may have computed it meanwhile
                self.live.compute_to(pid, slot)
        self.leases.computed(pid)

    def dry_run(self, pid: str, msg: Message) -> ProcessView:
        """Evaluate `msg` on a throwaway copy of the last computed state; nothing is stored or pushed."""
        return self.dry_runs.run(pid, msg)

    def now(self, pid: str) -> ProcessView:
        """Compute everything scheduled, then answer."""
        self.views.definition(pid)
        return self.compute(pid, self.views.current_slot(pid))

    def lua_read(self, state: ProcessView, call: LuaCall) -> JSON:
        """`call.function(state, request)` for a state this node answered (`~lua@5.3a` reads)."""
        return self.lua.read(state, call)

    def pending(self, pid: str) -> int:
        """Scheduled slots not computed yet (0 means `now` would answer without any work)."""
        return self.views.pending(pid)

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

    def slot(self, pid: str) -> SlotInfo:
        self.views.definition(pid)
        last = self.store.last_assignment(pid)
        if last is None:
            raise NotFound(f"process {pid} has no schedule")
        return {
            "process": pid,
            "current": last.slot,
            "timestamp": last.timestamp,
            "block-height": last.block_height,
            "block-hash": last.block_hash,
            "hash-chain": last.hash_chain,
        }

    def schedule_page(self, pid: str, frm: int | None = 0, to: int | None = None) -> SchedulePage:
        self.views.definition(pid)
        page, continues = self.scheduler.page(pid, 0 if frm is None else frm, to)
        assignments = [cast(AssignmentJSON, a.to_json()) for a in page]
        return {"process": pid, "assignments": assignments, "continues": continues}

    def snapshot(self, pid: str) -> SnapshotInfo:
        """Capture the process's memory at its last computed slot (computing nothing new)."""
        self.views.definition(pid)
        slot, sha = self.live.snapshot(pid)
        return cast(SnapshotInfo, {"process": pid, "slot": slot, "memory-sha256": sha})

    def snapshot_file(self, pid: str) -> tuple[SnapshotInfo, bytes]:
        """A snapshot of the last computed slot as stored: the bytes `aonode eval --snapshot-in` and
        another node restore (memory, host counters and the emscripten filesystem)."""
        info = self.snapshot(pid)
        found = self.store.latest_snapshot(pid, info["slot"])
        if found is None or found[0] != info["slot"]:
            raise NotFound(f"the snapshot of {pid} at slot {info['slot']} is not stored")
        return info, whole(found[2], found[1], self.store.get_chunks, info["memory-sha256"])

    def init(self, pid: str) -> InitInfo:
        process = self.views.definition(pid)
        return {
            "process": pid,
            "at-slot": -1,
            "definition": process.to_legacy_json(),
            "stack": list(stack_names(process)),
        }

    def info(self) -> NodeInfo:
        return {
            "address": self.address,
            "version": VERSION,
            "devices": [info.name for info in self.registry.infos()],
            "modules": [{"name": m.name, "id": m.id} for m in self.images.catalogue.modules()],
            "processes": list(self.store.list_processes()),
            "block-height": self.chain.height(),
        }

    def observe_block(self, height: int, block_hash: str | None = None) -> None:
        """The gateway's current block: new assignments carry it (a lower one is ignored)."""
        self.chain.observe(height, block_hash)

    # -- queries: the legacy MU/CU/SU and gateway routes' reads (engine/queries.py) ------------
    def message(self, mid: str) -> Message | None:
        """A message this node holds."""
        return self.queries.message(mid)

    def definition(self, pid: str) -> Message:
        """The process's definition (its spawn message); NotFound for a process not on this node."""
        return self.views.definition(pid)

    def assignment(self, pid: str, slot: int) -> Assignment | None:
        """The assignment at `slot` of `pid`; None when that slot is not scheduled."""
        return self.queries.assignment(pid, slot)

    def assignment_of(self, pid: str, mid: str) -> Assignment | None:
        """Where message `mid` sits in `pid`'s schedule; None when it is not scheduled there."""
        return self.queries.assignment_of(pid, mid)

    def assignments_after(self, pid: str, timestamp: int | None, limit: int) -> list[Assignment]:
        """Up to `limit` assignments in slot order, from the first one stamped after `timestamp`."""
        return self.queries.assignments_after(pid, timestamp, limit)

    def result_of(self, pid: str, mid: str) -> SlotResult | None:
        """The stored result of message `mid` on `pid`; None when not scheduled there or not computed."""
        return self.queries.result_of(pid, mid)

    def results(
        self, pid: str, frm: int | None, to: int | None, limit: int, descending: bool = False
    ) -> list[SlotResult]:
        """Up to `limit` stored results of slots `frm`..`to` (inclusive; None: open); nothing computed."""
        return self.queries.results(pid, frm, to, limit, descending)

    def memory(self, pid: str) -> ProcessMemory:
        """The process's linear memory at its last computed slot (snapshotted first, nothing computed)."""
        return self.queries.memory(pid)

    def clock(self) -> Clock:
        """What the scheduler would stamp a new assignment with now."""
        return self.queries.clock()

    def stop_computing(self) -> None:
        """From now on computes end after their current message (a stop signal came)."""
        self.processes.stopping.set()

    def close(self) -> None:
        """Snapshot every live process so the next start replays nothing, then close the store."""
        self.live.close()
        self.leases.close()
        self.store.close()


def _leases(
    store: Store, owner: str, config: LeaseConfig, on_work: Callable[[str], object], on_lost: Callable[[str], object]
) -> Leases:
    """PgLeases on a PostgresStore (nodes share it); LocalLeases on anything else (one node)."""
    shared = as_postgres(store)
    if shared is not None:
        from aonode.engine.store.pg_leases import PgLeases  # psycopg only when asked for

        return PgLeases(shared.pool, shared.dsn, owner, config, on_work, on_lost)
    return LocalLeases(config)
