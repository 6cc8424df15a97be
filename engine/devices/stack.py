"""stack@1.0: composes devices so a process's execution is a list of names, not code.

fold: call one key on each device in order, threading the same state and context; `SKIP` ends the
fold early, `PASS` restarts from the first device with `ctx.pass_ + 1` (bounded by `max_passes`).
map: call the key on every device independently and collect `{index: signal}` (`run` only; the
four keys answer OK whatever the devices said).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aonode.engine.devices.base import KEYS, DeviceInfo, Key, ProcessState, Signal, SlotContext, call_key
from aonode.engine.errors import BadInput

MODES = ("fold", "map")
INFO = DeviceInfo("stack@1.0", KEYS, stackable=False, about="runs a list of devices as one")


@dataclass
class Stack:
    devices: Sequence[object]
    mode: str = "fold"
    max_passes: int = 8
    name: str = field(default=INFO.name, init=False)
    _bound: dict[str, list[Key]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadInput(f"stack mode must be one of {MODES}, not {self.mode!r}")

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def run(self, key: str, state: ProcessState, ctx: SlotContext) -> Signal | dict[int, Signal | None]:
        if self.mode == "map":
            return {i: call_key(d, key, state, ctx) for i, d in enumerate(self.devices)}
        return self.later_passes(key, state, ctx, self.first_pass(key, state, ctx))

    def first_pass(self, key: str, state: ProcessState, ctx: SlotContext) -> Signal:
        """Pass 1 of a fold alone (the AOS stack runs the wasm call in it): a backlog runs the next
        slot's first pass while this slot's later passes run (devices/wasm_ahead.py)."""
        ctx.pass_ = 1
        return self._fold_once(key, state, ctx)

    def prepare(self, state: ProcessState, ctx: SlotContext) -> None:
        """The devices' `prepare`: pass-1 work that reads only the message and the definition, done
        before pass 1 and on another thread (json-iface encodes; devices/wasm_ahead.py)."""
        for fn in self._keys("prepare"):
            fn(state, ctx)

    def later_passes(self, key: str, state: ProcessState, ctx: SlotContext, outcome: Signal) -> Signal:
        """The passes after the one that answered `outcome`, while a device asks for another."""
        while outcome is Signal.PASS:
            if ctx.pass_ >= self.max_passes:
                raise BadInput(f"stack asked for more than {self.max_passes} passes")
            ctx.pass_ += 1
            outcome = self._fold_once(key, state, ctx)
        return outcome

    def _fold_once(self, key: str, state: ProcessState, ctx: SlotContext) -> Signal:
        for fn in self._keys(key):
            signal = fn(state, ctx)
            if signal is Signal.SKIP or signal is Signal.PASS:
                return signal
        return Signal.OK

    def _keys(self, key: str) -> list[Key]:
        """The devices' `key` methods in order (those without it left out), looked up once: a
        fold runs twice per slot of every AOS process."""
        fns = self._bound.get(key)
        if fns is None:
            fns = self._bound[key] = [fn for fn in (getattr(d, key, None) for d in self.devices) if fn is not None]
        return fns

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal:
        return self._as_signal(self.run("init", state, ctx))

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        return self._as_signal(self.run("compute", state, ctx))

    def snapshot(self, state: ProcessState, ctx: SlotContext) -> Signal:
        return self._as_signal(self.run("snapshot", state, ctx))

    def normalize(self, state: ProcessState, ctx: SlotContext) -> Signal:
        return self._as_signal(self.run("normalize", state, ctx))

    @staticmethod
    def _as_signal(outcome: Signal | dict[int, Signal | None]) -> Signal:
        return outcome if isinstance(outcome, Signal) else Signal.OK
