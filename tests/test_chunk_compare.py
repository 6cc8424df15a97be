"""The snapshot's compare (engine/wasm/chunk_compare.py): on this machine it runs in C, and its
answers are the Python way's, chunk for chunk, and a plain bytes comparison's: unchanged, flipped
back to the state two snapshots ago, or new, for memories with every kind of chunk; and snapshots
taken with it are the same, name for name, as with the Python compare, through Transfers, a grow,
an error, a rollback and a restore, with and without dirty-page tracking."""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import pytest

from aonode.engine.devices.wasm64 import loaded
from aonode.engine.errors import ComputeLimitExceeded
from aonode.engine.store.sqlite import SQLiteStore
from aonode.engine.wasm import Limits, chunk_compare as cc, written_pages as wp
from aonode.engine.wasm.chunked import CHUNK, Taken
from aonode.engine.wasm.instance import Instance
from aonode.engine.wasm.runtime import Image, Runtime
from tests.helpers.images import SPEC
from tests.helpers.token import TRANSFER_TOKEN as TOKEN

ENV = SPEC.env()
GROW = "Big = Big or {}; for i = 1, 150000 do Big[#Big + 1] = ('g' .. i):rep(12) end"


def test_the_compare_runs_in_c_on_this_machine() -> None:
    # CI runs on this machine type (with a C compiler): the fast way must be on, not quietly off.
    assert cc.native()


def expected(memory: bytearray, offsets: list[int], chunks: dict, older: dict) -> list[tuple[int, int]]:
    """What each chunk is, from bytes comparisons alone."""
    found = []
    for offset in offsets:
        now = bytes(memory[offset : offset + CHUNK])
        before, again = chunks.get(offset), older.get(offset)
        if again is not None and again is not before and now == again:
            found.append((offset, cc.BACK))
        elif now != (bytes(CHUNK) if before is None else before):
            found.append((offset, cc.NEW))
    return found


@pytest.mark.parametrize("threads", [1, 2])  # one on a 2-core machine, two where more cores are
@pytest.mark.parametrize("seed", range(6))
def test_each_chunk_is_unchanged_flipped_back_or_new_as_bytes_say(seed: int, threads: int, monkeypatch) -> None:
    monkeypatch.setattr(cc, "THREADS", threads)
    rng = random.Random(seed)
    count = rng.choice([48, 97])
    memory = bytearray(count * CHUNK)
    chunks: dict[int, bytes] = {}
    older: dict[int, bytes] = {}
    for index in range(count):
        offset = index * CHUNK
        state = rng.randrange(8)
        content = rng.randbytes(CHUNK)
        if state == 0:  # zero, and zero before (absent from the shadow)
            continue
        if state == 1:  # unchanged, the same object two snapshots ago
            chunks[offset] = older[offset] = content
        elif state == 2:  # unchanged since the previous snapshot, different two ago
            chunks[offset], older[offset] = content, rng.randbytes(CHUNK)
        elif state == 3:  # flipped back
            chunks[offset], older[offset] = rng.randbytes(CHUNK), content
        elif state == 4:  # equal bytes two snapshots ago, but the same object as before: not flipped
            chunks[offset] = older[offset] = bytes(content)
            content = bytearray(content)
            content[rng.randrange(CHUNK)] ^= 1
        elif state == 5:  # new: one byte differs from both, maybe the last one
            chunks[offset], older[offset] = bytes(content), bytes(content)
            content = bytearray(content)
            content[rng.choice([0, CHUNK - 1, rng.randrange(CHUNK)])] ^= 0x80
        elif state == 6:  # written where the shadow had zeros
            older[offset] = rng.randbytes(CHUNK)
        elif state == 7:  # zeroed where the shadow had data
            chunks[offset], content = content, bytes(CHUNK)
        memory[offset : offset + CHUNK] = content
    buffer = (ctypes.c_char * len(memory)).from_buffer(memory)
    address = ctypes.addressof(buffer)
    offsets = sorted(rng.sample(range(0, count * CHUNK, CHUNK), k=max(16, count - 3)))
    want = expected(memory, offsets, chunks, older)
    assert {code for _, code in want} == {cc.BACK, cc.NEW}
    native = list(cc.differences(address, offsets, chunks, older))
    monkeypatch.setenv(cc.ENV_SWITCH, "0")
    in_python = list(cc.differences(address, offsets, chunks, older))
    del buffer
    assert native == want
    assert in_python == want


