"""gil_handover: the GIL switch interval is short while a backlog's wasm-ahead worker runs (so the
worker back from wasm does not wait for a whole slot of the compute thread), and the process's own
interval is back once the last worker has ended."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.devices import gil_handover
from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.gil_handover import SWITCH_INTERVAL
from aonode.engine.devices.wasm_ahead import BATCHES, SWITCH
from tests.helpers.nodeutil import definition, eval_msg, make_node


@pytest.fixture(autouse=True)
def own_interval() -> Iterator[float]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.004)  # not the default, so "put back" is not "set to the default"
    yield 0.004
    sys.setswitchinterval(before)


def test_nested_and_concurrent_holders_share_one_short_interval() -> None:
    gil_handover.hold()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    others = [threading.Thread(target=lambda: (gil_handover.hold(), gil_handover.release())) for _ in range(8)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # the first holder still holds it
    gil_handover.release()
    assert sys.getswitchinterval() == pytest.approx(0.004)


class Interval:
    """A device after the stack that notes the switch interval while each slot is finished."""

    name = "interval@1.0"

    def __init__(self) -> None:
        self.seen: list[float] = []

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        self.seen.append(sys.getswitchinterval())
        return Signal.OK


@pytest.mark.parametrize("way", ["1", BATCHES])
def test_the_interval_is_short_only_while_the_worker_runs(
    tmp_path: Path, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SWITCH, way)
    node = make_node(tmp_path / "node")
    seen = Interval()
    node.processes.after = [*node.processes.after, seen]
    pid = node.spawn(definition())["process"]
    for n in range(6):
        node.schedule(pid, eval_msg(pid, "return 1", nonce=str(n)))
    node.now(pid)
    node.close()
    short = SWITCH_INTERVAL if way == "1" else 0.004  # in batches no worker runs: the interval is left alone
    assert seen.seen == pytest.approx([short] * len(seen.seen)) and len(seen.seen) == 7
    assert sys.getswitchinterval() == pytest.approx(0.004)


def test_an_interval_another_module_set_meanwhile_is_left_as_it_set_it() -> None:
    """Put back is the holders' own change only: a value set by someone else while a worker ran is
    theirs to keep (it was overwritten with the interval from before the worker)."""
    gil_handover.hold()
    sys.setswitchinterval(0.02)
    gil_handover.release()
    assert sys.getswitchinterval() == pytest.approx(0.02)
    gil_handover.hold()  # and the next worker shortens it again, then puts that value back
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    gil_handover.release()
    assert sys.getswitchinterval() == pytest.approx(0.02)
