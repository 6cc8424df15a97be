"""A backlog computed with its wasm calls running on a worker thread ahead of the slots' post-processing.

Why: wasmtime-py calls into wasm through ctypes, which lets go of the GIL for the call (the AOS
variant calls no Python import during a message). So while a worker thread runs the first passes of
the next slots one after another (json-iface encodes the message, wasm64 runs `handle`), the compute
thread runs the earlier slots' later passes (json-iface decodes, patch merges), push and the buffered
store writes: with a core free, a backlog costs about the larger of the two per slot, not their sum.
The compute thread also encodes each slot's message (`prepare`) before handing it over, since it
has time to spare and the worker, whose wasm calls set the pace, has none.
The path may then use two cores (with the GIL handed over sooner while the worker runs:
gil_handover.py). The worker is one thread per backlog that goes from one slot to the
next by itself (a hand-over per slot would cost two thread wake-ups per message) and hands its begun
slots to the compute thread a few per wake-up (slot_handover.py), and only its call
into wasm lets go of the GIL (engine/wasm/guest.py keeps it for memory access): at any other release
the compute thread could take the GIL for a whole slot's post-processing before the call started.

What stays exactly as computing one slot at a time:
- Every slot is finished (results, patches, pushes, stored rows) on the compute thread, in slot order.
- Only the worker uses the instance while it runs, and it is at most `AHEAD` slots ahead of the
  slots finished (a bounded queue).
- A periodic snapshot's memory is copied by the worker right after its slot's wasm call (the memory
  is then at that slot); it is stored with that slot's cache once the slot is finished. The last
  slot's snapshot (named, stored before `compute_to` returns) is made when the worker is done.
- An error in a slot's first pass ends the worker (the memory is as before that slot) and surfaces
  when that slot's turn comes, after the slots before it are finished. An error finishing slot N
  once later slots ran leaves the memory past `at_slot`: the state is marked `stale`, and its next
  use restores it from its newest snapshot and recomputes (computed results may be recomputed; the
  schedule is never touched here); their snapshots are not stored.
Only stacks whose first pass reads nothing but the message, the definition and the instance run
this way (`AHEAD_SAFE`); any other stack computes one slot at a time.

Without a second core for the worker, the same runs in batches on the compute thread itself
(`_Batches`: up to AHEAD wasm calls in a row, then those slots finished in a row), which beat one
slot at a time by ~5-9% in paired runs on the 2-vCPU VM: a wasm call and a slot's Python each leave
the caches cold for the other. Which of the two runs is chosen as the backlog goes (pace.py: the
one that computed the process's slots faster lately), switching once the slots begun are finished.
Either way every slot is computed the same, in slot order: the choice changes how fast, never what.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Protocol

from aonode.engine.devices import gil_handover
from aonode.engine.devices.base import JsonObject, ProcessState, Signal, SlotContext, SnapshotMode
from aonode.engine.devices.pace import Pace
from aonode.engine.devices.slot_handover import Handover
from aonode.engine.devices.stack import Stack
from aonode.engine.frozen_heap import frozen_heap

# Devices whose pass 1 touches only the message, the definition and the live instance: json-iface
# encodes, wasm64 runs `handle`, multipass counts; patch merges only decoded results (pass 2 on).
AHEAD_SAFE = frozenset({"json-iface@1.0", "wasm64@1.0", "multipass@1.0", "patch@1.0"})
# Slots begun and not yet finished, at most: enough that the worker keeps going while the compute
# thread stores a batch of results (one transaction per RESULT_BATCH slots, ~10 ms on this machine,
# several wasm calls), small enough that a failure discards little (a begun slot holds its output).
AHEAD = 8
# Begun slots the compute thread, once it has finished all handed over, waits for before it is woken
# (or fewer, when the worker runs out of slots to begin): slot_handover.py.
WAKE_EVERY = 4
# AONODE_WASM_AHEAD: "0" one slot at a time, "1" on the worker thread, "batches"; unset: as pace.py measures
SWITCH = "AONODE_WASM_AHEAD"
BATCHES = "batches"


class Choice(Protocol):
    """Whether the next slots should run their wasm ahead on the worker thread (True) or in batches
    on the compute thread (asked before each slot is begun, between `start` and `stop`: one
    backlog); told of each slot finished and which way its wasm ran."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ahead_pays(self) -> bool: ...
    def finished(self, ahead: bool) -> None: ...


