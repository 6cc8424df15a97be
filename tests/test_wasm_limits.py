"""Fuel and memory caps: a failing message raises, leaves the state exactly as before, and the next works."""
from __future__ import annotations

import ctypes
import threading
import time

import pytest

from aonode.engine.aos import ProcessSpec, parse_result
from aonode.engine.errors import ComputeLimitExceeded, MemoryLimitExceeded
from aonode.engine.wasm import Instance, Limits, Runtime, budget, parse_size
from aonode.engine.wasm.budget import FUEL_RATE_MAX
from tests.helpers.threads import started

pytestmark = pytest.mark.slow  # fuel-metered and limit-breach runs compile the image twice

SPEC = ProcessSpec(pid="PROCESS" + "p" * 36, owner="OWNER" + "o" * 38, module_id="M" * 43)


def evaluate(inst: Instance, code: str, n: int = 1):
    return parse_result(inst.handle(SPEC.message_json(n, code), SPEC.env()))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("wasm-cache"))


def spawned(runtime: Runtime, aos_image, limits: Limits, metered: bool = False) -> Instance:
    inst = Instance(runtime, runtime.load(aos_image.read_bytes()), limits, metered=metered)
    assert parse_result(inst.handle(SPEC.spawn_json(), SPEC.env())).ok
    return inst


def test_parse_size():
    assert parse_size("1-gb") == 1024**3
    assert parse_size("512-mb") == 512 * 1024**2
    assert parse_size("65536") == 65536
    assert parse_size(None) is None
    with pytest.raises(ValueError):
        parse_size("lots")


@pytest.mark.parametrize("limits,code,error", [
    (Limits(fuel=500_000_000), "while true do end", ComputeLimitExceeded),
    (Limits(memory=parse_size("192-mb")), "local s = string.rep('x', 256 * 1024 * 1024) return #s",
     MemoryLimitExceeded),
], ids=["runaway-loop", "memory-bomb"])
def test_limit_breach_raises_and_changes_nothing(runtime, aos_image, limits, code, error):
    inst = spawned(runtime, aos_image, limits)
    evaluate(inst, "kept = 'still here'", 1)
    before = inst.memory_sha256()
    with pytest.raises(error):
        evaluate(inst, code, 2)
    assert inst.memory_sha256() == before
    assert evaluate(inst, "return kept", 3).output == "still here"


def test_infinite_recursion_is_an_error_with_state_kept(runtime, aos_image):
    inst = spawned(runtime, aos_image, Limits(fuel=5_000_000_000))
    evaluate(inst, "kept = 1", 1)
    out = evaluate(inst, "local function f() return f() + 1 end return f()", 2)
    assert out.error is not None and "stack overflow" in out.error
    assert evaluate(inst, "return kept + 1", 3).output == "2"


def test_rollback_replays_from_a_checkpoint(runtime, aos_image):
    inst = spawned(runtime, aos_image, Limits(fuel=500_000_000))
    evaluate(inst, "n = 1", 1)
    inst.checkpoint()
    evaluate(inst, "n = n + 1", 2)
    evaluate(inst, "n = n * 10", 3)
    before = inst.memory_sha256()
    with pytest.raises(ComputeLimitExceeded):
        evaluate(inst, "while true do n = n + 1 end", 4)
    assert inst.memory_sha256() == before
    assert evaluate(inst, "return n", 5).output == "20"


def test_gas_used_is_counted_when_metered(runtime, aos_image):
    inst = spawned(runtime, aos_image, Limits(), metered=True)
    evaluate(inst, "return 1", 1)
    small = inst.last_gas_used
    evaluate(inst, "local s = 0 for i = 1, 100000 do s = s + i end return s", 2)
    assert 0 < small < inst.last_gas_used


@pytest.mark.parametrize("fuel", [None, 300_000_000], ids=["unlimited", "undecided-then-metered"])
def test_fast_and_metered_engines_agree(runtime, aos_image, fuel):
    """The fast engine only bounds wall time; a message it cannot vouch for (here: one slower than
    fuel / FUEL_RATE_MAX) is redone metered. Either way the bytes equal an always-metered instance."""
    fast = spawned(runtime, aos_image, Limits(fuel=fuel))
    metered = spawned(runtime, aos_image, Limits(fuel=fuel), metered=True)
    codes = ["acc = 0", "for i = 1, 300000 do acc = acc + i % 7 end return acc", "return acc * 2"]
    counted = []
    for n, code in enumerate(codes, 1):
        assert evaluate(fast, code, n).output == evaluate(metered, code, n).output
        assert fast.memory_sha256() == metered.memory_sha256()
        counted.append(fast.last_gas_used > 0)  # only a metered run counts fuel
    assert counted[1] is (fuel is not None)  # the slow loop went to the metered engine when limited


