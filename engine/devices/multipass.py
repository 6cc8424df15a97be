"""multipass@1.0: makes the stack run again until the process's pass count is reached.

Some stacks need two sweeps over the same message: the AOS stack encodes and runs `handle` on
pass 1 and decodes and patches on pass 2. As in the reference, this device answers PASS while
`pass < passes`, and OK after that. `passes` comes from the process definition's `Passes` tag;
without it we default to 2, because multipass only sits in a stack to make a second pass (the
reference's default of 1 would make the device a no-op).
"""

from __future__ import annotations

from dataclasses import dataclass

from aonode.engine.devices.base import DeviceInfo, ProcessState, Signal, SlotContext
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

NAME = "multipass@1.0"
INFO = DeviceInfo(NAME, ("init", "compute"), about="runs the stack again until the Passes count")
DEFAULT_PASSES = 2


def passes_of(process: Message) -> int:
    raw = process.tag("Passes")
    if raw is None:
        return DEFAULT_PASSES
    try:
        passes = int(raw.strip())
    except ValueError as err:
        raise BadInput(f"Passes must be an integer, got {raw!r:.40}") from err
    if passes < 1:
        raise BadInput(f"Passes must be at least 1, got {passes}")
    return passes


@dataclass(frozen=True)
class Multipass:
    name: str = NAME

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal:
        passes_of(state.process)  # refuse a bad definition before any message runs
        return Signal.OK

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        return Signal.PASS if ctx.pass_ < passes_of(state.process) else Signal.OK