@pytest.fixture(scope="module")
def aos(tmp_path_factory, aos_image) -> tuple[Runtime, Image]:
    runtime = Runtime(tmp_path_factory.mktemp("chunk-compare-wasm-cache"))
    return runtime, runtime.load(aos_image.read_bytes())


def transfer(n: int) -> str:
    tags = [{"name": "Action", "value": "Transfer"}, {"name": "Recipient", "value": f"R{n % 3}"}]
    return SPEC.message_json(n, "", tags=[*tags, {"name": "Quantity", "value": "1"}])


def snapshot_names(aos, tmp_path: Path) -> list[str]:
    """The snapshot names of a run: Transfers, a grow, an error, a rollback, a restore, more."""
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    names: list[str] = []
    inst = Instance(runtime, image, Limits(fuel=2_000_000_000))

    def step(n: int, message: str) -> None:
        try:
            inst.handle(message, ENV)
        except ComputeLimitExceeded:
            pass  # rolled back to the previous state
        taken: Taken = inst.snapshot_chunks().result()
        store.put_snapshot("p", n, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
        names.append(taken.memory_sha256)

    step(0, SPEC.spawn_json())
    step(1, SPEC.message_json(1, TOKEN))
    for n in range(2, 6):
        step(n, transfer(n))
    step(6, SPEC.message_json(6, GROW))
    step(7, SPEC.message_json(7, "error('on purpose')"))
    step(8, SPEC.message_json(8, "while true do X = (X or 0) + 1 end"))  # out of fuel: rolled back
    found = store.latest_snapshot("p", 7)
    assert found is not None
    inst.close()
    inst = Instance.restore(runtime, image, loaded(found[2], found[1], store.get_chunks))
    for n in range(9, 13):
        step(n, transfer(n))
    inst.close()
    store.close()
    return names


@pytest.mark.slow
@pytest.mark.parametrize("tracking", ["1", "0"])
def test_snapshots_compared_in_c_are_named_as_in_python(aos, tmp_path: Path, monkeypatch, tracking: str) -> None:
    monkeypatch.setenv(wp.ENV_SWITCH, tracking)
    in_c = snapshot_names(aos, tmp_path / "c")
    monkeypatch.setenv(cc.ENV_SWITCH, "0")
    in_python = snapshot_names(aos, tmp_path / "python")
    assert in_c == in_python
    assert len(set(in_c)) == len(in_c) - 1  # the rolled-back slot's state is its predecessor's


NATIVE_HERE = (
    "import os, sys\n"
    "from aonode.engine.wasm import chunk_compare as cc\n"
    "print(cc.native(), sorted(os.listdir(os.path.join(os.environ['AONODE_HOME'], 'native'))))\n"
)


def _native_in_a_new_process(home: Path) -> tuple[bool, list[str]]:
    import ast
    import os
    import subprocess
    import sys

    env = {**os.environ, "AONODE_HOME": str(home), cc.ENV_SWITCH: "1"}
    done = subprocess.run([sys.executable, "-c", NATIVE_HERE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    native, names = done.stdout.split(" ", 1)
    return native == "True", ast.literal_eval(names)


def test_a_damaged_cached_build_is_built_again_not_left_off_for_good(tmp_path: Path) -> None:
    """Review: a cached .so that does not load (truncated by a crash or a full disk, written by another
    compiler) turned the C compare off on that machine for good, silently (failed before: False)."""
    native, names = _native_in_a_new_process(tmp_path)
    assert native and len(names) == 1
    built = tmp_path / "native" / names[0]
    for damaged in (b"", b"not a shared object"):
        built.write_bytes(damaged)
        assert _native_in_a_new_process(tmp_path) == (True, names)
        assert built.stat().st_size > 1000


def test_two_processes_building_into_one_home_at_once_both_compare_in_c(tmp_path: Path) -> None:
    """Each builds in a temporary folder of its own and renames its build into place: both load a
    whole library, and only the library is left."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(_native_in_a_new_process, [tmp_path] * 4))
    assert all(native for native, _ in found)
    left = sorted(p.name for p in (tmp_path / "native").iterdir())
    assert len(left) == 1 and left[0].endswith(".so") and all(left[0] in names for _, names in found)