def test_a_wait_for_the_gil_is_not_fuel(runtime, aos_image):
    """The fast engine's verdict counts the calling thread's CPU time: a message that waited for the
    GIL once its wasm returned (another thread in a long call that keeps it, as the compute thread's
    Python while the wasm-ahead thread runs) is kept, not redone metered (a rebuild and a stay on the
    slow engine)."""
    fuel = int(0.1 * FUEL_RATE_MAX)  # 100 ms of CPU; the message takes ~10
    inst = spawned(runtime, aos_image, Limits(fuel=fuel))
    evaluate(inst, "acc = 0", 1)
    go = threading.Event()
    usleep = ctypes.PyDLL(None).usleep  # a C call that keeps the GIL while it sleeps

    def hold_the_gil() -> None:
        go.wait()
        time.sleep(0.002)  # the main thread is in wasm by now, without the GIL
        usleep(300_000)

    holder = started(hold_the_gil)
    go.set()
    begun = time.perf_counter()
    assert evaluate(inst, "for i = 1, 200000 do acc = acc + i % 7 end return acc", 2).error is None
    waited = time.perf_counter() - begun
    holder.join(30)
    assert waited > 0.25  # it waited for the GIL: its wall time passed the CPU bound
    assert inst.last_gas_used == 0  # only a metered run counts fuel: it was not redone


def test_an_error_after_more_than_the_fuel_bound_is_the_metered_verdict(runtime, aos_image, monkeypatch):
    """A message the fast engine ends in an error (here: the memory cap) after more CPU time than its
    fuel can take is undecided like one that ends well: the metered engine may have run out of fuel
    first, and that answer (ComputeLimitExceeded, not the error) is the one stored. The wall deadline
    does not settle it: the ticker that enforces it is a thread that runs late under load and GIL
    contention (modelled here by a late deadline)."""
    monkeypatch.setattr(budget, "DEADLINE_SLACK", 100_000)
    limits = Limits(fuel=2_000_000_000, memory=parse_size("192-mb"))  # 5 ms of CPU at FUEL_RATE_MAX
    code = "for i = 1, 20000000 do end local s = string.rep('x', 256 * 1024 * 1024) return #s"
    verdicts = []
    for metered in (True, False):
        inst = spawned(runtime, aos_image, limits, metered=metered)
        for n in range(1, 5):  # a fast instance whose spawn was redone metered is home again after these
            evaluate(inst, "return 1", n)
        before = inst.memory_sha256()
        with pytest.raises((ComputeLimitExceeded, MemoryLimitExceeded)) as raised:
            evaluate(inst, code, 5)  # the loop alone burns ~2.2e9 fuel
        assert inst.memory_sha256() == before
        verdicts.append(raised.type)
    assert verdicts == [ComputeLimitExceeded, ComputeLimitExceeded]


@pytest.mark.parametrize("metered", [False, True], ids=["epoch", "metered"])
def test_a_cap_past_what_wasmtime_counts_is_unlimited(tmp_path, aos_image, metered):
    """wasmtime takes fuel and epoch deadlines as u64 and wraps what is larger: a cap of 2**64 * 2e8
    made the original engine's deadline 2 ticks (4 ms) and the metered engine's fuel 0, so a message
    of ~50 ms failed ComputeLimitExceeded under a cap meaning 'unlimited'. Such a cap is clamped."""
    runtime = Runtime(tmp_path, fast_variant=False)  # the image itself: the epoch engine
    for n, cap in enumerate((2**64 * 200_000_000, 10**400), start=1):  # (10**400: past a float, OverflowError)
        inst = spawned(runtime, aos_image, Limits(fuel=cap), metered=metered)
        out = evaluate(inst, "local s = 0 for i = 1, 2000000 do s = s + i % 7 end return s", n)
        assert out.error is None and out.output == str(sum(i % 7 for i in range(1, 2_000_001)))


@pytest.mark.parametrize("metered", [False, True], ids=["epoch", "metered"])
def test_a_negative_cap_lets_nothing_run(tmp_path, aos_image, metered):
    """wasmtime takes fuel as u64: -1 was 2**64 - 1, so a process spawned with `Compute-Limit: -1` ran
    any message unmetered (a `while true do end` held a worker for ever, past the node's cap). A cap
    below 0 is none at all: the message fails as over its limit, the state is kept."""
    runtime = Runtime(tmp_path, fast_variant=False)
    inst = spawned(runtime, aos_image, Limits(), metered=metered)
    evaluate(inst, "kept = 'still here'", 1)
    inst.limits = Limits(fuel=-1)
    with pytest.raises(ComputeLimitExceeded):
        evaluate(inst, "local s = 0 for i = 1, 2000000 do s = s + i % 7 end return s", 2)
    inst.limits = Limits()
    assert evaluate(inst, "return kept", 3).output == "still here"
