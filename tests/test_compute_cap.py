"""Issue 10 item 5: the node caps per-message compute (AONODE_MAX_COMPUTE): a definition asking for
more is refused at spawn, and a runaway message ends with a compute-limit error under the cap instead
of holding a worker for the network default (9e12 instructions); a stop ends computes between slots."""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine.devices.wasm64 import DEFAULT_MAX_COMPUTE, MAX_COMPUTE_ENV
from aonode.engine.errors import Busy
from tests.helpers.httpnode import http_node
from tests.helpers.nodeutil import definition, eval_msg, make_node

pytestmark = pytest.mark.slow  # runaway messages up to the node's compute cap

SPAWN = [{"name": "Module", "value": "aos2_0_6"}]


def test_a_definition_above_the_cap_is_refused_at_spawn(tmp_path: Path) -> None:
    with http_node(tmp_path) as srv, srv.client() as c:
        r = c.post("/~process@1.0/schedule",
                   json={"Tags": [*SPAWN, {"name": "Compute-Limit", "value": "1000000000000000000"}]})
        assert r.status_code == 400 and "Compute-Limit" in r.json()["error"], r.text
        for below in ("-1", " -20000000000 "):  # (wasmtime took -1 as 2**64 - 1: no cap at all)
            r = c.post("/~process@1.0/schedule", json={"Tags": [*SPAWN, {"name": "Compute-Limit", "value": below}]})
            assert r.status_code == 400 and "Compute-Limit" in r.json()["error"], r.text
        r = c.post("/~process@1.0/schedule",
                   json={"Tags": [*SPAWN, {"name": "Compute-Limit", "value": str(DEFAULT_MAX_COMPUTE)}]})
        assert r.status_code == 200, r.text


def test_a_runaway_message_ends_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_COMPUTE_ENV, "2000000000")
    with http_node(tmp_path) as srv, srv.client() as c:
        pid = c.post("/~process@1.0/schedule", json={"Tags": SPAWN}).json()["process"]
        c.post(f"/{pid}~process@1.0/schedule", json={"Action": "Eval", "Data": "while true do end"})
        view = c.get(f"/{pid}~process@1.0/now", headers={"Accept": "application/json"})
        assert view.status_code == 200, view.text
        assert "limit" in str(view.json()["results"]["Error"]).lower()
        c.post(f"/{pid}~process@1.0/schedule", json={"Action": "Eval", "Data": "return 6 * 7"})
        assert c.get(f"/{pid}~process@1.0/now/results/data").text == "42"  # the process goes on


def test_a_stopping_node_computes_no_further_slot(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        pid = node.spawn(definition())["process"]
        node.schedule(pid, eval_msg(pid, "x = 1"))
        node.stop_computing()
        with pytest.raises(Busy):
            node.now(pid)
    finally:
        node.close()
    node = make_node(tmp_path)  # after the restart the slot is computed
    try:
        assert node.now(pid)["at-slot"] == 1
    finally:
        node.close()
