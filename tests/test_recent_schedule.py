"""The scheduler's just-committed assignments (engine/devices/recent_schedule.py): computing a backlog
from them leaves exactly what computing it from the store's rows leaves, and what they hold is bounded."""
from __future__ import annotations

from pathlib import Path

from aonode.engine.devices.recent_schedule import RecentSchedule
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.engine.store.base import Assignment
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

TOKEN = """
Balances = Balances or { [Owner] = 1000 }
Handlers.add('Transfer', 'Transfer', function(msg)
  local qty = tonumber(msg.Quantity)
  Balances[msg.From] = Balances[msg.From] - qty
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + qty
  Send({ device = 'patch@1.0', cache = { balances = Balances } })
  Send({ Target = msg.From, Action = 'Debit-Notice', Quantity = msg.Quantity })
end)
"""


def backlog(node: Node, count: int) -> str:
    pid = node.spawn(definition(("Cache-Frequency", "16")))["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    for i in range(count):
        node.schedule(pid, action(pid, "Transfer", ("Recipient", f"R{i % 5}".ljust(43, "x")), ("Quantity", "1"),
                                  nonce=str(i)))
    return pid


def test_a_backlog_from_memory_computes_as_from_the_rows(tmp_path: Path) -> None:
    nodes = [make_node(tmp_path / "memory"), make_node(tmp_path / "rows")]
    nodes[1].processes.recent = None  # every assignment read back from its row and checked
    pids = [backlog(node, 40) for node in nodes]
    assert pids[0] == pids[1]
    pid = pids[0]
    assert len(nodes[0].scheduler.recent) == 42  # held until computed
    views = [node.now(pid) for node in nodes]
    assert views[0]["at-slot"] == views[1]["at-slot"] == 41
    assert len(nodes[0].scheduler.recent) == 0  # taken out as computed
    for slot in range(0, 42):
        assert nodes[0].store.get_result(pid, slot) == nodes[1].store.get_result(pid, slot)
        assert nodes[0].store.get_cache(pid, slot) == nodes[1].store.get_cache(pid, slot)
    assert views[0]["cache"]["balances"] == views[1]["cache"]["balances"]
    assert nodes[0].live.snapshot(pid) == nodes[1].live.snapshot(pid)  # same memory sha256
    for node in nodes:
        node.close()


def held(pid: str, slot: int, data: str = "") -> Assignment:
    msg = Message.create(owner="O" * 43, target=pid, tags=(("Action", "Eval"),), data=data, nonce=str(slot))
    return Assignment(process=pid, slot=slot, message_id=msg.id, timestamp=slot, block_height=0, block_hash=None,
                      epoch=0, hash_chain="x", message=msg)


def test_what_is_held_is_bounded_and_taken_in_slot_order() -> None:
    recent = RecentSchedule(max_assignments=10, max_bytes=1 << 20)
    recent.committed([held("p", s) for s in range(0, 15)])
    assert recent.take("p", 0, 20, 64) == []  # the oldest five went first
    assert [a.slot for a in recent.take("p", 5, 7, 64)] == [5, 6, 7]  # up to `last`
    assert [a.slot for a in recent.take("p", 8, 20, 2)] == [8, 9]  # at most `limit`
    assert [a.slot for a in recent.take("p", 10, 20, 64)] == [10, 11, 12, 13, 14]
    assert recent.take("p", 10, 20, 64) == []  # taken out
    big = RecentSchedule(max_assignments=10, max_bytes=3100)  # two of these fit
    big.committed([held("q", s, data="d" * 1000) for s in range(0, 3)])
    assert [a.slot for a in big.take("q", 0, 9, 64)] == [] and [a.slot for a in big.take("q", 1, 9, 64)] == [1, 2]