@dataclass(frozen=True)
class _Fixed:
    threaded: bool

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def ahead_pays(self) -> bool:
        return self.threaded

    def finished(self, ahead: bool) -> None:
        pass


def choice(state: ProcessState) -> Choice:
    """The process's choice: measured (its own pace.Pace), or fixed by AONODE_WASM_AHEAD (1: on the
    worker thread, batches: in batches on the compute thread)."""
    switch = os.environ.get(SWITCH)
    if switch in ("1", BATCHES):
        return _Fixed(switch == "1")
    if state.pace is None:
        state.pace = Pace()
    return state.pace


class Slots(Protocol):
    """What process@1.0 does for one slot, in the two halves this module runs apart."""

    def prepare(self, state: ProcessState, ctx: SlotContext) -> None: ...
    def begin(self, state: ProcessState, ctx: SlotContext) -> Signal: ...
    def finish(
        self, state: ProcessState, ctx: SlotContext, signal: Signal, cache: Future[JsonObject] | None = None
    ) -> Signal: ...
    def snapshot_due(self, state: ProcessState, slot: int) -> bool: ...
    def snapshot_before_cache(self, state: ProcessState, slot: int) -> Future[JsonObject]: ...


def runs_ahead(state: ProcessState) -> bool:
    """Whether a backlog of this process may run its wasm ahead (AONODE_WASM_AHEAD=0 turns it off, for
    comparisons: bench/bench_process.py)."""
    stack = state.stack
    return (
        os.environ.get(SWITCH, "1") != "0"
        and isinstance(stack, Stack)
        and stack.mode == "fold"
        and all(getattr(device, "name", None) in AHEAD_SAFE for device in stack.devices)
    )


@dataclass
class _Begun:
    """A slot's first pass as the worker left it: its signal, or the error it raised; `cache` set when
    a snapshot of the memory at this slot was copied and waits for the slot's cache."""

    ctx: SlotContext
    signal: Signal | None = None
    error: BaseException | None = None
    cache: Future[JsonObject] | None = None


def _begin(slots: Slots, state: ProcessState, ctx: SlotContext) -> _Begun:
    """A slot's first pass, and its snapshot's memory copy when one is due at it."""
    begun = _Begun(ctx)
    try:
        begun.signal = slots.begin(state, ctx)
        slot = ctx.slot
        assert slot is not None
        if ctx.snapshot_mode is SnapshotMode.BACKGROUND and slots.snapshot_due(state, slot):
            begun.cache = slots.snapshot_before_cache(state, slot)
    except BaseException as err:  # noqa: BLE001 - handed to the compute thread, raised there
        begun.error = err
    return begun


