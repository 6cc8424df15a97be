"""Chunked snapshots (engine/wasm/chunked.py) on the real aos2_0_6 image and a real SQLite store:
every one restores to exactly the memory it was taken of (whole-memory sha256), incrementally, after a
restart and after chunk collection; a damaged one is never computed on."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from aonode.engine.devices.wasm64 import loaded
from aonode.engine.store.sqlite import SQLiteStore
from aonode.engine.store.rows import KEEP_SNAPSHOTS
from aonode.engine.wasm.chunk_codec import DELTA
from aonode.engine.wasm.chunked import CHUNK, Manifest, SnapshotDamaged, Taken
from aonode.engine.wasm.manifest_names import names_in
from aonode.engine.wasm.instance import Instance
from aonode.engine.wasm.runtime import Image, Runtime
from tests.helpers.images import SPEC
from tests.helpers.nodeutil import eval_msg, make_node, output

pytestmark = pytest.mark.slow  # real AOS instances and nodes

ENV = SPEC.env()
CODES = ["t = {}", "for i = 1, 3000 do t[i] = ('row' .. i):rep(20) end", "t[5] = 'changed'",
         "return #t", "t = nil; collectgarbage(); return 'freed'", "X = 7"]


@pytest.fixture(scope="module")
def aos(tmp_path_factory, aos_image) -> tuple[Runtime, Image]:
    """A runtime of its own and the aos2_0_6 image compiled in it."""
    runtime = Runtime(tmp_path_factory.mktemp("chunks-wasm-cache"))
    return runtime, runtime.load(aos_image.read_bytes())


def restore(runtime, image, store: SQLiteStore, slot: int) -> Instance:
    found = store.latest_snapshot("p", slot)
    assert found is not None and found[0] == slot
    return Instance.restore(runtime, image, loaded(found[2], found[1], store.get_chunks))


def test_every_snapshot_restores_the_memory_it_was_taken_of(aos, tmp_path: Path) -> None:
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    inst = Instance(runtime, image)
    shas, added = [], []

    def put(slot: int):
        def then(taken: Taken) -> None:
            added.append(len(taken.new_chunks))
            store.put_snapshot("p", slot, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
        return then

    inst.handle(SPEC.spawn_json(), ENV)
    pending = []
    for slot, code in enumerate(CODES):
        inst.handle(SPEC.message_json(slot + 1, code), ENV)
        shas.append(inst.memory_sha256())
        pending.append(inst.snapshot_chunks(put(slot)))  # in the background, chained
    for p in pending:
        p.wait()
    chunks_in_memory = inst.memory_size // CHUNK
    assert added[0] > 20 and max(added[2:]) < chunks_in_memory // 4  # later ones add what changed
    names = [store.latest_snapshot("p", slot)[1] for slot in range(len(CODES))]
    assert len(set(names)) == len(CODES)
    for slot in range(len(CODES)):  # what a collection asks instead of parsing: the same names
        _, name, blob = store.latest_snapshot("p", slot)
        manifest = Manifest.from_bytes(blob, name)
        assert names_in(name) == {*manifest.hashes, *manifest.bases}, f"slot {slot}"
    store.close()

    reopened = SQLiteStore(tmp_path)  # a restart: only what is on disk
    reopened.collect_chunks()
    for slot, sha in enumerate(shas):
        copy = restore(runtime, image, reopened, slot)
        assert copy.memory_sha256() == sha, f"slot {slot}"
    # A restored instance snapshots incrementally from there and continues identically.
    copy = restore(runtime, image, reopened, 2)
    taken = copy.snapshot_chunks().result()
    assert taken.memory_sha256 == names[2] and not taken.new_chunks
    for slot, code in enumerate(CODES[3:], 3):
        copy.handle(SPEC.message_json(slot + 1, code), ENV)
        assert copy.memory_sha256() == shas[slot]


def test_deltas_keep_their_bases_through_collection_and_restart(aos, tmp_path: Path) -> None:
    """Small changes are stored as deltas on bases that older, dropped snapshots stored: collection
    keeps those bases (the newest manifests name them), and every kept snapshot restores exactly."""
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    inst = Instance(runtime, image)
    inst.handle(SPEC.spawn_json(), ENV)
    inst.handle(SPEC.message_json(1, "Rows = {} for i = 1, 3000 do Rows[i] = ('row' .. i):rep(20) end"), ENV)
    slots, shas, first_stored = KEEP_SNAPSHOTS * 2 + 3, {}, {}
    for slot in range(slots):
        inst.handle(SPEC.message_json(slot + 2, f"Rows[{slot * 97 % 3000 + 1}] = 'v{slot}'"), ENV)
        shas[slot] = inst.memory_sha256()
        taken = inst.snapshot_chunks().result()
        store.put_snapshot("p", slot, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
        for name in taken.new_chunks:
            first_stored.setdefault(name, slot)
    store.close()

    reopened = SQLiteStore(tmp_path)
    reopened.collect_chunks()
    slot, name, blob = reopened.latest_snapshot("p")
    manifest = Manifest.from_bytes(blob, name)
    bodies = reopened.get_chunks(sorted(manifest.stored_hashes()))
    assert any(body.startswith(DELTA) for body in bodies.values())
    kept_from = slots - KEEP_SNAPSHOTS
    assert any(first_stored[base.hex()] < kept_from for base in manifest.bases)  # stored by a dropped one
    assert reopened.latest_snapshot("p", kept_from - 1) is None
    for slot in range(kept_from, slots):
        assert restore(runtime, image, reopened, slot).memory_sha256() == shas[slot], f"slot {slot}"


def test_a_failed_message_rolls_back_to_the_chunked_snapshot(aos) -> None:
    runtime, image = aos
    from aonode.engine.errors import ComputeLimitExceeded
    from aonode.engine.wasm import Limits

    inst = Instance(runtime, image, Limits(fuel=500_000_000))
    inst.handle(SPEC.spawn_json(), ENV)
    inst.handle(SPEC.message_json(1, "n = 1"), ENV)
    inst.snapshot_chunks().wait()  # the rollback checkpoint is now the shadow's copy
    inst.handle(SPEC.message_json(2, "n = n + 1"), ENV)
    inst.handle(SPEC.message_json(3, "n = n * 10"), ENV)
    before = inst.memory_sha256()
    with pytest.raises(ComputeLimitExceeded):
        inst.handle(SPEC.message_json(4, "while true do n = n + 1 end"), ENV)
    assert inst.memory_sha256() == before
    inst.handle(SPEC.message_json(5, "n = n + 1"), ENV)
    taken = inst.snapshot_chunks().result()  # incremental on top of the rolled-back memory
    assert taken.new_chunks and len(taken.new_chunks) < inst.memory_size // CHUNK // 4


def test_a_damaged_manifest_or_chunk_is_refused(aos, tmp_path: Path) -> None:
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    inst = Instance(runtime, image)
    inst.handle(SPEC.spawn_json(), ENV)
    taken = inst.snapshot_chunks().result()
    store.put_snapshot("p", 0, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
    blob = taken.to_bytes()
    with pytest.raises(SnapshotDamaged):
        loaded(blob[:-7], taken.memory_sha256, store.get_chunks)
    with pytest.raises(SnapshotDamaged):
        Manifest.from_bytes(blob[:-32])
    victim = sorted(taken.new_chunks)[3]
    body = bytearray(taken.new_chunks[victim])
    body[len(body) // 2] ^= 0x40
    with pytest.raises(SnapshotDamaged):
        Instance.restore(runtime, image, loaded(blob, taken.memory_sha256, lambda hashes: {
            **store.get_chunks(hashes), victim: bytes(body)}))
    with pytest.raises(SnapshotDamaged, match="misses"):
        loaded(blob, taken.memory_sha256, lambda hashes: {})


# ---- the node: a damaged newest snapshot is never computed on ----------------------------------

def run_node(data: Path, codes: list[str]) -> tuple[str, str]:
    node = make_node(data)
    pid = node.spawn(make_definition())["process"]
    for code in codes:
        node.schedule(pid, eval_msg(pid, code))
    node.now(pid)
    sha = node.snapshot(pid)["memory-sha256"]
    node.close()
    return pid, sha


def make_definition():
    from tests.helpers.nodeutil import definition
    return definition(("Cache-Frequency", "1"))


def newest(db: Path, pid: str) -> tuple[int, str]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT slot, sha256 FROM snapshots WHERE process = ? ORDER BY slot DESC LIMIT 1",
                            (pid,)).fetchone()


NODE_CODES = ["X = 1", "Big = {} for i = 1, 2000 do Big[i] = ('v' .. i):rep(30) end", "X = X + 1",
              "Big[7] = 'seven'", "X = X * 10"]


@pytest.mark.parametrize("damage", ["flip-chunk", "truncate-manifest", "every-snapshot"])
def test_the_node_serves_correct_state_from_a_damaged_newest_snapshot(tmp_path: Path, damage: str,
                                                                      caplog) -> None:
    pid, sha = run_node(tmp_path / "node", NODE_CODES)
    db = tmp_path / "node" / "aonode.sqlite3"
    slot, name = newest(db, pid)
    with sqlite3.connect(db) as conn:
        if damage == "truncate-manifest":
            conn.execute("UPDATE manifests SET body = substr(body, 1, length(body) - 100) WHERE name = ?", (name,))
        else:
            names = ([name] if damage == "flip-chunk" else
                     [n for (n,) in conn.execute("SELECT sha256 FROM snapshots WHERE process = ?", (pid,))])
            for victim_name in names:
                (body,) = conn.execute("SELECT body FROM manifests WHERE name = ?", (victim_name,)).fetchone()
                manifest = Manifest.from_bytes(body)
                for digest in sorted(manifest.stored_hashes())[:3]:
                    (chunk,) = conn.execute("SELECT body FROM chunks WHERE hash = ?", (digest,)).fetchone()
                    flipped = bytearray(chunk)
                    flipped[len(flipped) // 2] ^= 0xFF
                    conn.execute("UPDATE chunks SET body = ? WHERE hash = ?", (bytes(flipped), digest))
    caplog.set_level(logging.ERROR, logger="aonode.engine.devices.process")
    node = make_node(tmp_path / "node")
    try:
        assert node.snapshot(pid)["memory-sha256"] == sha  # the memory at that slot, as it was
        assert "damaged" in caplog.text
        node.schedule(pid, eval_msg(pid, "return X .. ':' .. Big[7] .. ':' .. Big[8]", nonce="after"))
        assert output(node.now(pid)) == "20:seven:v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8v8"
        assert newest(db, pid)[0] == slot + 1  # the damaged one was dropped, the new slot snapshotted
    finally:
        node.close()
