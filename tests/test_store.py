"""Both stores against the real thing (SQLite files, a throwaway PostgreSQL): round trips, constraints,
reopen, and kill -9 durability. Backend-specific behaviour is at the end."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store import SQLiteStore, Store, open_store
from tests.helpers.store_rows import OWNER, assignment, msg
from tests.helpers.threads import in_threads, started


@pytest.fixture
def store(store_spec: str):
    s = open_store(store_spec)
    yield s
    s.close()


def test_layout_on_disk(tmp_path: Path):
    SQLiteStore(tmp_path).close()
    assert (tmp_path / "aonode.sqlite3").is_file() and (tmp_path / "snapshots").is_dir()


def test_processes_and_messages(store: Store):
    proc = Message.create(owner=OWNER, tags=[("Type", "Process")])
    store.put_process(proc.id, proc)
    store.put_message(msg(1))
    assert store.get_process(proc.id) == proc
    assert store.get_message(msg(1).id) == msg(1)
    assert store.get_message(proc.id) == proc  # a process message is also a message
    assert store.get_process("nope") is None and store.get_message("nope") is None
    assert store.list_processes() == [proc.id]


def test_assignments_are_unique_per_slot_and_message(store: Store):
    for pid in ("p", "q"):  # listed: a scheduled message is found by id through the listed processes
        store.put_process(pid, Message.create(owner=OWNER, tags=[("Type", "Process")], data=pid))
    store.append_assignment(assignment("p", 0, msg(0)))
    store.append_assignment(assignment("p", 1, msg(1)))
    with pytest.raises(BadInput, match="already assigned"):
        store.append_assignment(assignment("p", 1, msg(2)))  # slot taken
    with pytest.raises(BadInput, match="already assigned"):
        store.append_assignment(assignment("p", 2, msg(1)))  # message already in this process
    store.append_assignment(assignment("q", 0, msg(1)))  # another process may carry it
    assert store.get_assignment("p", 1) == assignment("p", 1, msg(1))
    assert store.assignment_for_message("p", msg(1).id).slot == 1
    assert store.get_message(msg(1).id) == msg(1)
    assert store.last_assignment("p").slot == 1
    assert store.last_assignment("zzz") is None and store.get_assignment("p", 9) is None


def test_assignment_ranges(store: Store):
    for i in range(10):
        store.append_assignment(assignment("p", i, msg(i)))
    assert [a.slot for a in store.assignments("p", 3, 6)] == [3, 4, 5, 6]
    assert [a.slot for a in store.assignments("p", 8)] == [8, 9]
    assert [a.slot for a in store.assignments("p", 0, None, 3)] == [0, 1, 2]
    assert store.assignments("other") == []


def test_results_of_a_batch_land_together(store: Store):
    rows = [(slot, msg(slot).id, {"Output": {"data": f"b{slot}"}}) for slot in range(3, 70)]
    store.put_results("p", rows)
    assert store.last_result_slot("p") == 69
    assert [body["Output"]["data"] for _, body in store.results("p")] == [f"b{s}" for s in range(3, 70)]
    store.put_results("p", [(5, msg(5).id, {"again": True})])  # a recomputed slot replaces its row
    assert store.get_result("p", 5) == {"again": True}


def test_results_and_caches(store: Store):
    for i in range(6):
        store.put_result("p", i, msg(i).id, {"Output": {"data": f"out{i}"}, "Messages": [],
                                             "raw": b"\x00\x01"})
    assert store.get_result("p", 2)["Output"]["data"] == "out2"
    assert store.get_result("p", 2)["raw"] == b"\x00\x01"
    assert store.get_result_by_message("p", msg(4).id) == (4, store.get_result("p", 4))
    assert store.get_result("p", 9) is None and store.get_result_by_message("p", "x") is None
    assert [s for s, _ in store.results("p", 1, 4)] == [1, 2, 3, 4]
    assert [s for s, _ in store.results("p", descending=True, limit=2)] == [5, 4]
    assert store.last_result_slot("p") == 5 and store.last_result_slot("q") is None

    store.put_cache("p", 0, {"balance": 1})
    store.put_cache("p", 4, {"balance": 5, "nested": {"a": [1, 2]}})
    assert store.get_cache("p") == (4, {"balance": 5, "nested": {"a": [1, 2]}})
    assert store.get_cache("p", 3) == (0, {"balance": 1})
    assert store.get_cache("p", -1) is None


def test_caches_as_changes_between_full_copies(store: Store):
    """Issue 10 item 14: a patching slot stores what it merged; every slot reads back the whole cache."""
    from aonode.engine.store.cache_log import MAX_CHANGES, merge

    expected: dict = {}
    seen: dict[int, dict] = {}
    for slot in range(1, MAX_CHANGES + 40):
        change = {"balances": {f"k{slot % 7}": slot}, "last": slot} if slot % 5 else {"list": [slot]}
        merge(expected, change)
        store.put_cache("c", slot, expected, [change])
        seen[slot] = json_copy(expected)
    store.put_cache("c", MAX_CHANGES + 40, expected)  # a snapshot's full copy
    for slot in (1, 2, 7, MAX_CHANGES - 1, MAX_CHANGES, MAX_CHANGES + 1, MAX_CHANGES + 39):
        assert store.get_cache("c", slot) == (slot, seen[slot])
    assert store.get_cache("c") == (MAX_CHANGES + 40, expected)
    assert store.get_cache("c", 0) is None


def json_copy(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value))


def test_sqlite_small_patches_after_a_big_one_store_only_their_change(tmp_path: Path):
    """Issue 10 item 14: 20 one-key patches after a 100k-key patch used to add 20 full copies (21 MB)."""
    from aonode.engine.store.cache_log import merge

    store = SQLiteStore(tmp_path)
    big = {"balances": {f"address-{i:06d}": str(i) for i in range(100_000)}}
    cache = merge({}, big)
    store.put_cache("p", 1, cache, [big])

    def db_bytes() -> int:
        conn = store._conn()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return (tmp_path / "aonode.sqlite3").stat().st_size

    before = db_bytes()
    for slot in range(2, 22):
        change = {"balances": {"address-000007": str(slot)}}
        store.put_cache("p", slot, merge(cache, change), [change])
    assert db_bytes() - before < 200_000
    assert store.get_cache("p")[1]["balances"]["address-000007"] == "21"
    assert store.get_cache("p", 5)[1]["balances"]["address-000007"] == "5"
    assert len(store.get_cache("p")[1]["balances"]) == 100_000
    store.close()


def test_snapshots(store: Store):
    blobs = {slot: os.urandom(100) + bytes([slot]) for slot in (5, 10)}
    shas = {slot: hashlib.sha256(b).hexdigest() for slot, b in blobs.items()}
    for slot in blobs:
        store.put_snapshot("p", slot, shas[slot], blobs[slot])
    assert store.latest_snapshot("p") == (10, shas[10], blobs[10])
    assert store.latest_snapshot("p", 9) == (5, shas[5], blobs[5])
    assert store.latest_snapshot("p", 4) is None and store.latest_snapshot("q") is None
    store.put_snapshot("p", 10, shas[5], blobs[5])  # the same slot again replaces it
    assert store.latest_snapshot("p") == (10, shas[5], blobs[5])
    big = os.urandom(9 << 20)  # more than one PostgreSQL chunk
    store.put_snapshot("p", 12, hashlib.sha256(big).hexdigest(), big)
    assert store.latest_snapshot("p")[2] == big
    with pytest.raises(BadInput):
        store.put_snapshot("p", 11, "../../etc/passwd", b"x")


def test_chunked_snapshots_keep_the_newest_and_collect_unreferenced_chunks(store: Store):
    from aonode.engine.store.rows import KEEP_SNAPSHOTS
    from aonode.engine.wasm.chunked import CHUNK, Manifest

    def chunk(n: int) -> tuple[bytes, str]:
        raw = bytes([n]) * CHUNK
        return raw, hashlib.sha256(raw).hexdigest()

    shared_raw, shared = chunk(200)
    names = {}
    for slot in range(KEEP_SNAPSHOTS + 3):
        own_raw, own = chunk(slot + 1)
        manifest = Manifest(2 * CHUNK, b"{}", (bytes.fromhex(shared), bytes.fromhex(own)))
        added = {own: b"z" + own_raw[:9], **({shared: b"s"} if slot == 0 else {})}  # stand-ins for zstd
        store.put_snapshot("p", slot, manifest.name, manifest.to_bytes(), added)
        names[slot] = manifest.name
    newest = store.latest_snapshot("p")
    assert newest is not None and newest[:2] == (KEEP_SNAPSHOTS + 2, names[KEEP_SNAPSHOTS + 2])
    assert Manifest.from_bytes(newest[2], newest[1]).stored_hashes() == {shared, chunk(KEEP_SNAPSHOTS + 3)[1]}
    assert store.latest_snapshot("p", 2) is None  # only the newest KEEP_SNAPSHOTS stay
    store.collect_chunks()
    kept = {chunk(slot + 1)[1] for slot in range(3, KEEP_SNAPSHOTS + 3)}
    gone = {chunk(slot + 1)[1] for slot in range(3)}
    found = store.get_chunks(sorted(kept | gone | {shared}))
    assert set(found) == kept | {shared} and found[shared] == b"s"
    store.drop_snapshot("p", KEEP_SNAPSHOTS + 2)
    assert store.latest_snapshot("p")[0] == KEEP_SNAPSHOTS + 1


def test_sqlite_snapshot_files(tmp_path: Path):
    store = SQLiteStore(tmp_path)
    blobs = {slot: os.urandom(100) + bytes([slot]) for slot in (5, 10)}
    shas = {slot: hashlib.sha256(b).hexdigest() for slot, b in blobs.items()}
    for slot in blobs:
        store.put_snapshot("p", slot, shas[slot], blobs[slot])
    assert (tmp_path / "snapshots" / shas[10]).read_bytes() == blobs[10]
    (tmp_path / "snapshots" / shas[10]).unlink()  # a lost file falls back to an older snapshot
    assert store.latest_snapshot("p")[0] == 5
    store.close()


def test_reopen_sees_everything(store_spec: str):
    first = open_store(store_spec)
    proc = Message.create(owner=OWNER, tags=[("Type", "Process")])
    first.put_process(proc.id, proc)
    first.append_assignment(assignment(proc.id, 0, proc))
    first.put_result(proc.id, 0, proc.id, {"ok": True})
    first.put_cache(proc.id, 0, {"k": "v"})
    sha = hashlib.sha256(b"mem").hexdigest()
    first.put_snapshot(proc.id, 0, sha, b"snapshot-bytes")
    first.close()

    second = open_store(store_spec)
    assert second.list_processes() == [proc.id]
    assert second.get_assignment(proc.id, 0).message == proc
    assert second.get_result(proc.id, 0) == {"ok": True}
    assert second.get_cache(proc.id) == (0, {"k": "v"})
    assert second.latest_snapshot(proc.id) == (0, sha, b"snapshot-bytes")
    second.close()


def test_threads_write_and_read_concurrently(store: Store):
    def worker(t: int) -> None:
        for i in range(30):
            m = msg(t * 1000 + i)
            store.append_assignment(assignment(f"p{t}", i, m))
            store.put_result(f"p{t}", i, m.id, {"t": t, "i": i})
            assert store.get_result(f"p{t}", i) == {"t": t, "i": i}

    assert in_threads(worker, 6) == []
    assert all(len(store.assignments(f"p{t}")) == 30 for t in range(6))


CHILD = textwrap.dedent("""
    import sys
    from aonode.engine.message import Message
    from aonode.engine.store import Assignment, open_store
    store = open_store(sys.argv[1])
    owner = sys.argv[2]
    for slot in range(1_000_000):
        m = Message.create(owner=owner, data=str(slot))
        store.append_assignment(Assignment(process="p", slot=slot, message_id=m.id,
            timestamp=slot, block_height=0, block_hash=None, epoch=0, hash_chain="c", message=m))
        print(slot, flush=True)
