"""Snapshots: zstd memory + host state, named by the raw memory's sha256; restore continues identically."""
from __future__ import annotations

import hashlib

import pytest

from aonode.engine.aos import ProcessSpec, parse_result
from aonode.engine.wasm import Instance, Runtime, Snapshot

SPEC = ProcessSpec(pid="PROCESS" + "p" * 36, owner="OWNER" + "o" * 38, module_id="M" * 43)
ENV = SPEC.env()
SPAWN = SPEC.spawn_json()
CODES = ["t = {}", "for i = 1, 500 do t[i] = ('row' .. i):rep(20) end", "return #t",
         "print(#t[500]); return t[7]:sub(1, 8)", "t = nil; collectgarbage(); return 'freed'"]
eval_json = SPEC.message_json


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Runtime:
    return Runtime(tmp_path_factory.mktemp("wasm-cache"))


@pytest.fixture(scope="module")
def image(runtime, aos_image):
    return runtime.load(aos_image.read_bytes())


def test_two_fresh_instances_agree_after_every_message(runtime, image):
    a, b = Instance(runtime, image), Instance(runtime, image)
    assert a.memory_sha256() == b.memory_sha256()
    for n, msg in enumerate([SPAWN] + [eval_json(i, c) for i, c in enumerate(CODES, 1)]):
        assert a.handle(msg, ENV) == b.handle(msg, ENV)
        assert a.memory_sha256() == b.memory_sha256(), f"diverged after message {n}"


def test_snapshot_round_trip_and_name(runtime, image):
    inst = Instance(runtime, image)
    inst.handle(SPAWN, ENV)
    inst.handle(eval_json(1, "x = 'snap'"), ENV)
    snap = inst.snapshot()
    raw = snap.raw()
    assert len(raw) == snap.memory_size == inst.memory_size
    assert snap.memory_sha256 == hashlib.sha256(raw).hexdigest() == inst.memory_sha256()
    assert len(snap.compressed) < snap.memory_size // 20
    again = Snapshot.from_bytes(snap.to_bytes())
    assert again == snap and again.host_state == snap.host_state
    with pytest.raises(ValueError):
        Snapshot.from_bytes(b"not a snapshot")


def test_restore_continues_with_identical_results(runtime, image):
    original = Instance(runtime, image)
    original.handle(SPAWN, ENV)
    for n, code in enumerate(CODES[:2], 1):
        original.handle(eval_json(n, code), ENV)
    snap = Snapshot.from_bytes(original.snapshot().to_bytes())
    restored = Instance.restore(runtime, image, snap)
    assert restored.memory_size == original.memory_size > 71303168  # grown past the initial memory
    assert restored.memory_sha256() == original.memory_sha256()
    for n, code in enumerate(CODES[2:], 3):
        left, right = original.handle(eval_json(n, code), ENV), restored.handle(eval_json(n, code), ENV)
        assert left == right
        assert original.memory_sha256() == restored.memory_sha256()
    assert parse_result(left).output == "freed"


def test_sparse_copy_keeps_every_non_zero_byte_and_names_like_the_whole_memory():
    """Background snapshots copy only non-zero chunks; a chunk whose one non-zero byte is its last,
    or its first, must still be copied, and the streamed snapshot must equal the one-shot one."""
    import ctypes

    from aonode.engine.wasm.snapshot import RESTORE_CHUNK, SparseCopy

    size = 5 * RESTORE_CHUNK + 1000  # a short last chunk too
    buf = (ctypes.c_ubyte * size)()
    memory = memoryview(buf).cast("B")
    memory[RESTORE_CHUNK - 1] = 7  # last byte of chunk 0
    memory[3 * RESTORE_CHUNK] = 9  # first byte of chunk 3
    memory[size - 1] = 1  # last byte of the short chunk
    copy = SparseCopy.of(memory, ctypes.addressof(buf))
    assert [start for start, _ in copy.chunks] == [0, 3 * RESTORE_CHUNK, 5 * RESTORE_CHUNK]
    assert b"".join(bytes(piece) for piece in copy.pieces()) == bytes(memory)
    streamed = Snapshot.from_pieces(copy.size, copy.pieces(), {"time": 3})
    whole = Snapshot.from_memory(bytes(memory), {"time": 3})
    assert streamed.memory_sha256 == whole.memory_sha256 == hashlib.sha256(bytes(memory)).hexdigest()
    assert streamed.raw() == bytes(memory) and streamed.host_state == {"time": 3}


def test_background_snapshot_of_a_live_instance_equals_a_snapshot(runtime, image):
    inst = Instance(runtime, image)
    for n, msg in enumerate([SPAWN] + [eval_json(i, c) for i, c in enumerate(CODES[:3], 1)]):
        inst.handle(msg, ENV)
    stored = []
    pending = inst.snapshot_in_background(stored.append)
    inst.handle(eval_json(9, "t[1] = 'changed after the copy'"), ENV)  # must not reach the snapshot
    snap = pending.result()
    assert stored == [snap]
    copy = Instance.restore(runtime, image, snap)
    assert parse_result(copy.handle(eval_json(10, "return t[1]:sub(1, 4)"), ENV)).output == "row1"
