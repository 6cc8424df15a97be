"""stack@1.0 semantics with small real devices: fold order, skip, pass, map, missing keys."""
from __future__ import annotations

import pytest

from aonode.engine.devices.base import ProcessState, Signal
from aonode.engine.devices.stack import Stack
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

OWNER = "o" * 43


class Append:
    """Appends its letter to state.scratch['trace'] on compute; optionally signals."""

    def __init__(self, letter: str, signal: Signal = Signal.OK, until_pass: int = 0) -> None:
        self.name, self.letter, self.signal, self.until_pass = f"{letter}@1.0", letter, signal, until_pass

    def compute(self, state: ProcessState, msg: Message) -> Signal:
        state.scratch.setdefault("trace", []).append(f"{self.letter}{state.pass_}")
        if self.signal is Signal.PASS:
            return Signal.PASS if state.pass_ < self.until_pass else Signal.OK
        return self.signal


class InitOnly:
    name = "init-only@1.0"

    def init(self, state: ProcessState, msg: Message) -> Signal:
        state.scratch["inited"] = True
        return Signal.OK


@pytest.fixture
def state() -> ProcessState:
    process = Message.create(owner=OWNER, tags=(("Type", "Process"),))
    return ProcessState(process_id=process.id, process=process)


def msg() -> Message:
    return Message.create(owner=OWNER, tags=(("Action", "Eval"),), data="1")


def test_fold_runs_devices_in_order(state: ProcessState) -> None:
    assert Stack([Append("a"), Append("b"), Append("c")]).compute(state, msg()) is Signal.OK
    assert state.scratch["trace"] == ["a1", "b1", "c1"]


def test_fold_skip_stops_early(state: ProcessState) -> None:
    assert Stack([Append("a"), Append("b", Signal.SKIP), Append("c")]).compute(state, msg()) is Signal.SKIP
    assert state.scratch["trace"] == ["a1", "b1"]


def test_fold_pass_restarts_from_first_device(state: ProcessState) -> None:
    Stack([Append("a"), Append("b", Signal.PASS, until_pass=3), Append("c")]).compute(state, msg())
    assert state.scratch["trace"] == ["a1", "b1", "a2", "b2", "a3", "b3", "c3"]


def test_fold_pass_is_bounded(state: ProcessState) -> None:
    with pytest.raises(BadInput, match="passes"):
        Stack([Append("a", Signal.PASS, until_pass=100)], max_passes=4).compute(state, msg())


def test_device_without_key_is_skipped(state: ProcessState) -> None:
    stack = Stack([InitOnly(), Append("a")])
    stack.compute(state, msg())
    assert state.scratch == {"trace": ["a1"]}
    stack.init(state, msg())
    assert state.scratch["inited"] is True


def test_map_calls_every_device(state: ProcessState) -> None:
    outcome = Stack([Append("a", Signal.SKIP), InitOnly(), Append("b")], mode="map").run("compute", state, msg())
    assert outcome == {0: Signal.SKIP, 1: None, 2: Signal.OK}
    assert state.scratch["trace"] == ["a1", "b1"]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(BadInput, match="mode"):
        Stack([], mode="spiral")