""")


def test_acknowledged_assignments_survive_kill_9(store_spec: str):
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_spec, OWNER],
                             stdout=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) >= 200:
                break
        child.send_signal(signal.SIGKILL)  # mid-way: the child is still appending
        rest = child.stdout.read()  # lines already written before the kill were acknowledged too
        acknowledged += [int(x) for x in rest.split()]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    store = open_store(store_spec)
    for slot in acknowledged:
        a = store.get_assignment("p", slot)
        assert a is not None and a.message.data == str(slot)
    assert store.last_assignment("p").slot >= acknowledged[-1]
    store.close()


def test_a_refused_append_among_concurrent_ones_leaves_the_others_stored(store: Store):
    """Appends arriving together share a commit (SQLite); one refused (slot taken) fails alone."""
    taken = msg(9000)
    store.append_assignment(assignment("busy", 0, taken))
    outcomes: dict[int, str] = {}

    def append(n: int) -> None:
        pid, m = ("busy", msg(9001)) if n % 4 == 0 else (f"free{n}", msg(9100 + n))
        try:
            store.append_assignment(assignment(pid, 0, m))
            outcomes[n] = "stored"
        except BadInput:
            outcomes[n] = "refused"

    assert in_threads(append, 16) == []
    assert [n for n, o in sorted(outcomes.items()) if o == "refused"] == [0, 4, 8, 12]
    for n in range(16):
        if n % 4:
            a = store.get_assignment(f"free{n}", 0)
            assert a is not None and a.message.id == msg(9100 + n).id
    assert store.get_assignment("busy", 0).message.id == taken.id


CONCURRENT_CHILD = textwrap.dedent("""
    import sys, threading
    from aonode.engine.message import Message
    from aonode.engine.store import Assignment, open_store
    store = open_store(sys.argv[1])
    owner = sys.argv[2]
    out = threading.Lock()
    def writer(t):
        for slot in range(1_000_000):
            m = Message.create(owner=owner, data=f"{t}:{slot}")
            store.append_assignment(Assignment(process=f"p{t}", slot=slot, message_id=m.id,
                timestamp=slot, block_height=0, block_hash=None, epoch=0, hash_chain="c", message=m))
            with out:
                print(t, slot, flush=True)
    for t in range(12):
        threading.Thread(target=writer, args=(t,)).start()
