"""Portable snapshots: a served node's snapshot continues in `aonode eval`, and a bare memory dump from
the real ao-loader (what a legacy CU checkpoint stores) continues here with the same memory sha256."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aonode.engine.aos import ProcessSpec
from aonode.engine.sandbox import OWNER, Sandbox, content_id
from aonode.engine.wasm import read_snapshot
from aonode.modules.catalogue import resolve
from tests.helpers.httpnode import http_node

pytestmark = pytest.mark.slow  # served nodes, the CLI and ao-loader in subprocesses

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "aoloader_run.cjs"
CODE = ["Counter = (Counter or 0) + 41; return Counter", "Counter = Counter + 1; return Counter * 2"]


def eval_cli(*args: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "aonode.server.cli", "eval", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_served_snapshot_continues_in_eval(tmp_path: Path) -> None:
    with http_node(tmp_path / "node") as srv, srv.client() as c:
        spawned = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": "aos2_0_6"}]})
        pid = spawned.json()["process"]
        c.post(f"/{pid}~process@1.0/schedule", json={"Tags": [{"name": "Action", "value": "Eval"}],
                                                    "Data": "Counter = 41; return 'set'"})
        assert c.get(f"/{pid}~process@1.0/now", headers={"accept": "application/json"}).status_code == 200
        snap = c.get(f"/{pid}~process@1.0/snapshot")
        assert snap.status_code == 200 and snap.headers["x-slot"] == "1"
        owner = srv.node.address
        with pytest.raises(httpx.HTTPStatusError):
            c.get(f"/{'U' * 43}~process@1.0/snapshot").raise_for_status()
    path = tmp_path / "downloaded.aosnap"
    path.write_bytes(snap.content)
    assert read_snapshot(snap.content).memory_sha256 == snap.headers["x-memory-sha256"]
    lines = eval_cli("aos2_0_6", "--snapshot-in", str(path), "--owner", owner, "Counter = Counter + 1; return Counter")
    assert lines[0]["output"] == "42" and lines[0]["error"] is None


@pytest.mark.peers
@pytest.mark.skipif(not (shutil.which("node") and PEER.exists()), reason="node or the peer is missing")
def test_ao_loader_memory_dump_continues_here(tmp_path: Path) -> None:
    image = resolve("aos2_0_6")
    spec = ProcessSpec(pid=content_id("process", image.id), owner=OWNER, module_id=image.id, name="aonode-eval")
    messages = [spec.spawn_json()] + [spec.message_json(n, code) for n, code in enumerate(CODE, 1)]
    inputs = tmp_path / "messages.json"
    inputs.write_text(json.dumps({"messages": [{"msg": m, "env": spec.env()} for m in messages]}))
    dumps = tmp_path / "dumps"
    done = subprocess.run(["node", "--experimental-wasm-memory64", str(PEER), str(image.path), str(inputs),
                           "--dump-dir", str(dumps)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    # The memory ao-loader returned after the spawn, as a legacy CU checkpoint keeps it.
    raw = dumps / "mem-0.bin"
    ours = eval_cli("aos2_0_6", "--snapshot-in", str(raw), *CODE)
    assert [line["output"] for line in ours] == ["41", "84"]
    assert [line["memory_sha256"] for line in ours] == [ref["memory_sha256"] for ref in reference[1:]]
    packed = tmp_path / "mem-0.bin.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes(), compresslevel=1))
    sandbox = Sandbox(image.path.read_bytes(), image.id, tmp_path / "wasm", snapshot=packed.read_bytes())
    assert [line.memory_sha256 for line in sandbox.run(CODE)] == [ref["memory_sha256"] for ref in reference[1:]]
    with pytest.raises(ValueError, match="wasm pages"):
        read_snapshot(b"not a snapshot")
