"""A capped process's backlog (a message past its Compute-Limit among Transfers, a handler error, a
memory bomb) computed with its wasm ahead, in batches, or switching between the two at every slot,
gives what one slot at a time gives: the same views and the same memory sha256 at every slot; and no
wasm-ahead worker is left running, nor the GIL's switch interval left short, once it is computed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import aonode.engine.devices.wasm_ahead as wasm_ahead
from aonode.engine.devices.wasm_ahead import BATCHES, SWITCH
from aonode.engine.message import Message
from aonode.engine.node import Node
from tests.helpers.backlog import RECIPIENT, TOKEN, live_memory, recording, views
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

pytestmark = pytest.mark.slow  # backlogs on the real aos2_0_6 image

CAPPED = definition(
    ("Cache-Frequency", "1"), ("Memory-Limit", "192-mb"), ("Compute-Limit", "300000000"), ("Name", "capped")
)


def capped_backlog(pid: str) -> list[Message]:
    messages = [
        action(pid, "Transfer", ("Recipient", RECIPIENT), ("Quantity", str(1 + i % 3)), nonce=str(i)) for i in range(9)
    ]
    messages.insert(2, eval_msg(pid, "local n = 0 while true do n = n + 1 end", nonce="spin"))
    messages.insert(5, action(pid, "Boom", nonce="boom"))
    messages.insert(7, eval_msg(pid, "local n = 0 while true do n = n + 1 end", nonce="spin again"))
    messages.insert(9, eval_msg(pid, "local s = string.rep('x', 256 * 1024 * 1024) return #s", nonce="bomb"))
    return messages


def _spawned(node: Node) -> str:
    pid = node.spawn(CAPPED)["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    return pid


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict[int, str]]:
    """(views, live memory after every slot) computed one slot at a time."""
    node = make_node(tmp_path_factory.mktemp("one") / "node")
    pid = _spawned(node)
    memory_at = {}
    for slot in (0, 1):
        node.compute(pid, slot)
        memory_at[slot] = live_memory(node, pid)
    for message in capped_backlog(pid):
        slot = node.schedule(pid, message)["slot"]
        node.compute(pid, slot)
        memory_at[slot] = live_memory(node, pid)
    run = views(node, pid), memory_at
    node.close()
    errors = [v["results"].get("Error") or "" for v in run[0]]
    assert sum("ComputeLimitExceeded" in e for e in errors) == 2 and any("MemoryLimitExceeded" in e for e in errors)
    return run


class EverySlot:
    """Switches way after every slot finished (as pace.Pace, which changes its mind only there),
    starting on the worker thread."""

    def __init__(self) -> None:
        self.ahead = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def ahead_pays(self) -> bool:
        return self.ahead

    def finished(self, ahead: bool) -> None:
        self.ahead = not self.ahead


@pytest.mark.parametrize("way", ["1", BATCHES, "switching"])
def test_a_capped_backlog_is_the_same_at_every_slot_whatever_the_way(
    tmp_path: Path, reference: tuple[list[dict], dict[int, str]], way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if way == "switching":
        monkeypatch.delenv(SWITCH, raising=False)
        monkeypatch.setattr(wasm_ahead, "choice", lambda state: EverySlot())
    else:
        monkeypatch.setenv(SWITCH, way)
    interval = sys.getswitchinterval()
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = _spawned(node)
    node.now(pid)
    for message in capped_backlog(pid):
        node.schedule(pid, message)
    node.now(pid)
    assert not any(t.name.startswith("aonode-wasm-ahead") for t in threading.enumerate())
    assert sys.getswitchinterval() == interval
    expected_views, memory_at = reference
    assert views(node, pid) == expected_views
    assert seen.snapshots and all(sha == memory_at[slot] for slot, sha in seen.snapshots)
    assert {slot for slot, _ in seen.snapshots} >= set(memory_at) - {0, 1}
    assert live_memory(node, pid) == memory_at[max(memory_at)]
    node.close()