""")


def test_acknowledged_assignments_of_concurrent_writers_survive_kill_9(store_spec: str):
    """12 threads append at once (SQLite: their commits are grouped, one fsync for many); every
    assignment answered before the kill is there after it."""
    child = subprocess.Popen([sys.executable, "-c", CONCURRENT_CHILD, store_spec, OWNER],
                             stdout=subprocess.PIPE, text=True)
    acknowledged: list[tuple[int, int]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            t, slot = line.split()
            acknowledged.append((int(t), int(slot)))
            if len(acknowledged) >= 600:
                break
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split()
        acknowledged += [(int(t), int(s)) for t, s in zip(rest[::2], rest[1::2])]
    finally:
        child.kill()
        child.wait()
    store = open_store(store_spec)
    for t, slot in acknowledged:
        a = store.get_assignment(f"p{t}", slot)
        assert a is not None and a.message.data == f"{t}:{slot}"
    store.close()


def test_short_lived_threads_do_not_leak_connections(tmp_path: Path):
    store = SQLiteStore(tmp_path)

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    store.put_message(msg(1))
    before = open_fds()
    for _ in range(40):  # one at a time, as a worker pool that replaces its threads would
        started(lambda: store.get_message(msg(1).id)).join(30)
    assert open_fds() - before < 10
    store.close()


def test_assignment_batches_are_all_or_nothing(store: Store):
    store.append_assignment(assignment("p", 0, msg(0)))
    with pytest.raises(BadInput):
        store.append_assignments([assignment("p", 1, msg(1)), assignment("p", 2, msg(0))])
    assert store.last_assignment("p").slot == 0 and store.get_message(msg(1).id) is None
    store.append_assignments([assignment("p", 1, msg(1)), assignment("p", 2, msg(2))])
    assert [a.slot for a in store.assignments("p")] == [0, 1, 2]
