"""An image's fast variant that becomes ready while a backlog runs its wasm calls ahead (engine/devices/
wasm_ahead.py): the worker thread owns the instance then, and the move to the variant (a checkpoint, then
a fresh instance from it, engine/wasm/instance.py) happens there, between two of its calls. The views,
every stored snapshot and the live memory are those of the same messages run one at a time on the image
itself; and a runaway message on the worker still meets its deadline."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.wasm_ahead import AHEAD, SWITCH
from aonode.engine.wasm import Flavor, forget_compiled
from aonode.engine.wasm.builds import preparation_lock
from tests.helpers.backlog import EVERY_SLOT, AtSlot, check_same, one_at_a_time, recording, setup
from tests.helpers.images import image_path
from tests.helpers.nodeutil import definition, eval_msg, make_node, output
from tests.helpers.threads import started

pytestmark = pytest.mark.slow  # the backlog twice, and a first use of aos2_0_6 that prepares its variant


@pytest.fixture(autouse=True)
def always_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """These backlogs run their wasm ahead whatever pace.py would choose."""
    monkeypatch.setenv(SWITCH, "1")


PREPARE_SECONDS = 900  # deriving a variant on a loaded 2-core machine (as tests/test_variant_background.py)
READY_AT = 3  # the slot being finished when the variant is let through: the worker is AHEAD slots past it


def test_a_variant_ready_mid_backlog_moves_the_worker_and_leaves_the_same_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AONODE_FAST_VARIANT", "0")
    reference = one_at_a_time(tmp_path / "original", EVERY_SLOT)  # every message on the image itself
    monkeypatch.delenv("AONODE_FAST_VARIANT")
    held = preparation_lock(hashlib.sha256(image_path("aos2_0_6.wasm").read_bytes()).hexdigest())
    forget_compiled()  # a first use in this process: metered now, the variant prepared in the background
    held.acquire()  # as if another preparation were running: the variant waits until let through
    node = make_node(tmp_path / "node")
    let_through = False
    try:
        seen = recording(node)
        ran: dict[int, tuple[Flavor, str]] = {}  # slot -> (the flavour its wasm call ran on, the thread)
        begin = node.processes.begin

        def begin_noting(state: ProcessState, ctx: SlotContext) -> Signal:
            signal = begin(state, ctx)
            assert state.instance is not None and ctx.slot is not None
            ran[ctx.slot] = (state.instance._itinerary.current, threading.current_thread().name)
            return signal

        pid = setup(node)  # spawned and booted on the metered build; the backlog scheduled, not computed
        node.processes.begin = begin_noting  # type: ignore[method-assign]
        image = node.images.load("aos2_0_6")
        assert image.preparing and image.variant is None

        def variant_ready() -> None:  # on the compute thread, finishing READY_AT: the worker is ahead
            nonlocal let_through
            end = time.monotonic() + 60
            while READY_AT + AHEAD not in ran and time.monotonic() < end:
                time.sleep(0.01)
            held.release()
            let_through = True
            assert image.wait_variant(PREPARE_SECONDS) and image.variant is not None

        node.processes.after = [*node.processes.after, AtSlot(READY_AT, variant_ready)]
        node.now(pid)
        last = node.slot(pid)["current"]
        assert set(ran) == set(range(2, last + 1))
        assert all(thread.startswith("aonode-wasm-ahead") for _, thread in ran.values())
        assert [ran[slot][0] for slot in sorted(ran)] == [Flavor.METERED] * (READY_AT + AHEAD - 1) + [
            Flavor.VARIANT
        ] * (last - READY_AT - AHEAD)  # begun ahead on the metered build, then moved by the worker
        check_same(node, pid, reference, seen)
    finally:
        if not let_through:
            held.release()
        node.close()
        forget_compiled()


def test_a_runaway_message_on_the_wasm_ahead_thread_meets_its_deadline(tmp_path: Path) -> None:
    """The variant's loops stop at an interrupt flag the epoch ticker sets, and the ticker sleeps while no
    call holds a deadline: a call on the worker thread must hold one too, or a backlog never ends."""
    node = make_node(tmp_path / "node")
    try:
        assert node.images.load("aos2_0_6").wait_variant(PREPARE_SECONDS)
        pid = node.spawn(definition(("Compute-Limit", "10000000000"), ("Name", "runaway")))["process"]
        for n in range(20):  # until the instance is home on the variant (a slow first message runs metered)
            node.schedule(pid, eval_msg(pid, "X = 1; return X", nonce=f"warm {n}"))
            node.now(pid)
            with node.live.lock(pid):
                instance = node.live.state(pid).instance
                assert instance is not None
                if instance.flavor == Flavor.VARIANT:
                    break
        assert instance.flavor == Flavor.VARIANT
        seen = recording(node)
        codes = ["X = X + 1; return X", "while true do end", "X = X + 1; return X", "return X"]
        first = node.schedule(pid, eval_msg(pid, codes[0], nonce="0"))["slot"]
        for n, code in enumerate(codes[1:], 1):
            node.schedule(pid, eval_msg(pid, code, nonce=str(n)))
        started(lambda: node.now(pid), "computing").join(300, "the runaway message was never stopped")
        results = [node.compute(pid, slot)["results"] for slot in range(first, first + len(codes))]
        assert "ComputeLimitExceeded" in (results[1]["Error"] or "")  # redone metered after its deadline
        assert [output({"results": r}) for r in results] == ["2", "", "3", "3"]
        assert seen.begun_on == ["aonode-wasm-ahead"] * len(codes)
    finally:
        node.close()
