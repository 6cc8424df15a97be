"""A backlog computed with each slot's wasm call running while the slot before it is finished.

Why: wasmtime-py calls into wasm through ctypes, which lets go of the GIL for the call (a host import
called back from wasm takes it again). So while a worker thread runs slot N+1's first pass
(json-iface encodes the message, wasm64 runs `handle`), the compute thread runs slot N's later passes
(json-iface decodes, patch merges), push and the buffered store writes: with a core free, a backlog
costs about the larger of the two per slot, not their sum. The path may then use two cores.

What stays exactly as computing one slot at a time:
- Every slot is finished (results, patches, pushes, stored rows) on the compute thread, in slot order.
- The worker is at most one slot ahead: slot N+1 is handed to it only once slot N's wasm call has
  returned, so no two threads ever use the instance at once.
- A periodic snapshot's memory is copied between two wasm calls (the memory is then at its slot);
  it is stored with that slot's cache once the slot is finished.
- An error in a slot's first pass surfaces when that slot's turn comes, after the slots before it are
  finished. An error finishing slot N, once N+1 ran ahead, leaves the memory past `at_slot`: the
  state is marked `stale` and its next use restores it from its newest snapshot and recomputes
  (computed results may be recomputed; the schedule is never touched here).
Only stacks whose first pass reads nothing but the message, the definition and the instance run
this way (`AHEAD_SAFE`); any other stack computes one slot at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait as wait_for
from dataclasses import dataclass
from typing import Protocol

from aonode.engine.devices.base import JsonObject, ProcessState, Signal, SlotContext
from aonode.engine.devices.stack import Stack

# Devices whose pass 1 touches only the message, the definition and the live instance: json-iface
# encodes, wasm64 runs `handle`, multipass counts; patch merges only decoded results (pass 2 on).
AHEAD_SAFE = frozenset({"json-iface@1.0", "wasm64@1.0", "multipass@1.0", "patch@1.0"})
WORKERS = 4  # processes computing backlogs at once with their wasm ahead (more wait for a worker)
_WORKER = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aonode-wasm-ahead")


class Slots(Protocol):
    """What process@1.0 does for one slot, in the two halves this module runs apart."""

    def begin(self, state: ProcessState, ctx: SlotContext) -> Signal: ...
    def finish(
        self, state: ProcessState, ctx: SlotContext, signal: Signal, cache: Future[JsonObject] | None = None
    ) -> Signal: ...
    def snapshot_due(self, state: ProcessState, slot: int) -> bool: ...
    def snapshot_before_cache(self, state: ProcessState, slot: int) -> Future[JsonObject]: ...


@dataclass(frozen=True)
class _Begun:
    """A slot whose first pass was handed to the worker."""

    ctx: SlotContext
    signal: Future[Signal]


def runs_ahead(state: ProcessState) -> bool:
    stack = state.stack
    return (
        isinstance(stack, Stack)
        and stack.mode == "fold"
        and all(getattr(device, "name", None) in AHEAD_SAFE for device in stack.devices)
    )


def compute_ahead(slots: Slots, state: ProcessState, contexts: Iterator[SlotContext], done: Callable[[], None]) -> None:
    """Compute the slots `contexts` gives, in order, each one's first pass on the worker while the
    one before it is finished here; `done` after each finished slot."""
    ahead: _Begun | None = None
    try:
        ahead = _begin(slots, state, next(contexts, None))
        while ahead is not None:
            current, ahead = ahead, None
            signal = current.signal.result()  # its error surfaces here, after the slots before it
            failure: Exception | None = None
            try:
                following = next(contexts, None)
            except Exception as err:  # noqa: BLE001 - raised once this slot is finished, as in order
                following, failure = None, err
            slot = current.ctx.slot
            assert slot is not None
            cache = None
            if following is not None and slots.snapshot_due(state, slot):
                cache = slots.snapshot_before_cache(state, slot)  # the memory is at `slot` now
            ahead = _begin(slots, state, following)
            try:
                slots.finish(state, current.ctx, signal, cache)
            except BaseException as err:
                if cache is not None and not cache.done():
                    cache.set_exception(err)  # that snapshot is not stored
                raise
            done()
            if failure is not None:
                raise failure
    finally:
        if ahead is not None:  # a slot ran ahead of one that failed: the memory is past `at_slot`
            wait_for([ahead.signal])
            state.stale = True


def _begin(slots: Slots, state: ProcessState, ctx: SlotContext | None) -> _Begun | None:
    if ctx is None:
        return None
    return _Begun(ctx, _WORKER.submit(slots.begin, state, ctx))