@dataclass
class _Worker:
    """The thread running first passes in order, from `inputs` (None: no more) to `outputs`."""

    slots: Slots
    state: ProcessState
    inputs: SimpleQueue[SlotContext | None] = field(default_factory=SimpleQueue)
    outputs: Handover[_Begun] = field(default_factory=lambda: Handover(WAKE_EVERY))
    stop: bool = False  # set by the compute thread: begin nothing more
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Its thread runs, with the GIL handed over sooner while it does (gil_handover.py)."""
        thread = threading.Thread(target=self._run, name="aonode-wasm-ahead", daemon=True)
        gil_handover.hold()
        try:
            thread.start()
        except BaseException:
            gil_handover.release()
            raise
        self.thread = thread

    def put(self, ctx: SlotContext | None) -> None:
        """The next slot to begin; None: no more (the last few begun go over one at a time, so the
        backlog's end does not wait for WAKE_EVERY slots' post-processing after its last wasm call)."""
        self.inputs.put(ctx)
        if ctx is None:
            self.outputs.hurry()

    def get(self) -> _Begun:
        return self.outputs.get()

    def _run(self) -> None:
        slots, state, inputs, outputs = self.slots, self.state, self.inputs, self.outputs
        try:
            while True:
                if inputs.empty():
                    outputs.ready()  # about to wait for the compute thread: it gets what is begun
                ctx = inputs.get()
                if ctx is None or self.stop:
                    return
                begun = _begin(slots, state, ctx)
                outputs.put(begun)
                if begun.error is not None:
                    return  # the memory is as before this slot (or past it, if only its snapshot failed)
        finally:
            outputs.ready()

    def end(self) -> list[_Begun]:
        """Stop after the slot under way; what it began and nobody finished."""
        self.stop = True
        self.inputs.put(None)
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            gil_handover.release()
        return self.outputs.drain()


@dataclass
class _Batches:
    """The worker's part on the compute thread itself: once every slot begun is finished, all the
    slots handed over since (up to AHEAD) are begun in a row. Why: a slot's wasm call and its
    post-processing each find the caches as the other left them (parse_result takes ~1.6x as long
    right after a wasm call as right after itself); in batches, wasm runs after wasm and Python
    after Python, with no second thread."""

    slots: Slots
    state: ProcessState
    inputs: deque[SlotContext | None] = field(default_factory=deque)
    outputs: deque[_Begun] = field(default_factory=deque)
    stop: bool = False

    def start(self) -> None:
        pass

    def put(self, ctx: SlotContext | None) -> None:
        self.inputs.append(ctx)

    def get(self) -> _Begun:
        if not self.outputs:
            while self.inputs and not self.stop:
                ctx = self.inputs.popleft()
                if ctx is None:
                    self.stop = True
                    break
                begun = _begin(self.slots, self.state, ctx)
                self.outputs.append(begun)
                self.stop = begun.error is not None  # the memory is as before it: begin nothing more
        return self.outputs.popleft()

    def end(self) -> list[_Begun]:
        """What was begun and not finished (nothing more is begun)."""
        self.stop = True
        left = list(self.outputs)
        self.outputs.clear()
        return left


def compute_ahead(
    slots: Slots,
    state: ProcessState,
    contexts: Iterator[SlotContext],
    done: Callable[[], None],
    choose: Choice | None = None,
) -> None:
    """Compute the slots `contexts` gives, in order, their first passes up to `AHEAD` slots ahead of
    the ones finished here: on a worker thread while `choose` says that pays, else in batches here;
    `done` after each finished slot. The objects older than the backlog are left to the collector
    until it ends (frozen_heap.py)."""
    choose = choose if choose is not None else choice(state)
    choose.start()
    try:
        with frozen_heap():
            threaded = choose.ahead_pays()
            while _compute_ahead(slots, state, contexts, done, choose, threaded):
                threaded = not threaded
    finally:
        choose.stop()


def _compute_ahead(
    slots: Slots,
    state: ProcessState,
    contexts: Iterator[SlotContext],
    done: Callable[[], None],
    choose: Choice,
    threaded: bool,
) -> bool:
    """Compute slots with their wasm ahead (on the worker thread, or in batches here) until `choose`
    says the other way (True: the slots begun are finished, the rest are left in `contexts`) or
    there are no more."""
    worker: _Worker | _Batches = _Worker(slots, state) if threaded else _Batches(slots, state)
    worker.start()
    in_flight, sent, exhausted, switched = 0, 0, False, False
    failure: Exception | None = None

    def feed() -> None:
        nonlocal in_flight, sent, failure, exhausted, switched
        while not exhausted and in_flight < AHEAD:
            if sent and choose.ahead_pays() != threaded:  # one slot a way at least: a choice may flip at every ask
                switched = exhausted = True
                worker.put(None)
                return
            try:
                ctx = next(contexts, None)
            except Exception as err:  # noqa: BLE001 - raised once the slots before it are finished
                ctx, failure = None, err
            if ctx is None:
                exhausted = True
                worker.put(None)
                return
            try:
                slots.prepare(state, ctx)
            except Exception:  # noqa: BLE001 - left to pass 1, which raises it in the slot's turn
                ctx.wasm_input = None
            worker.put(ctx)
            in_flight, sent = in_flight + 1, sent + 1

    try:
        feed()
        while in_flight:
            begun = worker.get()
            in_flight -= 1
            if begun.error is not None:
                if begun.signal is not None:  # its wasm call ran; only its snapshot failed
                    state.stale = True
                raise begun.error
            feed()
            try:
                assert begun.signal is not None
                slots.finish(state, begun.ctx, begun.signal, begun.cache)
            except BaseException as err:
                if begun.cache is not None and not begun.cache.done():
                    begun.cache.set_exception(err)  # that snapshot is not stored
                raise
            choose.finished(threaded)
            done()
        if failure is not None:
            raise failure
        return switched
    finally:
        for left in worker.end():  # slots that ran past one that failed: memory past `at_slot`
            if left.cache is not None:
                left.cache.set_exception(RuntimeError("an earlier slot failed"))
            if left.signal is not None:
                state.stale = True
