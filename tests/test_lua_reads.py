"""Dynamic reads (`~lua@5.3a`) over a real AOS token process: the sandbox, the limits, the cache and
module fetching through a real loopback gateway."""
from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.errors import BadInput, ComputeLimitExceeded, MemoryLimitExceeded, ModuleError, NotFound
from aonode.engine.lua.modules import LuaModules
from aonode.engine.lua.reads import LuaCall, LuaReads
from aonode.engine.lua.sandbox import LuaLimits
from aonode.engine.node import Node
from tests.helpers.gateway import loopback_gateway
from tests.helpers.nodeutil import definition, eval_msg, make_node, output

TOKEN = """
Balances = Balances or {}
Handlers.add('Mint', 'Mint', function(msg)
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + tonumber(msg.Quantity)
  Send({ device = 'patch@1.0', cache = { balances = Balances } })
end)
"""

READS = """
function total(state, request)
  local sum = 0
  for _, v in pairs(state.cache.balances) do sum = sum + v end
  return sum
end
function richest(state, request)
  local n, list = tonumber(request.n or 1), {}
  for who, v in pairs(state.cache.balances) do list[#list + 1] = { who = who, balance = v } end
  table.sort(list, function(a, b) return a.balance > b.balance or (a.balance == b.balance and a.who < b.who) end)
  local top = {}
  for i = 1, math.min(n, #list) do top[i] = list[i] end
  return top
end
function slot(state) return state["at-slot"] end
function spin() while true do end end
function escape() return os.execute("touch /tmp/aonode-lua-escaped") end
function hog() local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(4096) .. i end end
"""


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str, dict[str, int]]]:
    """A real AOS process with 40 random balances patched into its cache."""
    node = make_node(tmp_path_factory.mktemp("lua-node"))
    pid = node.spawn(definition())["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    rng = random.Random(15)
    minted: dict[str, int] = {}
    for i in range(40):
        who, qty = f"holder{i % 25}", rng.randrange(1, 10_000)
        minted[who] = minted.get(who, 0) + qty
        node.schedule(pid, eval_msg(pid, f"Send({{Target = ao.id, Action = 'Mint', Recipient = '{who}', "
                                         f"Quantity = '{qty}'}})", nonce=str(i)))
    node.settle()
    yield node, pid, minted
    node.close()


@pytest.fixture()
def reads(tmp_path: Path) -> LuaReads:
    folder = tmp_path / "lua"
    folder.mkdir()
    (folder / "token-reads.lua").write_text(READS)
    return LuaReads(LuaModules(tmp_path / "cache", dirs=(folder,)), LuaLimits(instructions=2_000_000,
                                                                               memory=16 * 1024 * 1024))


@pytest.mark.slow
def test_sum_over_cache_balances_equals_the_lua_state_sum(token: tuple[Node, str, dict[str, int]],
                                                          reads: LuaReads) -> None:
    node, pid, minted = token
    view = node.now(pid)
    assert view["cache"]["balances"] == minted
    total = reads.read(view, LuaCall("token-reads", "total"))
    # The process's own Lua state, asked with a message.
    node.schedule(pid, eval_msg(pid, "local s = 0 for _, v in pairs(Balances) do s = s + v end print('sum:' .. s)"))
    assert output(node.now(pid)) == f"sum:{total}"
    assert total == sum(minted.values())


@pytest.mark.slow
def test_arguments_reach_the_function_as_the_request(token: tuple[Node, str, dict[str, int]],
                                                      reads: LuaReads) -> None:
    node, pid, minted = token
    top = reads.read(node.compute(pid), LuaCall.parse("~lua@5.3a&module=token-reads", "richest", {"n": "3"}))
    expected = sorted(minted.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert top == [{"who": who, "balance": balance} for who, balance in expected]


@pytest.mark.slow
def test_same_read_at_same_slot_is_served_from_memory(token: tuple[Node, str, dict[str, int]],
                                                       reads: LuaReads) -> None:
    node, pid, _ = token
    view = node.compute(pid)
    call = LuaCall("token-reads", "slot")
    assert reads.read(view, call) == view["at-slot"]
    assert reads.read(view, call) == view["at-slot"]
    assert reads.runs == 1
    earlier = node.compute(pid, view["at-slot"] - 1)
    assert reads.read(earlier, call) == view["at-slot"] - 1  # another slot is another answer
    assert reads.read(view, LuaCall("token-reads", "slot", (("x", "1"),))) == view["at-slot"]
    assert reads.runs == 3


@pytest.mark.slow
def test_runaway_escape_and_hog_are_stopped(token: tuple[Node, str, dict[str, int]], reads: LuaReads) -> None:
    node, pid, minted = token
    view = node.compute(pid)
    with pytest.raises(ComputeLimitExceeded, match="spin ran past 2000000 instructions"):
        reads.read(view, LuaCall("token-reads", "spin"))
    with pytest.raises(ComputeLimitExceeded):  # remembered: the second time costs nothing
        reads.read(view, LuaCall("token-reads", "spin"))
    with pytest.raises(BadInput, match=r"escape failed: .*attempt to index a nil value \(global 'os'\)"):
        reads.read(view, LuaCall("token-reads", "escape"))
    assert not Path("/tmp/aonode-lua-escaped").exists()
    with pytest.raises(MemoryLimitExceeded):
        reads.read(view, LuaCall("token-reads", "hog"))
    assert reads.runs == 3
    assert reads.read(view, LuaCall("token-reads", "total")) == sum(minted.values())  # and it goes on


@pytest.mark.parametrize("code, error, match", [
    ("function f( oops", BadInput, r"does not load: .*'\)' expected"),
    ("local x = require('io')", BadInput, r"does not load: .*global 'require'"),
    ("x = load('return 1')", BadInput, r"global 'load'"),
    ("f = 1", NotFound, "defines no global function 'f'"),
    ("function f() return function() end end", BadInput, "cannot answer a function"),
    ("function f() return string.dump(f) end", BadInput, "field 'dump'"),
    ("function f() return ('').dump(f) end", BadInput, "field 'dump'"),
    ("function f() return setmetatable({}, {__gc = function() while true do end end}) end", BadInput, "__gc"),
    ("function f() local co = coroutine.wrap(function() while true do end end) co() end",
     ComputeLimitExceeded, "instructions"),
    ("function f() while true do pcall(function() while true do end end) end end", ComputeLimitExceeded, "instr"),
])
def test_sandbox_refuses(tmp_path: Path, code: str, error: type[Exception], match: str) -> None:
    (tmp_path / "m.lua").write_text(code)
    reads = LuaReads(LuaModules(tmp_path / "cache", dirs=(tmp_path,)), LuaLimits(instructions=1_000_000))
    state = {"process": "p", "at-slot": 1, "cache": {}, "results": {}}
    with pytest.raises(error, match=match):
        reads.read(state, LuaCall("m", "f"))


def test_module_ids_and_segments_are_checked(tmp_path: Path) -> None:
    modules = LuaModules(tmp_path)
    for bad in ("../etc/passwd", "a/b", ""):
        with pytest.raises(BadInput):
            modules.code(bad)
    with pytest.raises(NotFound, match="not an Arweave id"):
        modules.code("missing")
    with pytest.raises(BadInput, match="name the module"):
        LuaCall.parse("~lua@5.3a", "f")
    with pytest.raises(BadInput, match="not a lua function name"):
        LuaCall.parse("~lua@5.3a&module=m", "os.exit")
    call = LuaCall.parse("~lua@5.3a&module=m&who=bob", "balance", {"n": "2"})
    assert call == LuaCall("m", "balance", (("n", "2"), ("who", "bob")))


MODULE_ID = "L" * 42 + "A"


@pytest.fixture()
def gateway() -> Iterator[tuple[str, list[str]]]:
    with loopback_gateway({MODULE_ID: READS, "B" * 43: b"\xff\xfe not lua"}) as served:
        yield served


@pytest.mark.slow
def test_modules_come_through_the_gateway_once(tmp_path: Path, gateway: tuple[str, list[str]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, asked = gateway
    monkeypatch.setenv("AONODE_GATEWAY", url)
    state = {"process": "p", "at-slot": 4, "cache": {"balances": {"a": 2, "b": 3}}, "results": {}}
    reads = LuaReads(LuaModules(tmp_path / "lua-cache"))
    assert reads.read(state, LuaCall(MODULE_ID, "total")) == 5
    assert (tmp_path / "lua-cache" / MODULE_ID).read_text() == READS
    # A restarted node (new objects, same data dir) reads the kept copy: the gateway is not asked again.
    again = LuaReads(LuaModules(tmp_path / "lua-cache"))
    assert again.read(state, LuaCall(MODULE_ID, "slot")) == 4
    assert asked == [MODULE_ID]
    with pytest.raises(ModuleError, match=f"/raw/{'C' * 43}: HTTP 404"):
        again.read(state, LuaCall("C" * 43, "total"))
    with pytest.raises(ModuleError, match="not UTF-8"):
        again.read(state, LuaCall("B" * 43, "total"))
