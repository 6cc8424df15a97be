"""process@1.0: a process is its definition message plus the slots computed on it.

`compute_to` starts from the live state (or the newest snapshot at or below the target, or a fresh
init at slot -1), applies assignments one by one through the execution stack and stores each slot's
result before moving on, so a read never recomputes and a restart replays only what came after the
last snapshot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from aonode.engine import metrics
from aonode.engine.devices.base import (
    DeviceInfo,
    Json,
    MemoryImage,
    PendingWrite,
    ProcessConfig,
    ProcessState,
    Runner,
    Signal,
    SlotContext,
    SnapshotMode,
    call_key,
)
from aonode.engine.devices.json_iface import empty_results
from aonode.engine.devices.recent_schedule import RecentSchedule
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.slot_writes import SlotWrites
from aonode.engine.devices.stack import Stack
from aonode.engine.devices.wasm_ahead import compute_ahead, runs_ahead
from aonode.engine.errors import BadInput, Busy, NotFound
from aonode.engine.genesis import as_aos_definition
from aonode.engine.jsondata import JsonObject
from aonode.engine.message import Message
from aonode.engine.progress import PROGRESS, Task
from aonode.engine.store.base import Assignment, Store
from aonode.engine.store.checked import checked
from aonode.engine.wasm.chunked import SnapshotDamaged

log = logging.getLogger(__name__)

INFO = DeviceInfo(
    "process@1.0",
    ("init", "compute", "snapshot", "normalize"),
    stackable=False,
    about="a definition plus its computed slots: runs the execution stack, then push",
)
AOS_STACK = ("json-iface@1.0", "wasm64@1.0", "multipass@1.0", "patch@1.0")
REPLAY_PROGRESS_FROM = 64  # slots computed in one go from which the work shows as a progress task
RESULT_BATCH = 64  # slots whose results one transaction stores (durability per computed batch: recomputable)
DEFAULT_CACHE_FREQUENCY = 256  # snapshots are incremental (engine/wasm/chunked.py); this bounds replay


def stack_names(process: Message) -> list[str]:
    """The execution stack a definition asks for, in the documented or the reference spelling."""
    aos = as_aos_definition(process)  # genesis-wasm@1.0 names the default AOS stack
    raw = aos.tag("Execution-Stack") or aos.tag("Device-Stack")
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


def json_safe(value: object) -> Json:
    parsed: Json = json.loads(json.dumps(value, default=str))
    return parsed


def _cache_copy(cache: JsonObject) -> JsonObject:
    copy = json_safe(cache)
    assert isinstance(copy, dict)  # a JSON copy of a dict
    return copy


def _stack(state: ProcessState) -> Runner:
    if state.stack is None:
        raise BadInput(f"{state.process_id} has no execution stack (make its state with new_state)")
    return state.stack


@dataclass
class ProcessDevice:
    """Runs a process's slots: its execution stack (from the registry, as the definition names
    it), then `after` (push@1.0) on each computed slot, and stores what came out."""

    store: Store
    registry: Registry
    after: Sequence[object] = ()  # devices run on each slot after the stack: push@1.0
    recent: RecentSchedule | None = None  # the scheduler's just-committed assignments (no row to read)
    name: str = field(default=INFO.name, init=False)
    slots_evaluated: int = 0  # since start: restart tests count them to prove nothing is replayed twice
    _in_flight: list[tuple[str, PendingWrite]] = field(default_factory=list, repr=False)  # not yet stored
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Set when the node stops: computes end after their current message (what is left is computed
    # after the restart), so a stop waits for one message at most, not for a whole backlog.
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _batch: threading.local = field(default_factory=threading.local, repr=False)  # results not yet stored

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def new_state(self, pid: str, process: Message, config: ProcessConfig) -> ProcessState:
        stack = Stack([self.registry.create(n) for n in stack_names(process)])
        return ProcessState(process_id=pid, process=process, config=config, stack=stack)

    # -- the four keys -------------------------------------------------------------------------
    def init(self, state: ProcessState, ctx: SlotContext | None = None) -> Signal:
        state.at_slot, state.cache = -1, {}
        return _stack(state).init(state, SlotContext(message=state.process))

    def normalize(self, state: ProcessState, ctx: SlotContext | None = None) -> Signal:
        """Bring `state` to the newest snapshot at or below `state.at_slot` that restores to what it
        was stored as, or to a fresh init (the schedule replays from slot 0). A damaged snapshot is
        logged and dropped; no message ever runs on memory that did not check out."""
        max_slot = state.at_slot
        while (found := self.store.latest_snapshot(state.process_id, max_slot)) is not None:
            slot, name, blob = found
            try:
                signal = _stack(state).normalize(
                    state, SlotContext(snapshot=blob, snapshot_name=name, chunks=self.store.get_chunks)
                )
            except SnapshotDamaged as err:
                log.error(
                    "process %s: snapshot at slot %d is damaged (%s); falling back to an older one or to slot 0",
                    state.process_id,
                    slot,
                    err,
                )
                self.store.drop_snapshot(state.process_id, slot)
                max_slot = slot - 1
                continue
            state.at_slot = slot
            cached = self.store.get_cache(state.process_id, slot)
            state.cache = cached[1] if cached else {}
            return signal
        return self.init(state)

    def snapshot(self, state: ProcessState, ctx: SlotContext | None = None) -> Signal:
        """Store the state at `state.at_slot` (`ctx.snapshot_mode` says how). In the background
        (the periodic snapshots), the execution device only copies what changed since its previous
        snapshot; naming, compressing and storing happen on another thread while the process
        computes on (`flush` waits for them). FORK leaves an unnamed copy in `ctx.snapshot` and
        stores nothing."""
        ctx = ctx or SlotContext()
        if state.at_slot < 0:
            return Signal.OK
        if ctx.snapshot_mode is SnapshotMode.FORK:
            return _stack(state).snapshot(state, ctx)
        cache: Future[JsonObject] = Future()
        cache.set_result(_cache_copy(state.cache))
        return self._snapshot(state, ctx, state.at_slot, cache)

    def snapshot_before_cache(self, state: ProcessState, slot: int) -> Future[JsonObject]:
        """A background snapshot of the memory as it is now, at `slot` (whose wasm call just returned,
        ahead of `state.at_slot`), stored once the caller sets that slot's cache on the returned future
        (an exception set there stores nothing)."""
        cache: Future[JsonObject] = Future()
        try:
            self._snapshot(state, SlotContext(snapshot_mode=SnapshotMode.BACKGROUND), slot, cache)
        except BaseException as err:
            cache.set_exception(err)  # a store step already handed off must not wait for it forever
            raise
        return cache

    def _snapshot(self, state: ProcessState, ctx: SlotContext, slot: int, cache: Future[JsonObject]) -> Signal:
        pid = state.process_id

        def store(snap: MemoryImage) -> None:
            at_slot = cache.result()  # before anything is stored: no snapshot without its cache
            blob = snap.to_bytes()
            self.store.put_snapshot(pid, slot, snap.memory_sha256, blob, snap.new_chunks)
            metrics.snapshot_stored(len(blob) + sum(len(c) for c in snap.new_chunks.values()))
            self.store.put_cache(pid, slot, at_slot)

        ctx.on_snapshot = store
        signal = _stack(state).snapshot(state, ctx)
        pending, ctx.snapshot = ctx.pending, None
        if pending is not None:
            with self._lock:
                self._in_flight.append((state.process_id, pending))
        state.snapshot_slot = slot
        return signal

    def flush(self, pid: str | None = None, quiet: bool = False) -> None:
        """Wait until the background snapshots of `pid` (of every process: None) are stored. `quiet`
        (a compute that failed): a snapshot that could not be stored is logged, so the error that
        ended the compute is the one its caller sees."""
        with self._lock:
            mine = [entry for entry in self._in_flight if pid is None or entry[0] == pid]
            self._in_flight = [entry for entry in self._in_flight if entry not in mine]
        for owner, pending in mine:
            try:
                pending.wait()
            except Exception as err:
                if not quiet:
                    raise
                log.warning("process %s: a snapshot was not stored (%s)", owner, err)

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        """Evaluate exactly the next slot (`ctx.assignment`) and store its result. A periodic
        snapshot here is made as `ctx.snapshot_mode` says (BACKGROUND when more slots follow)."""
        if ctx.assignment is None or ctx.assignment.slot != state.at_slot + 1:
            raise BadInput(f"slot {ctx.slot} cannot follow slot {state.at_slot}")
        return self.finish(state, ctx, self.begin(state, ctx))

    def prepare(self, state: ProcessState, ctx: SlotContext) -> None:
        """The part of a slot's first pass that reads only its message and the definition (json-iface's
        encoding), on the compute thread before `begin` runs on the wasm-ahead thread; `begin` does
        what was not done."""
        assert ctx.assignment is not None
        stack = _stack(state)
        if isinstance(stack, Stack) and stack.mode == "fold":
            ctx.message = ctx.assignment.message
            stack.prepare(state, ctx)

    def begin(self, state: ProcessState, ctx: SlotContext) -> Signal:
        """A slot's first pass (in the AOS stack: its message encoded and run in wasm); in a backlog
        it runs on the wasm-ahead thread (wasm_ahead.py) while the slot before it is finished."""
        assert ctx.assignment is not None
        ctx.message, ctx.results = ctx.assignment.message, {}
        stack = _stack(state)
        if isinstance(stack, Stack) and stack.mode == "fold":
            return stack.first_pass("compute", state, ctx)
        return stack.compute(state, ctx)  # every pass at once

    def finish(
        self, state: ProcessState, ctx: SlotContext, signal: Signal, cache: Future[JsonObject] | None = None
    ) -> Signal:
        """The rest of a slot begun with `signal`, on the compute thread: the later passes (decode,
        patches), push, the buffered result, and the periodic snapshot; `cache` set: its memory was
        copied already (wasm_ahead.py), only the cache it is stored with was still to come. A failure
        here leaves the memory past the slot's stored result: the state is marked `stale`."""
        try:
            return self._finish(state, ctx, signal, cache)
        except BaseException:
            state.stale = True  # else the next read answers nothing for this slot and never computes it
            raise

    def _finish(
        self, state: ProcessState, ctx: SlotContext, signal: Signal, cache: Future[JsonObject] | None
    ) -> Signal:
        assignment = ctx.assignment
        assert assignment is not None
        stack = _stack(state)
        if signal is Signal.PASS and isinstance(stack, Stack):
            signal = stack.later_passes("compute", state, ctx, signal)
        if not ctx.results:
            ctx.results = empty_results()
        state.at_slot = assignment.slot
        self.slots_evaluated += 1
        for device in self.after:  # delivery first, so the stored result says where messages went
            call_key(device, "compute", state, ctx)
        self._store_slot(state, assignment, ctx)
        if cache is not None:
            cache.set_result(_cache_copy(state.cache))
        elif self.snapshot_due(state, state.at_slot):
            if ctx.snapshot_mode is SnapshotMode.NAMED:
                self._store_results()  # a named snapshot is never ahead of the stored results
            self.snapshot(state, SlotContext(snapshot_mode=ctx.snapshot_mode))
        return signal

    @staticmethod
    def snapshot_due(state: ProcessState, slot: int) -> bool:
        return slot % cache_frequency(state.process) == 0

    def _store_slot(self, state: ProcessState, assignment: Assignment, ctx: SlotContext) -> None:
        # JSON already (JsonObject: what the image returned, decoded, plus the devices' own records)
        # and fresh per slot, so stored as it is: no JSON round trip per slot to copy or check it.
        record: JsonObject = {**ctx.results, "slot": assignment.slot, "message": assignment.message_id}
        patches = record.get("Patches")  # only what this slot merged is stored, unless a full copy is due
        changes = [p for p in patches if isinstance(p, dict)] if patches and isinstance(patches, list) else None
        writes: SlotWrites | None = getattr(self._batch, "writes", None)
        if writes is None:  # outside compute_to: stored here and now
            writes = SlotWrites(self.store, limit=1)
        writes.add(state.process_id, assignment.slot, assignment.message_id, record, changes, state.cache)

    # -- the loop ------------------------------------------------------------------------------
    def compute_to(self, state: ProcessState, slot: int) -> ProcessState:
        """Evaluate up to `slot`. Periodic snapshots are made in the background meanwhile and are
        stored before this returns, so what a caller has been answered is never recomputed after
        a crash beyond the last snapshot it saw."""
        if state.stale:
            raise BadInput(f"{state.process_id}'s memory is past slot {state.at_slot} (a failed run): restore it first")
        first = state.at_slot + 1
        outer = getattr(self._batch, "writes", None) is None
        if outer:
            self._batch.writes = SlotWrites(self.store, limit=RESULT_BATCH)
        complete = False
        try:
            with _replay_progress(state.process_id, first, slot) as task:
                started = time.perf_counter()

                def done() -> None:
                    nonlocal started
                    metrics.slot_computed(time.perf_counter() - started)
                    started = time.perf_counter()
                    if task is not None:
                        task.advance()

                slots = self._slots(state.process_id, first, slot)
                if slot > first and runs_ahead(state):
                    compute_ahead(self, state, slots, done)
                else:
                    for ctx in slots:
                        self.compute(state, ctx)
                        done()
            complete = True
        finally:
            if outer:
                try:
                    self._store_results(complete)
                finally:
                    self._batch.writes = None
            self.flush(state.process_id, quiet=not complete)
        return state

    def _slots(self, pid: str, first: int, last: int) -> Iterator[SlotContext]:
        """The contexts of slots `first`..`last` in order (the schedule read a page at a time); NotFound
        for a slot not scheduled, Busy once the node stops, each raised when that slot is asked for."""
        ahead: deque[tuple[Assignment, bool]] = deque()  # (assignment, read from a row)
        for number in range(first, last + 1):
            if not ahead:
                ahead.extend(self._schedule_page(pid, number, last))
            if not ahead or ahead[0][0].slot != number:
                raise NotFound(f"slot {number} of {pid} is not scheduled")
            if self.stopping.is_set():
                raise Busy("this node is stopping; the rest is computed after it restarts")
            assignment, from_row = ahead.popleft()
            if from_row:
                assignment = checked(assignment)  # never compute on a damaged or edited row
            mode = SnapshotMode.BACKGROUND if number < last else SnapshotMode.NAMED
            yield SlotContext(assignment=assignment, snapshot_mode=mode)

    def _schedule_page(self, pid: str, first: int, last: int) -> list[tuple[Assignment, bool]]:
        """Up to RESULT_BATCH assignments from `first` on: the ones this node just committed as
        they were committed, else rows from the store (True: to be checked before compute)."""
        held = self.recent.take(pid, first, last, RESULT_BATCH) if self.recent is not None else []
        if held:
            return [(a, False) for a in held]
        return [(a, True) for a in self.store.assignments(pid, first, last, limit=RESULT_BATCH)]

    def _store_results(self, complete: bool = True) -> None:
        """Store the results (and cache changes) this thread's compute_to has buffered."""
        writes: SlotWrites | None = getattr(self._batch, "writes", None)
        if writes is not None:
            writes.flush(complete)


@contextlib.contextmanager
def _replay_progress(pid: str, first: int, last: int) -> Iterator[Task | None]:
    """A visible progress task when many slots are to be computed at once (a replay after a
    restart, a process read long after its messages came), nothing for the usual one or two."""
    if last - first + 1 < REPLAY_PROGRESS_FROM:
        yield None
        return
    with PROGRESS.task(f"computing {pid[:8]}… slots {first}–{last}", total=last - first + 1, unit="slots") as task:
        yield task
