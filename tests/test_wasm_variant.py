"""The fast variant of an AOS image (engine/wasm/transform/variant.py): byte-identical memory, original when suspending.

Every message runs both on an instance of the original image only (Runtime(fast_variant=False)) and on a
default instance, which runs the variant whenever the message does not suspend; outputs and the whole
linear memory must be the same after every message.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aonode.engine.aos import parse_result
from aonode.engine.errors import ModuleError
from aonode.engine.wasm import Flavor, Instance, Limits, Runtime, forget_compiled
from aonode.engine.wasm.flavors import AWAY_FIRST
from aonode.engine.wasm.transform import INTERRUPT_EXPORT, add_interrupt_checks, fold_asyncify_state
from tests.helpers.images import SPEC, image_path
from tests.helpers.threads import started

pytestmark = pytest.mark.slow  # derives and compares fast variants of five images

OTHER = "OTHER" + "t" * 38
HANDLER = """Handlers.add("ping", Handlers.utils.hasMatchingTag("Action", "Ping"), function(msg)
  Pings = (Pings or 0) + 1
  msg.reply({ Data = "pong " .. Pings })
end)
return "ready\""""
SUSPENDS = 'local ok = pcall(require, "no.such.module"); return tostring(ok)'  # the searcher asks WeaveDrive


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory) -> tuple[Runtime, Runtime]:
    plain = Runtime(tmp_path_factory.mktemp("plain"), fast_variant=False)
    return Runtime(tmp_path_factory.mktemp("variant-cache")), plain


def pair(runtimes, name: str, **kwargs) -> tuple[Instance, Instance]:
    fast_rt, plain_rt = runtimes
    wasm = image_path(name).read_bytes()
    return Instance(fast_rt, fast_rt.load(wasm), **kwargs), Instance(plain_rt, plain_rt.load(wasm), **kwargs)


def step(variant: Instance, original: Instance, msg: str) -> tuple[str, str]:
    """One message on both; returns (flavour it ran on, output)."""
    ran_on = variant.flavor
    a, b = variant.handle(msg, SPEC.env()), original.handle(msg, SPEC.env())
    assert a == b
    assert variant.memory_sha256() == original.memory_sha256()
    return ran_on, parse_result(a).output


def test_asyncify_images_get_a_variant_and_small_memory64_is_lowered(runtimes):
    fast_rt, plain_rt = runtimes
    aos64 = fast_rt.load(image_path("aos2_0_6.wasm").read_bytes())
    aos32 = fast_rt.load(image_path("aos2_0_4_32.wasm").read_bytes())
    assert aos64.variant is not None and aos64.variant_lowered and aos64.memory64
    assert aos32.variant is not None and not aos32.variant_lowered
    assert fast_rt.load(image_path("test-64.wasm").read_bytes()).variant is None  # nothing to gain
    assert plain_rt.load(image_path("aos2_0_6.wasm").read_bytes()).variant is None


def test_operators_can_turn_the_variant_off(monkeypatch, tmp_path):
    monkeypatch.setenv("AONODE_FAST_VARIANT", "0")
    inst = Instance(rt := Runtime(tmp_path), rt.load(image_path("aos2_0_6.wasm").read_bytes()))
    assert rt.fast_variant is False and inst.image.variant is None
    inst.handle(SPEC.spawn_json(), SPEC.env())
    inst.handle(SPEC.message_json(1, "return 1"), SPEC.env())
    assert inst.flavor == Flavor.ORIGINAL


def test_without_wasm_opt_images_run_as_they_are_and_nothing_sticks(monkeypatch, tmp_path):
    """No Binaryen on the machine: the image runs without a variant, and once wasm-opt is there the
    same cache directory gets one (the absence is not remembered)."""
    wasm = image_path("test-calling.wasm").read_bytes()  # memory64 capped at 258 pages: lowered
    monkeypatch.setenv("AONODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AONODE_WASM_OPT", str(tmp_path / "no-such-wasm-opt"))
    forget_compiled()
    try:
        assert Runtime(tmp_path / "cache").load(wasm).variant is None
        monkeypatch.delenv("AONODE_WASM_OPT")
        assert Runtime(tmp_path / "cache").load(wasm).variant is not None
    finally:
        forget_compiled()


@pytest.mark.parametrize("name,suspends", [("aos2_0_6.wasm", True), ("aos2_0_4_32.wasm", True),
                                           ("aos-2-pure-xs.wasm", False)])  # legacy exceptions, no WeaveDrive
