"""Dirty-page tracking for chunked snapshots (engine/wasm/written_pages.py): on this machine the
kernel tracks; every chunk written between two looks is reported (random writes into a real
wasmtime memory of the aos2_0_6 image, an anonymous and a memfd copy-on-write mapping, from Python
and from the kernel); snapshots taken with it are the same, name for name, as with the whole
compare (AONODE_DIRTY_PAGES=0), through Transfers, memory.grow, an Eval that errors, a rollback, a
restore, another thread, and a served node's backlog; and no fd stays behind an instance."""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from aonode.engine.devices.wasm64 import loaded
from aonode.engine.errors import ComputeLimitExceeded
from aonode.engine.store.sqlite import SQLiteStore
from aonode.engine.wasm import Limits, written_pages as wp
from aonode.engine.wasm.chunked import CHUNK, Taken
from aonode.engine.wasm.instance import Instance
from aonode.engine.wasm.runtime import Image, Runtime
from tests.helpers.images import SPEC
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

pytestmark = pytest.mark.slow  # real AOS instances and nodes

ENV = SPEC.env()
TOKEN = (
    "Balances = Balances or { [Owner] = 1000000 }\n"
    'Handlers.add("transfer", Handlers.utils.hasMatchingTag("Action", "Transfer"), function(msg)\n'
    "  local q = tonumber(msg.Quantity)\n"
    "  Balances[msg.From] = Balances[msg.From] - q\n"
    "  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + q\n"
    "end)"
)
GROW = "Big = Big or {}; for i = 1, 150000 do Big[#Big + 1] = ('g' .. i):rep(12) end"
RECIPIENT = "RECIPIENT" + "r" * 34


@pytest.fixture(scope="module")
def aos(tmp_path_factory, aos_image) -> tuple[Runtime, Image]:
    runtime = Runtime(tmp_path_factory.mktemp("written-pages-wasm-cache"))
    return runtime, runtime.load(aos_image.read_bytes())


def test_the_kernel_tracks_written_pages_on_this_machine() -> None:
    # CI runs on this machine type: tracking must be on, not quietly fall back to the whole compare.
    assert wp.available()


# ---- (1) every written chunk is reported ------------------------------------------------------


def address_of(memory: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(memory)
    address = ctypes.addressof(anchor)
    del anchor
    return address


@pytest.fixture(scope="module")
def memories(aos) -> Iterator[dict[str, tuple[int, int]]]:
    """address, size of: a real wasmtime memory (aos2_0_6 after spawn), an anonymous mapping, and a
    memfd copy-on-write mapping with data in it (how wasmtime maps an image's initial memory)."""
    runtime, image = aos
    inst = Instance(runtime, image)
    inst.handle(SPEC.spawn_json(), ENV)
    anonymous = mmap.mmap(-1, 64 << 20)
    fd = os.memfd_create("test-written-pages")
    os.write(fd, os.urandom(4 << 20))
    os.ftruncate(fd, 64 << 20)
    memfd = mmap.mmap(fd, 64 << 20, flags=mmap.MAP_PRIVATE)
    os.close(fd)
    yield {
        "wasmtime": (inst.host.base(), inst.memory_size),
        "anonymous": (address_of(anonymous), len(anonymous)),
        "memfd": (address_of(memfd), len(memfd)),
    }
    inst.close()
    anonymous.close()
    memfd.close()


CYCLE = 4  # looks from one protection to the next in the tests of the tracker alone
WRITES = st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=3 * CHUNK // 2), st.booleans()),
    max_size=6,
)


