"""First use of an image does not wait for its fast variant (engine/wasm/builds.py): a runtime in
background mode hands the image back compiled for the metered engine, instances run there while the
variant is prepared on another thread, and they move to it between two messages with their memory.
"""
from __future__ import annotations

import hashlib

import pytest

from aonode.engine.wasm import Flavor, Instance, Runtime, forget_compiled
from aonode.engine.wasm.builds import preparation_lock
from aonode.engine.wasm.flavors import Itinerary
from tests.helpers.images import SPEC, image_path
from tests.helpers.nodeutil import definition, eval_msg, make_node, output

PREPARE_SECONDS = 900  # deriving a variant on a loaded 2-core machine


def test_an_itinerary_follows_a_new_home_before_the_next_message() -> None:
    trip = Itinerary.start(has_variant=False, metered=False, restored=False, max_stay=1000, preparing=True)
    assert trip.home == trip.current == trip.next == Flavor.METERED
    trip.rehome(Flavor.VARIANT)
    assert trip.stay_over and trip.next == Flavor.VARIANT
    trip.go_home()
    assert trip.current == Flavor.VARIANT and not trip.away
    # away from home (a message needed to suspend) when the home changes: the stay is run out first
    away = Itinerary.start(has_variant=False, metered=False, restored=True, max_stay=1000, preparing=True)
    away.arrive(Flavor.ORIGINAL)
    away.rehome(Flavor.VARIANT)
    assert away.next == Flavor.ORIGINAL and not away.stay_over
    assert Itinerary.start(has_variant=False, metered=True, restored=False, max_stay=1, preparing=True).home \
        == Flavor.METERED


@pytest.mark.slow  # compiles aos2_0_6 three ways and derives its variant when this machine has none
def test_switching_to_a_background_prepared_variant_mid_stream_leaves_the_same_memory(tmp_path) -> None:
    wasm = image_path("aos2_0_6.wasm").read_bytes()
    messages = [SPEC.spawn_json()] + [SPEC.message_json(n, code) for n, code in enumerate([
        "X = 41; return X + 1",
        "T = {}; for i = 1, 500 do T[i] = string.rep('y', i % 17) end; return #T",
        "Send({ Target = 'x', Data = tostring(X) }); return X",
        "X = X + 1; return X",
        "error('boom')",
        "return #T + X",
        "T = nil; collectgarbage(); return X",
    ], 1)]
    try:
        background = Runtime(tmp_path / "background", background=True)
        with preparation_lock(hashlib.sha256(wasm).hexdigest()):  # as if another preparation were running
            # Nothing of this image compiled in this process: the runtime must prepare it. Forgotten under the
            # lock, so a preparation an earlier test left running in this process cannot publish its variant after.
            forget_compiled()
            image = background.load(wasm)
            assert image.preparing and image.variant is None
            moving = Instance(background, image)
            ran = [moving.flavor]
            after = [_step(moving, messages[0])]
            for msg in messages[1:3]:
                ran.append(moving.flavor)
                after.append(_step(moving, msg))
            assert image.preparing  # still: the lock holds the preparation back
        assert image.wait_variant(PREPARE_SECONDS) and image.variant is not None
        for msg in messages[3:]:
            ran.append(moving.flavor)
            after.append(_step(moving, msg))
    finally:
        forget_compiled()
    assert ran == [Flavor.METERED] * 3 + [Flavor.VARIANT] * (len(messages) - 3)
    plain = Runtime(tmp_path / "plain", fast_variant=False)
    fast = Runtime(tmp_path / "fast")  # the variant from the start (after the spawn, on the image itself)
    original, variant = Instance(plain, plain.load(wasm)), Instance(fast, fast.load(wasm))
    assert variant.image.variant is not None
    all_original = [_step(original, msg) for msg in messages]
    all_variant = [_step(variant, msg) for msg in messages]
    assert variant.flavor == Flavor.VARIANT and original.flavor == Flavor.ORIGINAL
    assert after == all_original == all_variant  # output and the whole memory's sha256, message by message


def _step(inst: Instance, msg: str) -> tuple[str, str]:
    """(the raw result, the sha256 of the whole linear memory after it)."""
    return inst.handle(msg, SPEC.env()), inst.memory_sha256()


@pytest.mark.slow  # a node's first use of aos2_0_6 in this process: compiled metered, variant in the background
def test_a_node_answers_before_the_variant_and_moves_its_live_process_to_it(tmp_path) -> None:
    wasm = image_path("aos2_0_6.wasm").read_bytes()
    node = make_node(tmp_path / "node")
    try:
        with preparation_lock(hashlib.sha256(wasm).hexdigest()):
            forget_compiled()  # under the lock, as above
            pid = node.spawn(definition())["process"]
            node.schedule(pid, eval_msg(pid, "X = 6 * 7; return X"))
            assert output(node.now(pid)) == "42"  # answered while the variant is held back
            with node.live.lock(pid):
                assert node.live.state(pid).instance.flavor == Flavor.METERED
        assert node.images.load("aos2_0_6").wait_variant(PREPARE_SECONDS)
        node.schedule(pid, eval_msg(pid, "X = X + 1; return X"))
        assert output(node.now(pid)) == "43"
        with node.live.lock(pid):
            instance = node.live.state(pid).instance
            assert instance.flavor == Flavor.VARIANT and instance.image.variant is not None
    finally:
        node.close()
        forget_compiled()
