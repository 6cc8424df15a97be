"""process@1.0 end to end on the real aos2_0_6 image, a real SQLite store and real snapshots."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from aonode.engine.errors import NotFound
from tests.helpers.nodeutil import OTHER, OWNER, action, definition, eval_msg, make_node, output

pytestmark = pytest.mark.slow  # runaway, memory-bomb and restart scenarios on real images

TOKEN = """
Balances = Balances or { [ao.id] = 1000 }
TotalSupply = 1000
local function sync() Send({ device = 'patch@1.0', cache = { balances = Balances, totalsupply = TotalSupply } }) end
Handlers.add('transfer', Handlers.utils.hasMatchingTag('Action', 'Transfer'), function(msg)
  local qty = tonumber(msg.Quantity)
  local from = msg.From
  if (Balances[from] or 0) < qty then
    Send({ Target = from, Action = 'Transfer-Error', Error = 'Insufficient Balance' })
    return
  end
  Balances[from] = Balances[from] - qty
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + qty
  sync()
end)
Balances[Owner] = 500
sync()
return 'token ready'
"""


@pytest.fixture
def node(tmp_path: Path):
    n = make_node(tmp_path / "node")
    yield n
    n.close()


def spawn(node, *tags, data: str = "") -> str:
    return node.spawn(definition(*tags, data=data))["process"]


def test_compute_slots_answer_and_are_cached(node) -> None:
    pid = spawn(node)
    node.schedule(pid, eval_msg(pid, "return 1+1"))
    node.schedule(pid, eval_msg(pid, "return 2+2"))
    assert output(node.compute(pid, 1)) == "2"
    assert node.compute(pid)["at-slot"] == 1  # no slot: last computed, no work
    assert output(node.now(pid)) == "4"
    evaluated = node.slots_evaluated
    assert output(node.compute(pid, 1)) == "2"  # served from the store
    assert node.slots_evaluated == evaluated


def test_a_backlog_longer_than_a_result_batch_stores_every_slot(node) -> None:
    from aonode.engine.devices.process import RESULT_BATCH

    pid = spawn(node)
    count = RESULT_BATCH * 2 + 5
    for n in range(count):
        node.schedule(pid, eval_msg(pid, f"return {n}"))
    assert output(node.now(pid)) == str(count - 1)
    stored = node.store.results(pid, 1, None)
    assert [r["Output"]["data"] for _, r in stored] == [str(n) for n in range(count)]
    evaluated = node.slots_evaluated
    assert output(node.compute(pid, RESULT_BATCH + 1)) == str(RESULT_BATCH)  # read back, not recomputed
    assert node.slots_evaluated == evaluated


def test_unknown_process_and_unscheduled_slot(node) -> None:
    with pytest.raises(NotFound):
        node.compute("x" * 43, 0)
    pid = spawn(node)
    with pytest.raises(NotFound, match="not scheduled"):
        node.compute(pid, 5)


def test_state_survives_snapshot_restore_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = make_node(data)
    pid = spawn(node, ("Cache-Frequency", "2"))
    node.schedule(pid, eval_msg(pid, "X = 42"))
    node.schedule(pid, eval_msg(pid, "return X"))
    assert output(node.now(pid)) == "42"  # slot 2: a snapshot is taken here
    node.schedule(pid, eval_msg(pid, "X = 1337"))
    node.now(pid)
    node.store.close()  # a crash: no snapshot of slot 3 on close

    restarted = make_node(data)
    restarted.schedule(pid, eval_msg(pid, "return X", nonce="after restart"))
    assert output(restarted.now(pid)) == "1337"
    # Only slot 3 (after the slot-2 snapshot) and the new slot 4 were evaluated again.
    assert restarted.slots_evaluated == 2
    restarted.close()


def test_error_keeps_state_and_process_continues(node) -> None:
    pid = spawn(node)
    node.schedule(pid, eval_msg(pid, "Y = 7"))
    node.schedule(pid, eval_msg(pid, "error('boom')"))
    node.schedule(pid, eval_msg(pid, "return Y"))
    assert "boom" in json.dumps(node.compute(pid, 2)["results"])
    assert output(node.now(pid)) == "7"


def test_patch_banana(node) -> None:
    pid = spawn(node)
    node.schedule(pid, eval_msg(pid, "Send({device = 'patch@1.0', cache = { x = 'banana' }})"))
    view = node.now(pid)
    assert view["cache"]["x"] == "banana"
    assert all((m.get("device") or "") != "patch@1.0" for m in view["results"]["Messages"])


def test_token_balances_patched_after_every_transfer(node) -> None:
    pid = spawn(node)
    node.schedule(pid, eval_msg(pid, TOKEN))
    view = node.now(pid)
    assert view["cache"]["totalsupply"] == 1000
    assert view["cache"]["balances"][OWNER] == 500  # keys exactly as the process wrote them
    for n, qty in enumerate((10, 20, 30)):
        node.schedule(pid, action(pid, "Transfer", ("Recipient", OTHER), ("Quantity", str(qty)), nonce=str(n)))
        balances = node.now(pid)["cache"]["balances"]
        received = sum((10, 20, 30)[: n + 1])
        assert balances[OTHER] == received
        assert balances[OWNER] == 500 - received


def test_same_schedule_gives_same_memory_at_every_slot(tmp_path: Path) -> None:
    hashes = []
    for run in ("a", "b"):
        node = make_node(tmp_path / run)
        pid = spawn(node, ("Cache-Frequency", "1"))
        for code in ("X = 1", "X = X + 1", "Handlers.add('p', 'Ping', function(m) Send({Target=m.From, Data='pong'}) end)"):
            node.schedule(pid, eval_msg(pid, code))
        node.schedule(pid, action(pid, "Ping", owner=OTHER))
        node.now(pid)
        hashes.append([node.store.latest_snapshot(pid, slot)[1] for slot in range(5)])
        node.close()
    assert hashes[0] == hashes[1]
    assert len(set(hashes[0])) == 5  # every slot changed memory


def test_cache_keys_limit_what_patches_publish(node) -> None:
    pid = spawn(node, ("Cache-Keys", "Balances, TotalSupply"))
    node.schedule(pid, eval_msg(pid, "Send({device = 'patch@1.0', cache = { balances = { a = 1 }, "
                                     "totalsupply = 1, secret = 'hidden' }})"))
    view = node.now(pid)
    assert view["cache"] == {"balances": {"a": 1}, "totalsupply": 1}
    assert view["results"]["Patch-Ignored"] == ["secret"]


def test_definitions_naming_unknown_devices_or_images_are_refused(node) -> None:
    from aonode.engine.errors import BadInput, ModuleError

    with pytest.raises(BadInput, match="frobnicate@1.0"):
        node.spawn(definition(("Execution-Stack", "json-iface@1.0, frobnicate@1.0, wasm64@1.0")))
    with pytest.raises(BadInput, match="Execution-Device"):
        node.spawn(definition(("Execution-Device", "lua@5.3a")))
    with pytest.raises(ModuleError):
        node.spawn(definition(module="no-such-image"))
    assert node.store.list_processes() == []


def test_documented_and_reference_names_spawn_the_same_process(node) -> None:
    documented = spawn(node, ("Execution-Stack", "json-iface@1.0,wasm64@1.0,patch@1.0"), ("Name", "doc"))
    reference = node.spawn(definition(("Device-Stack", '["json-iface@1.0", "wasm64@1.0", "patch@1.0"]'),
                                      ("Name", "ref")))["process"]
    for pid in (documented, reference):
        node.schedule(pid, eval_msg(pid, "return 6 * 7"))
        assert output(node.now(pid)) == "42"


def test_runaway_and_memory_bomb_become_error_results_and_the_process_goes_on(node) -> None:
    pid = spawn(node, ("Compute-Limit", "2000000000"), ("Memory-Limit", "256-mb"))
    node.schedule(pid, eval_msg(pid, "Kept = 'yes'"))
    node.schedule(pid, eval_msg(pid, "while true do end"))
    node.schedule(pid, eval_msg(pid, "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end"))
    node.schedule(pid, eval_msg(pid, "return Kept"))
    assert output(node.now(pid)) == "yes"
    runaway, bomb = node.compute(pid, 2)["results"], node.compute(pid, 3)["results"]
    assert "ComputeLimitExceeded" in runaway["Error"]
    assert bomb["Error"]  # out of memory: a Lua error or a MemoryLimitExceeded, never a crash


def test_after_a_crash_dry_run_and_snapshot_see_the_last_computed_slot(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = make_node(data)
    pid = spawn(node)
    for n in range(3):
        node.schedule(pid, eval_msg(pid, f"X = {n}"))
    node.now(pid)
    node.store.close()  # crash: the newest snapshot is slot 0
    restarted = make_node(data)
    view = restarted.dry_run(pid, eval_msg(pid, "return X", nonce="dry"))
    assert (view["at-slot"], output(view)) == (3, "2")
    assert restarted.snapshot(pid)["slot"] == 3
    restarted.close()


def test_a_module_tag_never_names_a_file_on_the_node(node, aos_image) -> None:
    from aonode.engine.errors import ModuleError

    with pytest.raises(ModuleError, match="unknown module"):
        node.spawn(definition(module=str(aos_image)))


def test_results_keep_the_whole_aos_output(node) -> None:
    pid = spawn(node)
    node.schedule(pid, eval_msg(pid, "return 1"))
    out = node.now(pid)["results"]["Output"]
    assert out["data"] == "1" and "prompt" in out


def test_unusable_definitions_are_refused_at_spawn(node) -> None:
    from aonode.engine.errors import BadInput

    for bad in (("Cache-Frequency", "often"), ("Passes", "20"), ("Memory-Limit", "lots"), ("Quorum", "5")):
        with pytest.raises(BadInput):
            node.spawn(definition(bad))
    assert node.store.list_processes() == []