def test_variant_leaves_the_same_memory_after_every_message(runtimes, name, suspends):
    variant, original = pair(runtimes, name)
    assert variant.flavor == Flavor.ORIGINAL  # constructors and the spawn run on the image itself
    ran = [step(variant, original, SPEC.spawn_json())[0]]
    sequence = [
        (SPEC.message_json(1, "X = 41; return X + 1"), None, "42"),
        (SPEC.message_json(2, HANDLER), None, "ready"),
        (SPEC.message_json(3, "", OTHER, [{"name": "Action", "value": "Ping"}]), OTHER, None),
        (SPEC.message_json(4, 'print("side"); error("boom")'), None, None),
        (SPEC.message_json(5, "Send({Target = 'x' .. X, Data = 'hi'}); return X"), None, "41"),
        (SPEC.message_json(6, SUSPENDS), None, "false"),
    ] + [(SPEC.message_json(7 + i, f"return X + {i}"), None, str(41 + i)) for i in range(AWAY_FIRST + 2)]
    for msg, _, expected in sequence:
        flavor, output = step(variant, original, msg)
        ran.append(flavor)
        if expected is not None:
            assert output == expected
    assert ran[1] == Flavor.VARIANT and ran[6] == Flavor.VARIANT  # home after the spawn
    if suspends:
        # the suspending message's stay on the image itself, then home again
        assert ran[7] == Flavor.ORIGINAL and ran[-1] == Flavor.VARIANT
    else:
        assert set(ran[1:]) == {Flavor.VARIANT}


# Lua statements a property test strings together: state, tables, strings, numbers, errors that are
# caught and not, output, messages, and the one that suspends (a missing require).
STATEMENTS = st.sampled_from([
    "T = T or {}; T[#T + 1] = string.rep('x', 100)",
    "N = (N or 0) + 1.5",
    "S = (S or '') .. tostring(#(T or {}))",
    "for i = 1, 200 do local t = { i, tostring(i) } end",
    "print('line ' .. tostring(N))",
    "local ok = pcall(error, 'caught')",
    "error('uncaught')",
    "Send({ Target = 'x', Data = tostring(N) })",
    "collectgarbage()",
    "local ok = pcall(require, 'missing.module')",
    "string.format('%5.2f %s %d', 3.14159, 'y', 42)",
    "table.sort(T or {})",
    "M = setmetatable({}, { __index = function(_, k) return k .. '!' end }); S = M.key",
])


@settings(max_examples=12, deadline=None)
@given(st.lists(st.lists(STATEMENTS, min_size=1, max_size=4), min_size=1, max_size=8))
def test_random_message_sequences_leave_the_same_memory(runtimes, programs):
    """Any mix of these, message after message: the variant and the image itself agree byte for byte."""
    variant, original = pair(runtimes, "aos2_0_6.wasm")
    step(variant, original, SPEC.spawn_json())
    for n, program in enumerate(programs, 1):
        step(variant, original, SPEC.message_json(n, "; ".join(program) + "; return S"))


@pytest.mark.parametrize("name", ["process.wasm", "test-aos.wasm"])
def test_other_asyncify_builds_agree_with_their_original(runtimes, name):
    variant, original = pair(runtimes, name)
    assert variant.image.variant is not None
    for msg in [SPEC.spawn_json()] + [SPEC.message_json(n, code) for n, code in
                                       enumerate(["X = 5", "return X * 2", "print('p'); return X", 'error("e")'], 1)]:
        step(variant, original, msg)
    assert variant.flavor == Flavor.VARIANT


def test_weavedrive_reads_match_the_original(runtimes, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "TX-abc").write_bytes(b"hello from arweave")
    variant, original = pair(runtimes, "aos2_0_6.wasm", weavedrive_dir=tmp_path)
    step(variant, original, SPEC.spawn_json())
    step(variant, original, SPEC.message_json(1, "return 1"))
    assert variant.flavor == Flavor.VARIANT
    ran_on, output = step(variant, original, SPEC.message_json(2, "F = io.open('/data/TX-abc') return F:read(18)"))
    assert output == "hello from arweave" and ran_on == Flavor.VARIANT and variant.flavor == Flavor.ORIGINAL


