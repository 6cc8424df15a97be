"""The chain tip a store keeps in memory (SQLiteStore keeps the last assignment per process so a
schedule does not decode its message again): it must always be what the schedule holds, after a
refused append, when another writer appends to the same store, and after a restart."""

from __future__ import annotations

import pytest

from aonode.engine.devices.scheduler import Scheduler, verify_chain
from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store import Store, open_store
from tests.helpers.store_rows import OWNER, assignment, msg


@pytest.fixture
def store(store_spec: str):
    s = open_store(store_spec)
    yield s
    s.close()


def spawned(store: Store, clock: list[int]) -> tuple[Scheduler, str]:
    scheduler = Scheduler(store, clock=lambda: clock[0])
    definition = Message.create(owner=OWNER, tags=[("Type", "Process"), ("Module", "m")], data="tip")
    scheduler.spawn(definition.id, definition)
    return scheduler, definition.id


def test_a_refused_batch_leaves_the_committed_tip(store: Store):
    store.append_assignments([assignment("p", 0, msg(0)), assignment("p", 1, msg(1))])
    with pytest.raises(BadInput):  # slot 2 goes in, then slot 3's message is taken: all rolled back
        store.append_assignments([assignment("p", 2, msg(2)), assignment("p", 3, msg(0))])
    last = store.last_assignment("p")
    assert last is not None and last.slot == 1 and last.message == msg(1)


def test_another_writer_moves_the_tip(store_spec: str):
    """Two stores on one database (two nodes, or a tool beside the node): each one's schedules
    follow the other's, in one unbroken hash chain."""
    clock = [5_000]
    first = open_store(store_spec)
    second = open_store(store_spec)
    try:
        scheduler, pid = spawned(first, clock)
        other = Scheduler(second, clock=lambda: clock[0])
        a1 = scheduler.schedule(pid, msg(1))
        clock[0] += 10
        a2 = other.schedule(pid, msg(2))
        a3 = scheduler.schedule(pid, msg(3))
        assert [a1.slot, a2.slot, a3.slot] == [1, 2, 3]
        assert first.last_assignment(pid) == second.last_assignment(pid) == a3
        assert a3.timestamp == clock[0]  # never behind slot 2's, which `first` did not write
        assert verify_chain(first.assignments(pid))
    finally:
        first.close()
        second.close()


def test_the_tip_after_a_restart_continues_the_chain(store_spec: str):
    clock = [7_000]
    store = open_store(store_spec)
    scheduler, pid = spawned(store, clock)
    before = [scheduler.schedule(pid, msg(n)) for n in range(1, 4)]
    store.close()
    again = open_store(store_spec)
    try:
        assert again.last_assignment(pid) == before[-1]
        after = Scheduler(again, clock=lambda: clock[0]).schedule(pid, msg(4))
        assert after.slot == 4 and verify_chain(again.assignments(pid))
        assert again.last_assignment(pid) == after
    finally:
        again.close()
