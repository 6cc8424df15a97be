"""stack@1.0: composes devices so a process's execution is a list of names, not code.

fold: call one key on each device in order, threading the same state; `SKIP` ends the fold early,
`PASS` restarts from the first device with `state.pass_ + 1` (bounded by `max_passes`).
map: call the key on every device independently and collect `{index: signal}`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from aonode.engine.devices.base import ProcessState, Signal, call_key
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

MODES = ("fold", "map")


@dataclass
class Stack:
    devices: list[object]
    mode: str = "fold"
    max_passes: int = 8
    name: str = field(default="stack@1.0", init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadInput(f"stack mode must be one of {MODES}, not {self.mode!r}")

    def run(self, key: str, state: ProcessState, msg: Message | None) -> Signal | dict[int, Signal | None]:
        if self.mode == "map":
            return {i: call_key(d, key, state, msg) for i, d in enumerate(self.devices)}
        state.pass_ = 1
        while True:
            outcome = self._fold_once(key, state, msg)
            if outcome is not Signal.PASS:
                return outcome
            if state.pass_ >= self.max_passes:
                raise BadInput(f"stack asked for more than {self.max_passes} passes")
            state.pass_ += 1

    def _fold_once(self, key: str, state: ProcessState, msg: Message | None) -> Signal:
        for device in self.devices:
            signal = call_key(device, key, state, msg)
            if signal in (Signal.SKIP, Signal.PASS):
                return signal
        return Signal.OK

    def init(self, state: ProcessState, msg: Message) -> Signal:
        return self._as_signal(self.run("init", state, msg))

    def compute(self, state: ProcessState, msg: Message) -> Signal:
        return self._as_signal(self.run("compute", state, msg))

    def snapshot(self, state: ProcessState, msg: Message | None = None) -> Signal:
        return self._as_signal(self.run("snapshot", state, msg))

    def normalize(self, state: ProcessState, msg: Message | None = None) -> Signal:
        return self._as_signal(self.run("normalize", state, msg))

    @staticmethod
    def _as_signal(outcome: Signal | dict) -> Signal:
        return outcome if isinstance(outcome, Signal) else Signal.OK
