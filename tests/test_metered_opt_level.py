"""The metered build compiles without Cranelift's optimiser (runtime.OPT_LEVELS): it must count the same
fuel and leave the same bytes as an optimised build, or a Compute-Limit verdict and the memory would
depend on the node's settings. The same real AOS messages run on both builds of an image, in the same
metered engine (a module compiled at another level is deserialised into it: the level is not part of
wasmtime's compatibility check); after every message the outputs, the fuel used and the memory's
sha256 must be equal."""

from __future__ import annotations

import pytest
import wasmtime

from aonode.engine.aos import parse_result
from aonode.engine.wasm import Instance, Limits, Runtime
from aonode.engine.wasm.builds import Builds
from aonode.engine.wasm.runtime import METERED, OPT_LEVELS, Image, make_engine
from aonode.engine.wasm.transform import translate_exnref
from tests.helpers.images import SPEC, image_path

pytestmark = pytest.mark.slow  # compiles two AOS images twice

TOKEN = """Balances = Balances or { [ao.id] = 1000000 }
Handlers.add("transfer", Handlers.utils.hasMatchingTag("Action", "Transfer"), function(msg)
  local qty = tonumber(msg.Quantity)
  Balances[msg.From] = (Balances[msg.From] or 0) - qty
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + qty
  msg.reply({ Data = tostring(Balances[msg.Recipient]) })
end)
return "token ready\""""
CODES = [
    TOKEN,
    "local s = 0 for i = 1, 200000 do s = s + i % 13 end return s",
    "local t = {} for i = 1, 5000 do t[#t + 1] = string.format('%08.3f', i / 7) end return table.concat(t, ','):sub(-40)",
    "return tostring(math.sqrt(-1)) .. ' ' .. tostring(0/0) .. ' ' .. tostring(1/0) .. ' ' .. math.pi * 1e300",
    "local ok, err = pcall(error, 'boom') return tostring(ok) .. err",
    "return require('json').encode({ a = 1.5, b = { 1, 2, 3 }, c = 'x' })",
    "T = {} for i = 1, 30000 do T[i] = { i, tostring(i) } end collectgarbage() return #T",
    # C recursion as deep as Lua lets it go: the native frames differ between the levels, the depth must not
    "local d = 0 local function f() d = d + 1 pcall(f) end f() return d",
    "local function g(s, n) if n == 0 then return s end return (s:gsub('.', function(c) return g(c, n - 1) end)) end"
    " return g('abc', 150)",
]


def optimised_twin(runtime: Runtime, image: Image, wasm: bytes) -> Image:
    """The same image compiled at Cranelift's 'speed' level, loaded into the runtime's metered engine."""
    source = translate_exnref(wasm, runtime.cache_dir) if image.translated else wasm
    code = wasmtime.Module(make_engine(METERED, opt_level="speed"), source).serialize()
    module = wasmtime.Module.deserialize(runtime.metered_engine, code)
    return Image(image.sha256, module, image.memory64, image.translated, Builds({METERED: module}))


@pytest.mark.parametrize("name", ["aos2_0_6.wasm", "aos2_0_4_32.wasm"])
def test_metered_builds_count_the_same_fuel_and_leave_the_same_memory_at_every_opt_level(tmp_path, name):
    assert OPT_LEVELS[METERED] == "none"
    wasm = image_path(name).read_bytes()
    runtime = Runtime(tmp_path, fast_variant=False)
    plain = runtime.load(wasm)
    quick = Image(
        plain.sha256,
        runtime.module_for(plain, METERED),
        plain.memory64,
        plain.translated,
        Builds({METERED: runtime.module_for(plain, METERED)}),
    )
    twin = optimised_twin(runtime, plain, wasm)
    assert quick.module.serialize() != twin.module.serialize()  # two different machine codes are compared
    unoptimised = Instance(runtime, quick, Limits(), metered=True)
    optimised = Instance(runtime, twin, Limits(), metered=True)
    a, b = unoptimised.handle(SPEC.spawn_json(), SPEC.env()), optimised.handle(SPEC.spawn_json(), SPEC.env())
    assert a == b and parse_result(a).ok
    assert unoptimised.last_gas_used == optimised.last_gas_used > 0
    messages = [SPEC.message_json(n, code) for n, code in enumerate(CODES, 1)]
    tags = [
        {"name": "Action", "value": "Transfer"},
        {"name": "Recipient", "value": "R" * 43},
        {"name": "Quantity", "value": "25"},
    ]
    transfers = [SPEC.message_json(n, "", tags=tags) for n in range(len(CODES) + 1, len(CODES) + 4)]
    outputs = []
    for msg in [*messages, *transfers]:
        a, b = unoptimised.handle(msg, SPEC.env()), optimised.handle(msg, SPEC.env())
        assert a == b
        assert parse_result(a).ok, parse_result(a).error
        outputs.append(parse_result(a))
        assert unoptimised.last_gas_used == optimised.last_gas_used > 0
        assert unoptimised.memory_sha256() == optimised.memory_sha256()
    assert "nan" in str(outputs[3].output) and "inf" in str(outputs[3].output)  # the float corner cases ran
    assert int(outputs[7].output) > 150 and outputs[8].output == "abc"  # Lua's C-call limit, not the wasm stack
    assert [m["Data"] for m in outputs[-1].messages] == ["75"]  # three transfers of 25 reached the recipient
