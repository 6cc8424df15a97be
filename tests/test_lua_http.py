"""Dynamic reads over real HTTP: `/<pid>~process@1.0/now/~lua@5.3a&module=<id>/<function>` on a real
hypercorn, with the module from a loopback Arweave gateway."""
from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.gateway import loopback_gateway
from tests.helpers.httpnode import HttpNode, http_node
from tests.helpers.token import TOKEN_LUA

pytestmark = pytest.mark.slow  # a served node with a real AOS process

MODULE_ID = "R" * 42 + "w"
READS = """
function total(state)
  local sum = 0
  for _, v in pairs(state.cache.balances) do sum = sum + tonumber(v) end
  return sum
end
function holders(state, request)
  local out = {}
  for who, v in pairs(state.cache.balances) do
    if tonumber(v) >= tonumber(request.min or 0) then out[#out + 1] = who end
  end
  table.sort(out)
  return { count = #out, names = out, slot = state["at-slot"] }
end
function spin() while true do end end
function escape() os.execute("echo escaped") end
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, list[str]]]:
    with loopback_gateway({MODULE_ID: READS}) as served:
        yield served


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, gateway: tuple[str, list[str]]) -> Iterator[HttpNode]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AONODE_GATEWAY", gateway[0])
        with http_node(tmp_path_factory.mktemp("lua-http")) as running:
            yield running


@pytest.fixture(scope="module")
def pid(srv: HttpNode) -> str:
    with srv.client() as c:
        spawn = c.post("/~process@1.0/schedule", json={
            "Tags": [{"name": "On-Boot", "value": "Data"}], "Data": TOKEN_LUA})
        assert spawn.status_code == 200, spawn.text
        pid = spawn.json()["process"]
        for who, qty in (("carol", "15"), ("alice", "5")):
            sent = c.post(f"/{pid}~process@1.0/schedule", json={"Tags": [
                {"name": "Action", "value": "Eval"}],
                "Data": f"Send({{Target = ao.id, Action = 'Mint', Recipient = '{who}', Quantity = '{qty}'}})"})
            assert sent.status_code == 200, sent.text
    srv.node.settle()  # the Evals push Mint messages to the process: compute those too
    return pid


def lua(pid: str, rest: str, action: str = "now") -> str:
    return f"/{pid}~process@1.0/{action}/~lua@5.3a&module={MODULE_ID}/{rest}"


def test_a_sum_read_over_http_equals_the_patched_balances(srv: HttpNode, pid: str,
                                                          gateway: tuple[str, list[str]]) -> None:
    with srv.client() as c:
        total = c.get(lua(pid, "total"))
        balances = c.get(f"/{pid}~process@1.0/now/cache/balances").json()
    assert total.status_code == 200, total.text
    assert total.headers["content-type"].startswith("text/plain")  # a scalar comes back raw, like a leaf
    assert int(total.text) == sum(balances.values()) == 162
    assert MODULE_ID in gateway[1]
    assert (srv.node.data_dir / "lua-modules" / MODULE_ID).read_text() == READS


def test_tables_come_back_as_json_and_paths_read_into_them(srv: HttpNode, pid: str) -> None:
    with srv.client() as c:
        rich = c.get(lua(pid, "holders?min=20"))
        count = c.get(lua(pid, "holders/count?min=20"))
        second = c.get(lua(pid, "holders/names/2?min=20"))
        at_slot_3 = c.get(lua(pid, "holders", action="compute/2"))
    assert rich.status_code == 200, rich.text
    assert rich.json() == {"count": 2, "names": ["alice", "bob"], "slot": rich.json()["slot"]}
    assert count.text == "2" and second.text == "bob"
    assert at_slot_3.json()["slot"] == 2 and at_slot_3.json()["count"] == 2  # carol came after slot 2


def test_the_same_read_at_the_same_slot_runs_lua_once(srv: HttpNode, pid: str) -> None:
    with srv.client() as c:
        first = c.get(lua(pid, "holders?min=1"))
        runs = srv.node.lua.runs
        again = [c.get(lua(pid, "holders?min=1")) for _ in range(3)]
        other = c.get(lua(pid, "holders?min=2"))
    assert all(r.json() == first.json() for r in again)
    assert srv.node.lua.runs == runs + 1  # only the read with other arguments ran Lua again
    assert other.status_code == 200


@pytest.mark.parametrize("rest, status, needle", [
    ("spin", 422, "instructions"),
    ("escape", 400, "global 'os'"),
    ("nope", 404, "no global function 'nope'"),
])
def test_bad_reads_are_json_errors_and_the_node_keeps_serving(srv: HttpNode, pid: str, rest: str, status: int,
                                                              needle: str) -> None:
    with srv.client() as c:
        bad = c.get(lua(pid, rest))
        assert bad.status_code == status, bad.text
        assert needle in json.loads(bad.text)["error"]
        assert c.get(f"/{pid}~process@1.0/now/cache/balances/alice").text == "105"


@pytest.mark.parametrize("path, status, needle", [
    ("now/~lua@5.3a&module=" + "Z" * 43 + "/total", 400, "HTTP 404"),
    ("now/~lua@5.3a&module=a..b/total", 400, "not a lua module id"),
    ("now/~lua@5.3a/total", 400, "name the module"),
    ("now/~lua@5.3a&module=x", 400, "name the function"),
])
def test_bad_modules_are_400_naming_the_problem(srv: HttpNode, pid: str, path: str, status: int,
                                                needle: str) -> None:
    response = httpx.get(srv.process_url(pid, "/" + path), timeout=60)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
