"""Fidelity: what a process sees on aonode is what it would see on the network (issue 16).

A token sequence from several senders runs through a served node; then the real ao-loader replays the
node's own `/schedule` (message bodies plus the assignment fields, as a legacy CU builds them) and
must give the same Output, Messages (patch messages aside), Error and whole-memory sha256 at every
slot. The process sees the module's transaction id (not the catalogue name) and the gateway's block
height, and the legacy `/result` answers exactly a legacy CU's keys.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.server.chainwatch import watch_chain
from aonode.server.compose import make_node
from tests.helpers.httpnode import HttpNode, http_node
from tests.helpers.images import image_path
from tests.helpers.loopback import Reply, Request, json_reply, loopback

pytestmark = [pytest.mark.slow, pytest.mark.peers]  # a served node, then ao-loader under node

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "aoloader_run.cjs"
MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"  # aos2_0_6 as published on Arweave
HEIGHT = 1_534_207
BLOCK = "B" * 64

TOKEN = """
Balances = Balances or { [ao.id] = 1000, [Owner] = 500 }
Ticker = 'FID'
local function patch() Send({ device = 'patch@1.0', cache = { balances = Balances } }) end
Handlers.add('Info', 'Info', function(m)
  m.reply({ Ticker = Ticker, Name = 'Fidelity', Denomination = '0' })
end)
Handlers.add('Balance', 'Balance', function(m)
  local who = m.Tags.Target or m.From
  m.reply({ Balance = tostring(Balances[who] or 0), Account = who, Data = tostring(Balances[who] or 0) })
end)
Handlers.add('Transfer', 'Transfer', function(m)
  local qty = tonumber(m.Quantity)
  if (Balances[m.From] or 0) < qty then
    m.reply({ Action = 'Transfer-Error', Error = 'Insufficient Balance!' })
    return
  end
  Balances[m.From] = Balances[m.From] - qty
  Balances[m.Recipient] = (Balances[m.Recipient] or 0) + qty
  m.reply({ Action = 'Debit-Notice', Recipient = m.Recipient, Quantity = tostring(qty) })
  Send({ Target = m.Recipient, Action = 'Credit-Notice', Sender = m.From, Quantity = tostring(qty) })
  patch()
end)
Handlers.add('Mint', 'Mint', function(m)
  assert(m.From == Owner, 'only the owner mints')
  Balances[m.From] = (Balances[m.From] or 0) + tonumber(m.Quantity)
  print('minted ' .. m.Quantity)
  patch()
end)
Handlers.add('Burn', 'Burn', function(m)
  local qty = tonumber(m.Quantity)
  assert((Balances[m.From] or 0) >= qty, 'not enough to burn')
  Balances[m.From] = Balances[m.From] - qty
  print('burned ' .. qty)
  patch()
end)
patch()
"""


def _chain_tip(request: Request) -> Reply:
    """An Arweave gateway on loopback that knows only its chain tip."""
    info = {"network": "arweave.N.1", "height": HEIGHT, "current": BLOCK}
    return json_reply(info, 200 if request.path == "/info" else 404)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with loopback(_chain_tip) as url:
        yield url


def _signed(c: httpx.Client, pid: str, wallet: Wallet, tags: list[tuple[str, str]], data: str = "") -> int:
    item = build_and_sign(wallet, data=data, tags=tags, target=pid, anchor="A" * 32)
    r = c.post(f"/{pid}~process@1.0/schedule", content=item.raw, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    return r.json()["slot"]


def _unsigned(c: httpx.Client, pid: str, tags: dict[str, str], data: str = "") -> int:
    r = c.post(f"/{pid}~process@1.0/schedule", json={**tags, "data": data})
    assert r.status_code == 200, r.text
    return r.json()["slot"]


def _memory_at(c: httpx.Client, pid: str, slot: int) -> str:
    assert c.get(f"/{pid}~process@1.0/now", headers={"Accept": "application/json"}).status_code == 200
    snap = c.get(f"/{pid}~process@1.0/snapshot", headers={"Accept": "application/json"}).json()
    assert snap["slot"] == slot
    return snap["memory-sha256"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, gateway: str) -> Iterator[tuple[HttpNode, str, dict[int, str]]]:
    """The node after the whole sequence, the process id and the memory sha256 after every slot."""
    alice, bob = Wallet.generate("ed25519"), Wallet.generate("ed25519")
    with http_node(tmp_path_factory.mktemp("fidelity")) as srv:
        stop = watch_chain(srv.node, gateway, every=3600)
        try:
            with srv.client() as c:
                for _ in range(100):
                    if c.get("/~meta@1.0/info").json().get("block-height") == HEIGHT:
                        break
                    threading.Event().wait(0.05)
                r = c.post("/~process@1.0/schedule", json={
                    "Tags": [{"name": "Module", "value": "aos2_0_6"}, {"name": "Name", "value": "fidelity"},
                             {"name": "On-Boot", "value": "Data"}], "Data": TOKEN})
                assert r.status_code == 200, r.text
                pid = r.json()["process"]
                memory = {0: _memory_at(c, pid, 0)}
                steps = [
                    lambda: _signed(c, pid, alice, [("Action", "Info")]),
                    lambda: _signed(c, pid, bob, [("Action", "Balance"), ("Target", srv.node.address)]),
                    lambda: _unsigned(c, pid, {"Action": "Transfer", "Recipient": alice.address, "Quantity": "120"}),
                    lambda: _signed(c, pid, bob, [("Action", "Transfer"), ("Recipient", alice.address),
                                                  ("Quantity", "5")]),
                    lambda: _unsigned(c, pid, {"Action": "Mint", "Quantity": "75"}),
                    lambda: _signed(c, pid, alice, [("Action", "Burn"), ("Quantity", "20")]),
                    lambda: _signed(c, pid, alice, [("Action", "Mint"), ("Quantity", "1")]),  # not the owner
                    lambda: _unsigned(c, pid, {"Action": "Eval"},
                                      "return ao.env.Module.Id .. ' ' .. ao.env.Process.Tags.Module"),
                    lambda: _unsigned(c, pid, {"Action": "Eval"}, "return Balances"),
                ]
                for step in steps:
                    slot = step()
                    memory[slot] = _memory_at(c, pid, slot)
        finally:
            stop.set()
        yield srv, pid, memory


def _reference(srv: HttpNode, pid: str, tmp_path: Path) -> list[dict]:
    """ao-loader's line per slot, fed from the node's own schedule the way a legacy CU builds messages."""
    with srv.client() as c:
        page = c.get(f"/{pid}~process@1.0/schedule", params={"from": 0}).json()
    definition = page["assignments"][0]["body"]
    env = {"Process": {"Id": pid, "Owner": definition["Owner"], "Tags": definition["Tags"]},
           "Module": {"Id": MODULE_ID, "Tags": []}}
    messages = []
    for a in page["assignments"]:
        msg = {**a["body"], "Target": a["body"]["Target"] or pid, "Module": MODULE_ID,
               "Timestamp": str(a["timestamp"]), "Block-Height": str(a["block-height"]), "Epoch": str(a["epoch"]),
               "Nonce": str(a["slot"]), "Hash-Chain": a["hash-chain"]}
        messages.append({"msg": msg, "env": env})
    path = tmp_path / "messages.json"
    path.write_text(json.dumps({"messages": messages}))
    done = subprocess.run(["node", "--experimental-wasm-memory64", str(PEER), str(image_path("aos2_0_6.wasm")),
                           str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _no_patches(messages: list[dict]) -> list[dict]:
    def is_patch(m: dict) -> bool:
        return any(t["name"].lower() == "device" and t["value"] == "patch@1.0" for t in m.get("Tags", []))
    return [m for m in messages if not is_patch(m)]


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the reference ao-loader")
def test_every_slot_matches_ao_loader(run, tmp_path: Path) -> None:
    srv, pid, memory = run
    reference = _reference(srv, pid, tmp_path)
    assert len(reference) == len(memory) == 10
    assert reference[7]["output"] is None and reference[7]["error"]  # the refused Mint: AOS returns no Output
    with srv.client() as c:
        for slot, ref in enumerate(reference):
            assert "thrown" not in ref, ref
            ours = c.get(f"/{pid}~process@1.0/compute/{slot}", headers={"Accept": "application/json"}).json()
            results = ours["results"]
            assert results["Output"] == ref["output"], slot
            assert _no_patches(results["Messages"]) == _no_patches(ref["messages"]), slot
            assert results["Error"] == ref["error"], slot
            assert memory[slot] == ref["memory_sha256"], slot


def test_the_process_sees_the_module_id_and_the_gateway_height(run) -> None:
    srv, pid, _ = run
    with srv.client() as c:
        assert c.get(f"/{pid}~process@1.0/compute/8/results/data").text == f"{MODULE_ID} {MODULE_ID}"
        definition = c.get(f"/{pid}~process@1.0/init", headers={"Accept": "application/json"}).json()["definition"]
        assert {"name": "Module", "value": MODULE_ID} in definition["Tags"]
        page = c.get(f"/{pid}~process@1.0/schedule", params={"from": 0}).json()["assignments"]
        assert {a["block-height"] for a in page} == {HEIGHT}
        assert {a["block-hash"] for a in page} == {BLOCK}
        clients = [a["body"] for a in page if a["body"]["Owner"] != srv.node.address]  # alice's and bob's items
        assert len(clients) == 5 and all(body["Anchor"] == "A" * 32 for body in clients)  # their anchor, kept


def test_no_output_is_null_as_on_ao_loader(run) -> None:
    srv, pid, _ = run
    with srv.client() as c:
        refused = c.get(f"/{pid}~process@1.0/compute/7", headers={"Accept": "application/json"}).json()
    assert refused["results"]["Output"] is None and "only the owner mints" in refused["results"]["Error"]


def test_legacy_result_has_exactly_a_legacy_cus_keys(run) -> None:
    srv, pid, _ = run
    with srv.client() as c:
        page = c.get(f"/{pid}~process@1.0/schedule", params={"from": 0}).json()["assignments"]
        mint = c.get(f"/result/{page[5]['message']}", params={"process-id": pid}).json()
        failed = c.get(f"/result/{page[7]['message']}", params={"process-id": pid}).json()
    assert set(mint) == {"Output", "Messages", "Spawns", "Assignments", "GasUsed"}
    assert set(failed) == {"Output", "Messages", "Spawns", "Assignments", "GasUsed", "Error"}


def test_the_last_known_height_survives_a_restart_without_a_gateway(run, tmp_path: Path) -> None:
    srv, _, _ = run
    moved = tmp_path / "node"
    moved.mkdir()
    shutil.copy(Path(srv.node.data_dir) / "chain-tip.json", moved / "chain-tip.json")
    node = make_node(moved)  # what the node wrote, read back by a new Node; nothing polls a gateway now
    try:
        assert node.info()["block-height"] == HEIGHT
    finally:
        node.close()