def look(tracker: wp.WrittenPages, address: int, size: int, changed: Iterable[int] = ()) -> list[int] | None:
    """A snapshot's look: the written chunks, then (after its compare) `changed` left unprotected."""
    found = tracker.take_written(address, size)
    tracker.protect(changed)
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    writes=st.lists(st.tuples(WRITES, st.booleans()), min_size=1, max_size=CYCLE * 2 + 4),
    which=st.sampled_from(["wasmtime", "anonymous", "memfd"]),
)
def test_every_written_chunk_is_reported(memories, writes: list, which: str) -> None:
    address, size = memories[which]
    tracker = wp.WrittenPages(CYCLE)
    assert look(tracker, address, size) is None  # the first look: unknown
    since_protected: set[int] = set()  # and the chunks left unprotected then
    for batch, keep in writes:
        touched: set[int] = set()
        for where, data, by_kernel in batch:
            offset = min(int(where * size), size - len(data))
            if by_kernel:  # read(2) fills the memory: the kernel writes it
                read, write = os.pipe()
                os.write(write, data)
                buffer = (ctypes.c_char * len(data)).from_address(address + offset)
                os.readv(read, [memoryview(buffer).cast("B")])
                os.close(read)
                os.close(write)
            else:
                ctypes.memmove(address + offset, data, len(data))
            touched.update(range(offset - offset % CHUNK, offset + len(data), CHUNK))
        since_protected |= touched
        reported = look(tracker, address, size, touched if keep else ())  # `keep`: as a compare says
        assert reported is not None
        assert touched <= set(reported) <= since_protected  # all written, and only what was written
        if tracker.protected:
            since_protected = set(touched) if keep else set()  # protected again by this look


def test_the_chunks_a_look_found_changed_stay_unprotected(memories) -> None:
    """The next message writes most of them again (Lua's collector): protected, each of their pages
    would take a fault in its CPU time. Chunks left unprotected take none and stay reported."""
    address, size = memories["anonymous"]
    tracker = wp.WrittenPages(CYCLE)
    hot, cold = list(range(0, 8 * CHUNK, CHUNK)), list(range(8 * CHUNK, 16 * CHUNK, CHUNK))

    def faults_writing(offsets: list[int]) -> int:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for offset in offsets:
            for page in range(offset, offset + CHUNK, mmap.PAGESIZE):
                ctypes.memset(address + page, 9, 1)
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

    faults_writing(hot + cold)  # populated
    assert look(tracker, address, size, hot) is None and tracker.protected
    pages = len(cold) * CHUNK // mmap.PAGESIZE
    assert faults_writing(cold) >= pages > 4 * faults_writing(hot)
    assert look(tracker, address, size) == hot + cold
    tracker.close()


