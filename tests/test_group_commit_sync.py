"""Group commit with the fsync apart (engine/store/group_commit.py `sync`, SQLite's AONODE_SYNC_APART=1):
the writer commits the next group while the syncer fsyncs, and still no answer comes before the fsync
that follows its commit; one fsync covers every group committed while the one before it ran; a failed
fsync is each waiting request's answer. On SQLite: what was answered is there after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from aonode.engine.message import Message
from aonode.engine.store.group_commit import GroupCommitter, SyncNotRun
from aonode.engine.store.sqlite import SQLiteStore

WAIT = 10.0


class Disk:
    """A transaction that records what it committed, and a sync that can be held and counts its calls."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.transactions = 0
        self.synced_through = 0  # how many of `committed` the last sync covered
        self.syncs = 0
        self.hold = threading.Event()
        self.syncing = threading.Event()
        self.fail: BaseException | None = None

    def transaction(self, steps: Sequence[Callable[[], None]]) -> None:
        for step in steps:
            step()
        self.transactions += 1

    def sync(self) -> None:
        covered = len(self.committed)
        self.syncing.set()
        assert self.hold.wait(WAIT)
        self.syncs += 1
        if self.fail is not None:
            failure, self.fail = self.fail, None  # once: the disk says all is well again after it
            raise failure
        self.synced_through = covered


def committer(disk: Disk) -> GroupCommitter:
    return GroupCommitter(disk.transaction, "test-sync", 0.0, disk.sync)


def submit(group: GroupCommitter, disk: Disk, name: str):  # type: ignore[no-untyped-def]
    def run() -> str:
        disk.committed.append(name)
        return name

    return group.submit_later(run, key="p")


def test_no_answer_before_the_sync_after_its_commit_and_one_sync_covers_the_groups_meanwhile() -> None:
    disk = Disk()
    group = committer(disk)
    try:
        a = submit(group, disk, "a")
        assert disk.syncing.wait(WAIT)  # a is committed; its sync is held
        later = [submit(group, disk, name) for name in "bcd"]  # committed while the sync waits
        for _ in range(1000):  # until the writer has committed b, c, d and queued their groups for the syncer
            if len(disk.committed) == 4 and group._committed.qsize() == disk.transactions - 1:
                break
            time.sleep(0.01)
        assert disk.committed == ["a", "b", "c", "d"]  # the writer did not wait for the fsync
        assert not a.done() and not any(f.done() for f in later)  # nothing answered before its sync
        disk.hold.set()
        assert [f.result(WAIT) for f in (a, *later)] == ["a", "b", "c", "d"]
        assert disk.synced_through == 4 and disk.syncs == 2  # a's sync, then one for b, c, d
    finally:
        disk.hold.set()
        group.close()


def test_a_failed_sync_is_the_answer_of_what_it_covered_and_of_everything_after_it() -> None:
    """After a failed fsync Linux may drop the pages it did not write, and the next fsync then succeeds; WAL
    recovery stops at the first lost frame. So no later sync can make anything committed since durable: not
    a new request, not one committed meanwhile (a retry of `a` would be answered `a`'s row by its dedup).
    (Failed before: `b` was answered once the next sync returned.)"""
    disk = Disk()
    disk.fail = OSError(5, "EIO")
    group = committer(disk)
    try:
        a = submit(group, disk, "a")
        assert disk.syncing.wait(WAIT)  # a's sync runs (and will fail)
        meanwhile = submit(group, disk, "m")  # committed while it runs
        for _ in range(1000):
            if len(disk.committed) == 2:
                break
            time.sleep(0.01)
        disk.hold.set()
        with pytest.raises(OSError, match="EIO"):
            a.result(WAIT)
        with pytest.raises(Exception, match="sync of the store failed"):
            meanwhile.result(WAIT)
        with pytest.raises(Exception, match="sync of the store failed"):
            submit(group, disk, "b").result(WAIT)
        assert disk.syncs == 1  # no sync after the failure: it could not make them durable
    finally:
        disk.hold.set()
        group.close()


CHILD = """
import os, sys
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment
from aonode.engine.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
assert store._sync_apart
for n in range(int(sys.argv[2])):
    m = Message.create(owner="o" * 43, data=str(n))
    placed = Assignment("p", n, m.id, n, 0, None, 0, str(n), m)
    store.sequence_later("p", lambda view, placed=placed: ([placed], None)).result()
    print(n, flush=True)
os.kill(os.getpid(), 9)
"""


def test_sqlite_with_the_sync_apart_keeps_every_answered_row_through_kill_9(tmp_path: Path) -> None:
    env = {**os.environ, "AONODE_SYNC_APART": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "50"], env=env, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    answered = [int(line) for line in child.stdout.split()]
    assert answered == list(range(50))
    store = SQLiteStore(tmp_path)
    try:
        assert [a.slot for a in store.assignments("p")] == answered
        expected = [Message.create(owner="o" * 43, data=str(n)) for n in answered]
        assert [a.message for a in store.assignments("p")] == expected
    finally:
        store.close()


def test_a_sync_that_never_reached_the_disk_leaves_the_next_one_its_chance() -> None:
    """A sync that failed before asking the disk (its WAL did not open: out of file descriptors) is that
    group's answer, but the store goes on: the pages are still to be written, so the next sync covers them."""
    disk = Disk()
    disk.fail = SyncNotRun("the WAL file did not open for its sync: [Errno 24] Too many open files")
    disk.hold.set()
    group = committer(disk)
    try:
        with pytest.raises(SyncNotRun):
            submit(group, disk, "a").result(WAIT)
        assert submit(group, disk, "b").result(WAIT) == "b"
        assert disk.synced_through == 2  # the later sync covered a's row too
    finally:
        group.close()


def test_sqlites_sync_of_a_missing_wal_is_a_sync_not_run(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    try:
        store.sync_wal()  # the WAL is there while the store is open
        os.rename(f"{store.db_path}-wal", tmp_path / "moved-wal")
        with pytest.raises(SyncNotRun):
            store.sync_wal()
        os.rename(tmp_path / "moved-wal", f"{store.db_path}-wal")
    finally:
        store.close()
