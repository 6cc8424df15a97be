"""stack@1.0 semantics with small real devices: fold order, skip, pass, map, missing keys."""
from __future__ import annotations

import pytest

from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.stack import Stack
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

OWNER = "o" * 43


class Append:
    """Appends its letter and the pass to `trace` on compute; optionally signals."""

    def __init__(self, trace: list[str], letter: str, signal: Signal = Signal.OK, until_pass: int = 0) -> None:
        self.name, self.letter, self.signal, self.until_pass = f"{letter}@1.0", letter, signal, until_pass
        self.trace = trace

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        self.trace.append(f"{self.letter}{ctx.pass_}")
        if self.signal is Signal.PASS:
            return Signal.PASS if ctx.pass_ < self.until_pass else Signal.OK
        return self.signal


class InitOnly:
    name = "init-only@1.0"

    def __init__(self, trace: list[str]) -> None:
        self.trace = trace

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal:
        self.trace.append("inited")
        return Signal.OK


@pytest.fixture
def state() -> ProcessState:
    process = Message.create(owner=OWNER, tags=(("Type", "Process"),))
    return ProcessState(process_id=process.id, process=process)


def ctx() -> SlotContext:
    return SlotContext(message=Message.create(owner=OWNER, tags=(("Action", "Eval"),), data="1"))


def test_fold_runs_devices_in_order(state: ProcessState) -> None:
    trace: list[str] = []
    assert Stack([Append(trace, "a"), Append(trace, "b"), Append(trace, "c")]).compute(state, ctx()) is Signal.OK
    assert trace == ["a1", "b1", "c1"]


def test_fold_skip_stops_early(state: ProcessState) -> None:
    trace: list[str] = []
    stack = Stack([Append(trace, "a"), Append(trace, "b", Signal.SKIP), Append(trace, "c")])
    assert stack.compute(state, ctx()) is Signal.SKIP
    assert trace == ["a1", "b1"]


def test_fold_pass_restarts_from_first_device(state: ProcessState) -> None:
    trace: list[str] = []
    Stack([Append(trace, "a"), Append(trace, "b", Signal.PASS, until_pass=3), Append(trace, "c")]).compute(state, ctx())
    assert trace == ["a1", "b1", "a2", "b2", "a3", "b3", "c3"]


def test_fold_pass_is_bounded(state: ProcessState) -> None:
    with pytest.raises(BadInput, match="passes"):
        Stack([Append([], "a", Signal.PASS, until_pass=100)], max_passes=4).compute(state, ctx())


def test_device_without_key_is_skipped(state: ProcessState) -> None:
    trace: list[str] = []
    stack = Stack([InitOnly(trace), Append(trace, "a")])
    stack.compute(state, ctx())
    assert trace == ["a1"]
    stack.init(state, ctx())
    assert trace == ["a1", "inited"]


def test_map_calls_every_device(state: ProcessState) -> None:
    trace: list[str] = []
    stack = Stack([Append(trace, "a", Signal.SKIP), InitOnly(trace), Append(trace, "b")], mode="map")
    outcome = stack.run("compute", state, ctx())
    assert outcome == {0: Signal.SKIP, 1: None, 2: Signal.OK}
    assert trace == ["a1", "b1"]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(BadInput, match="mode"):
        Stack([], mode="spiral")