def test_variant_keeps_limits_and_rollback(runtimes):
    """A runaway loop on the variant is stopped (redone metered) and leaves memory as before it."""
    from aonode.engine.errors import ComputeLimitExceeded
    variant, original = pair(runtimes, "aos2_0_6.wasm", limits=Limits(fuel=2_000_000_000))
    step(variant, original, SPEC.spawn_json())
    step(variant, original, SPEC.message_json(1, "Y = 1; return Y"))
    before = variant.memory_sha256()
    for inst in (variant, original):
        with pytest.raises(ComputeLimitExceeded):
            inst.handle(SPEC.message_json(2, "while true do Y = Y + 1 end"), SPEC.env())
    assert variant.memory_sha256() == before == original.memory_sha256()
    assert step(variant, original, SPEC.message_json(3, "return Y"))[1] == "1"


def test_runaway_loop_on_the_variant_is_stopped_by_its_interrupt_flag(runtimes):
    """The variant's engine has no epoch checks: only the loop-header flag can stop this loop. It must
    stop (then the metered engine gives the verdict), within seconds, leaving memory as before."""
    from aonode.engine.errors import ComputeLimitExceeded

    variant, _ = pair(runtimes, "aos2_0_6.wasm", limits=Limits(fuel=4_000_000_000))
    variant.handle(SPEC.spawn_json(), SPEC.env())  # slow enough to be redone metered under this limit
    n = 0
    while variant.flavor != Flavor.VARIANT and n < 60:  # a loaded machine can push a message past its
        n += 1                                           # deadline: it is redone metered, then returns
        variant.handle(SPEC.message_json(n, "Z = 7; return Z"), SPEC.env())
    assert variant.flavor == Flavor.VARIANT
    before = variant.memory_sha256()

    def run() -> None:
        with pytest.raises(ComputeLimitExceeded):
            variant.handle(SPEC.message_json(n + 1, "local n = 0 while true do n = n + 1 end"), SPEC.env())

    started(run).join(60, "the loop was never interrupted")
    assert variant.memory_sha256() == before
    assert variant.flavor == Flavor.METERED  # redone metered after the deadline, as the epoch engine does


def test_interrupt_flag_stops_a_store_free_inner_loop():
    """The check must be re-read on every iteration even where nothing in the loop stores (the flag's
    load is atomic, so the compiler cannot reuse the outer loop's read)."""
    import ctypes

    import wasmtime

    from aonode.engine.wasm.ticker import clear_deadline, watch_deadline

    wat = add_interrupt_checks(
        '(module\n (memory $0 1 1)\n (func $spin (export "spin") (param $n i32)\n'
        '  (loop $outer\n   (i32.store (i32.const 8) (local.get $n))\n'
        '   (loop $inner\n    (br_if $inner (i32.eqz (i32.load (i32.const 16)))))\n'
        '   (br $outer))))')
    engine = Runtime().engine_for(Flavor.VARIANT)
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wasmtime.wat2wasm(wat)), [])
    flag_memory = instance.exports(store)[INTERRUPT_EXPORT]
    flag = (ctypes.c_ubyte * 1).from_address(ctypes.addressof(flag_memory.data_ptr(store).contents))
    spin = instance.exports(store)["spin"]

    def run() -> None:
        with pytest.raises(wasmtime.Trap):
            spin(store, 1)

    deadline = watch_deadline(flag, 0.05)
    try:
        started(run).join(30, "the inner loop was never interrupted")
    finally:
        clear_deadline(deadline)
    assert flag[0] == 1


def test_interrupt_checks_go_at_the_start_of_every_loop():
    wat = add_interrupt_checks(
        '(module\n (memory $0 1 2)\n (func $f (result i32)\n  (loop $a\n   (br_if $a (i32.const 0)))\n'
        '  (loop $b (result i32)\n   (i32.const 1))))')
    check = "(if (i32.atomic.load8_u $aonode_interrupt (i32.const 0)) (then (unreachable)))"
    assert wat.count(check) == 2
    assert "(loop $b (result i32)\n " + check in wat and '(export "aonode_interrupt"' in wat
    with pytest.raises(ModuleError, match="one defined memory"):
        add_interrupt_checks('(module (func $f))')


def test_fold_refuses_text_without_asyncify():
    with pytest.raises(ModuleError, match="asyncify_get_state"):
        fold_asyncify_state('(module (func $f (export "f")))')
    folded = fold_asyncify_state(
        '(module (global $s (mut i32) (i32.const 0))\n'
        ' (export "asyncify_get_state" (func $g))\n'
        ' (func $g (result i32) (global.get $s))\n'
        ' (func $h (global.set $s (i32.const 1)) (drop (global.get $s))))')
    assert "(global.get $s)" not in folded and folded.count("(i32.const 0)") == 3
