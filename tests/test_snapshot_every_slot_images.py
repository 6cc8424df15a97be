"""Adversarial review (issue 13 goal 2): a snapshot at every slot of the real AOS images, wasm64
(aos2_0_6) and wasm32 (aos2_0_4_32), is named the same whichever way the compare runs (C or Python,
engine/wasm/chunk_compare.py) and whether written pages are tracked (written_pages.py), through
Transfers, a grow, an error and a restart from the stored snapshot; every snapshot the store keeps
after its chunk collections restores to the memory (sha256) the instance had at that slot, in both
stores; and a run restarted from a stored snapshot reaches the same memory at every later slot as
one that never stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aonode.engine.devices.wasm64 import loaded
from aonode.engine.store import Store, open_store
from aonode.engine.store.rows import GC_EVERY, KEEP_SNAPSHOTS
from aonode.engine.wasm import Limits, chunk_compare as cc, written_pages as wp
from aonode.engine.wasm.chunked import Taken
from aonode.engine.wasm.instance import Instance
from aonode.engine.wasm.runtime import Image, Runtime
from tests.helpers.images import SPEC, image_path
from tests.helpers.token import TRANSFER_TOKEN as TOKEN

ENV = SPEC.env()
GROW = "Big = Big or {}; for i = 1, 40000 do Big[#Big + 1] = ('g' .. i):rep(9) end"
SLOTS = 3 * GC_EVERY + 2  # three chunk collections, more slots than the store keeps
RESTART_AT = 13  # the run stops after this slot and continues from the stored snapshot
PID = SPEC.pid

pytestmark = pytest.mark.slow  # 26 slots of two real images, several runs and restores each


def message(slot: int) -> str:
    if slot == 0:
        return SPEC.spawn_json()
    if slot == 1:
        return SPEC.message_json(1, TOKEN)
    if slot in (6, 17):
        return SPEC.message_json(slot, GROW)
    if slot == 9:
        return SPEC.message_json(slot, "error('on purpose')")
    tags = [{"name": "Action", "value": "Transfer"}, {"name": "Recipient", "value": f"R{slot % 5}"}]
    return SPEC.message_json(slot, "", tags=[*tags, {"name": "Quantity", "value": str(slot)}])


IMAGES = ("aos2_0_6.wasm", "aos2_0_4_32.wasm")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Callable[[str], tuple[Runtime, Image]]:
    """name -> (runtime, image), each image loaded once for the module."""
    runtime = Runtime(tmp_path_factory.mktemp("every-slot-wasm-cache"))
    loaded_images: dict[str, tuple[Runtime, Image]] = {}

    def load(name: str) -> tuple[Runtime, Image]:
        if name not in loaded_images:
            loaded_images[name] = (runtime, runtime.load(image_path(name).read_bytes()))
        return loaded_images[name]

    return load


def run(aos: tuple[Runtime, Image], store: Store, restart: bool) -> tuple[list[str], list[str]]:
    """(snapshot name, live memory sha256) at every slot, each snapshot stored as it is taken."""
    runtime, image = aos
    names: list[str] = []
    memories: list[str] = []
    inst = Instance(runtime, image, Limits(fuel=4_000_000_000))
    for slot in range(SLOTS):
        inst.handle(message(slot), ENV)
        taken: Taken = inst.snapshot_chunks().result()
        store.put_snapshot(PID, slot, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
        names.append(taken.memory_sha256)
        memories.append(inst.memory_sha256())
        if restart and slot == RESTART_AT:
            inst.close()
            found = store.latest_snapshot(PID)
            assert found is not None and found[0] == slot
            inst = Instance.restore(runtime, image, loaded(found[2], found[1], store.get_chunks))
            assert inst.memory_sha256() == memories[-1]
    inst.close()
    return names, memories


def restored_memories(aos: tuple[Runtime, Image], store: Store) -> dict[int, str]:
    """slot -> the memory sha256 each snapshot the store still keeps restores to."""
    runtime, image = aos
    found: dict[int, str] = {}
    for slot in range(SLOTS):
        latest = store.latest_snapshot(PID, slot)
        if latest is None or latest[0] != slot:
            continue
        inst = Instance.restore(runtime, image, loaded(latest[2], latest[1], store.get_chunks))
        found[slot] = inst.memory_sha256()
        inst.close()
    return found


@pytest.mark.parametrize("name", IMAGES)
def test_every_slot_named_alike_c_or_python_tracked_or_not(images, name: str, tmp_path: Path, monkeypatch) -> None:
    """Both switches flipped at once (C and tracked vs Python and untracked): either one naming a snapshot
    differently fails it; each alone is compared in tests/test_chunk_compare.py and test_written_pages.py."""
    aos = images(name)
    runs: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for native, tracking in (("1", "1"), ("0", "0")):
        monkeypatch.setenv(cc.ENV_SWITCH, native)
        monkeypatch.setenv(wp.ENV_SWITCH, tracking)
        assert cc.native() is (native == "1")  # the C way really runs when on
        store = open_store(str(tmp_path / f"n{native}t{tracking}"))
        try:
            runs[native, tracking] = run(aos, store, restart=True)
            restored = restored_memories(aos, store)
        finally:
            store.close()
        memories = runs[native, tracking][1]
        assert len(restored) == KEEP_SNAPSHOTS
        assert restored == {slot: memories[slot] for slot in restored}
    first = runs["1", "1"]
    for key, other in runs.items():
        assert other == first, key


def test_a_restarted_run_keeps_memory_and_every_kept_snapshot_restores(images, store_spec: str, tmp_path: Path) -> None:
    """wasm64 on SQLite, wasm32 on PostgreSQL (each image and each store once: the suite's time)."""
    aos = images(IMAGES[1] if store_spec.startswith("postgres") else IMAGES[0])
    store = open_store(store_spec)
    try:
        restarted = run(aos, store, restart=True)
        restored = restored_memories(aos, store)
    finally:
        store.close()
    again = open_store(tmp_path / "uninterrupted")
    try:
        straight = run(aos, again, restart=False)
    finally:
        again.close()
    assert restarted[1] == straight[1]  # the same memory at every slot
    assert restarted[0][: RESTART_AT + 1] == straight[0][: RESTART_AT + 1]
    assert len(restored) == KEEP_SNAPSHOTS
    assert restored == {slot: restarted[1][slot] for slot in restored}