def test_a_memory_written_too_densely_to_pay_is_protected_ever_more_rarely(memories) -> None:
    """Every page written at every look: each cycle's faults save no compare, so the next cycle is
    RELEARN_GROWTH times as long; the answers stay right throughout; a sparse cycle resets it."""
    address, size = memories["anonymous"]
    tracker = wp.WrittenPages(CYCLE)

    def write_pages(count: int) -> None:
        for page in range(count):
            ctypes.memset(address + page * mmap.PAGESIZE, page % 251, 1)

    everything = list(range(0, size, CHUNK))
    assert look(tracker, address, size) is None and tracker.protected  # armed
    cycle = CYCLE
    for n in range(1, cycle + 1):
        write_pages(size // mmap.PAGESIZE)
        assert look(tracker, address, size) == everything
        assert tracker.protected == (n == cycle)  # protected again only at the cycle's end
    cycle *= wp.RELEARN_GROWTH
    assert tracker.cycle == cycle
    assert look(tracker, address, size) == []  # nothing written since it protected
    write_pages(size // mmap.PAGESIZE)  # (the quiet look above was the new cycle's first)
    assert look(tracker, address, size) == everything
    assert look(tracker, address, size) == everything  # unprotected pages stay reported
    for n in range(4, cycle + 1):
        write_pages(size // mmap.PAGESIZE)
        assert look(tracker, address, size) == everything
        assert tracker.protected == (n == cycle)
    assert tracker.cycle == min(cycle * wp.RELEARN_GROWTH, wp.RELEARN_MAX)
    tracker.close()
    assert look(tracker, address, size) is None and tracker.cycle == CYCLE  # armed again
    for n in range(1, 2 * CYCLE + 1):
        write_pages(3)
        assert look(tracker, address, size) == [0]  # sparse: tracked through its relearns
        assert tracker.cycle == CYCLE and tracker.protected == (n % CYCLE == 0)


def test_a_memory_grown_in_place_is_tracked_on(memories) -> None:
    address, size = memories["anonymous"]
    half = size // 2
    tracker = wp.WrittenPages(CYCLE)
    assert look(tracker, address, half) is None  # armed: the first half
    ctypes.memset(address + CHUNK, 1, 1)
    assert look(tracker, address, half) == [CHUNK]
    ctypes.memset(address + 2 * CHUNK, 1, 1)
    ctypes.memset(address + half + CHUNK, 1, 1)  # the new part, before the look that sees it grown
    assert look(tracker, address, size) is None  # grown: compare everything, then protect it all
    ctypes.memset(address + 3 * CHUNK, 1, 1)
    ctypes.memset(address + half + 5 * CHUNK, 1, 1)
    assert look(tracker, address, size) == [3 * CHUNK, half + 5 * CHUNK]
    tracker.close()


# ---- (2) the same snapshots with and without tracking -----------------------------------------


def transfer(n: int) -> str:
    tags = [
        {"name": "Action", "value": "Transfer"},
        {"name": "Recipient", "value": RECIPIENT},
        {"name": "Quantity", "value": str(n)},
    ]
    return SPEC.message_json(n, "", tags=tags)


def snapshot_names(aos, tmp_path: Path) -> list[str]:
    """Take a chunked snapshot after every message of one scenario, on two threads in turn; store
    them; restore from the one in the middle and go on from there."""
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    names: list[str] = []
    inst = Instance(runtime, image, Limits(fuel=2_000_000_000))
    other = ThreadPoolExecutor(max_workers=1)  # the wasm-ahead worker's way: another thread

    def put(slot: int):
        def then(taken: Taken) -> None:
            store.put_snapshot("p", slot, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)

        return then

    def step(n: int, message: str) -> None:
        def run() -> None:
            try:
                inst.handle(message, ENV)
            except ComputeLimitExceeded:
                pass  # rolled back to the previous state
            names.append(inst.snapshot_chunks(put(n)).result().memory_sha256)

        other.submit(run).result() if n % 2 else run()

    step(0, SPEC.spawn_json())
    step(1, SPEC.message_json(1, TOKEN))
    for n in range(2, 6):
        step(n, transfer(n))
    step(6, SPEC.message_json(6, GROW))  # memory.grow: a new size
    step(7, SPEC.message_json(7, "error('on purpose')"))
    step(8, SPEC.message_json(8, "while true do X = (X or 0) + 1 end"))  # out of fuel: rolled back
    for n in range(9, 12):
        step(n, transfer(n))
    found = store.latest_snapshot("p", 9)
    assert found is not None
    inst.close()
    inst = Instance.restore(runtime, image, loaded(found[2], found[1], store.get_chunks))
    for n in range(12, 16):
        step(n, transfer(n) if n != 13 else SPEC.message_json(n, GROW))
    inst.close()
    other.shutdown()
    store.close()
    return names


def spy(monkeypatch) -> list:
    looks: list = []
    real = wp.WrittenPages.take_written

    def take_written(self, address: int, size: int):
        found = real(self, address, size)
        looks.append((threading.current_thread().name, found))
        return found

    monkeypatch.setattr(wp.WrittenPages, "take_written", take_written)
    return looks


def test_snapshots_with_tracking_are_the_same_as_with_the_whole_compare(aos, tmp_path: Path, monkeypatch) -> None:
    looks = spy(monkeypatch)
    tracked = snapshot_names(aos, tmp_path / "tracked")
    answered = [found for _, found in looks if found is not None]
    # Tracked but for the first look of each memory and after a grow.
    assert len(answered) >= 5 and any(len(found) < 100 for found in answered)
    looks.clear()
    monkeypatch.setenv(wp.ENV_SWITCH, "0")
    whole = snapshot_names(aos, tmp_path / "whole")
    assert all(found is None for _, found in looks)  # the fallback: every chunk compared
    assert tracked == whole
    assert len(set(tracked)) == len(tracked) - 1  # the rolled-back slot's state is its predecessor's


def test_one_restored_snapshot_in_two_instances_snapshots_each_right(aos, tmp_path: Path) -> None:
    # Both instances share the stored snapshot's shadow: each take is compared with what the other
    # took last, so the written pages of its own memory would not say what differs.
    runtime, image = aos
    store = SQLiteStore(tmp_path)
    first = Instance(runtime, image)
    first.handle(SPEC.spawn_json(), ENV)
    taken = first.snapshot_chunks().result()
    store.put_snapshot("p", 0, taken.memory_sha256, taken.to_bytes(), taken.new_chunks)
    first.close()
    stored = loaded(taken.to_bytes(), taken.memory_sha256, store.get_chunks)
    pair = [Instance.restore(runtime, image, stored) for _ in range(2)]
    for n in range(1, 4):
        for which, inst in enumerate(pair):
            if n == 1 and which == 1:  # a difference the other one never writes over
                ctypes.memset(inst.host.base() + inst.memory_size - 4096, 0x55, 64)
            inst.handle(SPEC.message_json(n, f"V{which} = ('{which}'):rep({n * 5000})"), ENV)
            again = inst.snapshot_chunks().result()
            store.put_snapshot("p", n * 2 + which, again.memory_sha256, again.to_bytes(), again.new_chunks)
            copy = Instance.restore(runtime, image, loaded(again.to_bytes(), again.memory_sha256, store.get_chunks))
            assert copy.memory_sha256() == inst.memory_sha256(), (n, which)
            copy.close()
    store.close()


def node_snapshots(data: Path) -> list[tuple[int, str]]:
    node = make_node(data)
    try:
        pid = node.spawn(definition(("Cache-Frequency", "1")))["process"]
        node.schedule(pid, eval_msg(pid, TOKEN))
        for n in range(12):
            node.schedule(pid, action(pid, "Transfer", ("Recipient", RECIPIENT), ("Quantity", "1"), nonce=f"t{n}"))
            if n == 5:
                node.schedule(pid, eval_msg(pid, GROW))
                node.schedule(pid, eval_msg(pid, "error('on purpose')"))
        node.now(pid)
        node.live.processes.flush()
    finally:
        node.close()
    with sqlite3.connect(data / "aonode.sqlite3") as db:
        rows = db.execute("SELECT slot, sha256 FROM snapshots WHERE process = ? ORDER BY slot", (pid,)).fetchall()
    return [(int(slot), str(name)) for slot, name in rows]


def test_a_served_backlog_snapshots_the_same_with_tracking(tmp_path: Path, monkeypatch) -> None:
    looks = spy(monkeypatch)
    tracked = node_snapshots(tmp_path / "tracked")
    assert any(found is not None for _, found in looks)
    assert any(thread != threading.main_thread().name and found is not None for thread, found in looks)
    monkeypatch.setenv(wp.ENV_SWITCH, "0")
    assert node_snapshots(tmp_path / "whole") == tracked


# ---- (4) resources ----------------------------------------------------------------------------


def test_no_fd_or_mapping_stays_behind_200_instances(aos) -> None:
    runtime, image = aos
    assert wp.available()  # its two fds are open before counting
    Instance(runtime, image).close()  # and wasmtime's memfd of the image's initial memory
    fds, maps = len(os.listdir("/proc/self/fd")), len(Path("/proc/self/maps").read_text().splitlines())
    for _ in range(200):
        inst = Instance(runtime, image)
        inst.snapshot_chunks().wait()
        inst.snapshot_chunks().wait()  # armed and scanned
        inst.close()
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert len(Path("/proc/self/maps").read_text().splitlines()) <= maps + 8


PROBE_WITHOUT_FDS = """
import os, resource
from aonode.engine.wasm import written_pages as wp
used = {int(fd) for fd in os.listdir("/proc/self/fd")}
used = {fd for fd in used if os.path.exists(f"/proc/self/fd/{fd}")}  # not listdir's own
limit = next(n for n in range(3, 1 << 16) if len(set(range(n)) - used) == 2)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))  # room for the two fds, none for the probe's
print(wp.available())
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(len(os.listdir("/proc/self/fd")) - 1 - len(used))
"""


def test_a_probe_that_cannot_make_its_memories_says_no_and_keeps_no_fd() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE_WITHOUT_FDS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "0"]
