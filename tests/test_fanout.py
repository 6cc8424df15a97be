"""Issue 10 item 8: a message that sends itself two more cannot double the schedule on every read
(real Node, real AOS image): the self-push rate and the per-slot budget cut it, and say so."""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine.devices.base import ProcessConfig
from tests.helpers.nodeutil import definition, eval_msg, make_node, ticking_clock

pytestmark = pytest.mark.slow  # push bombs through a real node

BOMB = ("Handlers.add('Bomb', 'Bomb', function(m) Send({Target = ao.id, Action = 'Bomb'}) "
        "Send({Target = ao.id, Action = 'Bomb'}) end)")
FAN = "for i = 1, 100 do Send({Target = ao.id, Action = 'Noop', N = tostring(i)}) end"


def test_a_doubling_bomb_is_cut_and_reported(tmp_path: Path) -> None:
    node = make_node(tmp_path, clock=ticking_clock(step=2))  # a bomb's messages are assigned ms apart
    try:
        pid = node.spawn(definition(("Authority", node.address)))["process"]
        node.schedule(pid, eval_msg(pid, BOMB))
        node.schedule(pid, eval_msg(pid, "Send({Target = ao.id, Action = 'Bomb'})", nonce="go"))
        for _ in range(10):  # each read computes what the previous one pushed
            view = node.now(pid)
        slots = node.slot(pid)["current"]
        # Unbounded this is 4 -> 1,024+ slots in 9 reads; the self-push bucket allows its burst plus 5/s
        # of assignment time.
        assert slots < 4 + ProcessConfig.self_push_burst + 200, slots
        cut = [node.compute(pid, s)["results"].get("Push-Cut") for s in range(1, view["at-slot"] + 1)]
        assert any(c and "self-rate-exceeded" in c["reasons"] for c in cut)
    finally:
        node.close()


def test_one_slot_pushes_at_most_its_budget(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        other = node.spawn(definition(("Name", "sink")))["process"]
        pid = node.spawn(definition(("Name", "fan")))["process"]
        node.schedule(pid, eval_msg(pid, FAN.replace("ao.id", f"'{other}'")))
        results = node.now(pid)["results"]
        statuses = [row.get("status") for row in results["Pushed"]]
        assert statuses.count("budget-exceeded") == 100 - ProcessConfig.push_max_per_slot
        assert results["Push-Cut"]["count"] == 100 - ProcessConfig.push_max_per_slot
        assert node.slot(other)["current"] == ProcessConfig.push_max_per_slot
    finally:
        node.close()
