"""scheduler@1.0 on both real stores (SQLite, PostgreSQL): slots, pages, hash chain, idempotency,
concurrency within one node and across nodes sharing one store."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.scheduler import PAGE_LIMIT, Scheduler, chain_link, verify_chain
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import Message, b64url, b64url_decode
from aonode.engine.store import Store, open_store
from tests.helpers.threads import in_threads


@pytest.fixture(scope="module")
def owner() -> str:
    return Wallet.generate("ed25519").address


class Clock:
    """A settable clock so timestamps are exact in asserts (the scheduler takes any callable)."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(store_spec: str):
    s = open_store(store_spec)
    yield s
    s.close()


def spawn(sched: Scheduler, owner: str, **tags: str) -> str:
    proc = Message.create(owner=owner, tags=[("Type", "Process"), *tags.items()])
    sched.spawn(proc.id, proc)
    return proc.id


def send(sched: Scheduler, pid: str, owner: str, n: int):
    return sched.schedule(pid, Message.create(owner=owner, target=pid, data=f"msg {n}"))


def test_spawn_is_slot_zero_and_idempotent(store: Store, owner: str):
    sched = Scheduler(store, clock=Clock())
    proc = Message.create(owner=owner, tags=[("Type", "Process")])
    a = sched.spawn(proc.id, proc)
    assert (a.slot, a.process, a.message_id, a.message) == (0, proc.id, proc.id, proc)
    assert a.hash_chain == b64url(hashlib.sha256(b64url_decode(proc.id)).digest())  # genesis
    assert sched.spawn(proc.id, proc) == a
    assert sched.current_slot(proc.id) == 0 and store.get_process(proc.id) == proc
    with pytest.raises(BadInput):
        sched.spawn("x" * 43, proc)


def test_unknown_process_is_not_found(store: Store, owner: str):
    sched = Scheduler(store)
    with pytest.raises(NotFound):
        send(sched, "a" * 43, owner, 1)
    with pytest.raises(NotFound):
        sched.page("a" * 43)
    with pytest.raises(NotFound):
        sched.current_slot("a" * 43)


def test_schedule_assigns_next_slots_and_json_shape(store: Store, owner: str):
    clock = Clock()
    sched = Scheduler(store, clock=clock, block_height=lambda: 1500, block_hash=lambda: "bh")
    pid = spawn(sched, owner)
    clock.now += 5
    a = send(sched, pid, owner, 1)
    assert a.slot == 1 and sched.current_slot(pid) == 1
    assert a.to_json() == {
        "process": pid,
        "slot": 1,
        "message": a.message_id,
        "timestamp": clock.now,
        "block-height": 1500,
        "block-hash": "bh",
        "epoch": 0,
        "hash-chain": chain_link(store.get_assignment(pid, 0).hash_chain, a.message_id),
        "body": a.message.to_legacy_json(),
    }


def test_duplicate_message_returns_original(store: Store, owner: str):
    clock = Clock()
    sched = Scheduler(store, clock=clock)
    pid = spawn(sched, owner)
    first = send(sched, pid, owner, 1)
    send(sched, pid, owner, 2)
    clock.now += 1000
    again = send(sched, pid, owner, 1)
    assert again == first and sched.current_slot(pid) == 2
    proc_again = sched.schedule(pid, store.get_process(pid))
    assert proc_again.slot == 0


def test_timestamps_never_go_backwards(store: Store, owner: str):
    clock = Clock(10_000)
    sched = Scheduler(store, clock=clock)
    pid = spawn(sched, owner)
    clock.now = 5_000  # host clock stepped back
    a = send(sched, pid, owner, 1)
    clock.now = 12_000
    b = send(sched, pid, owner, 2)
    assert (a.timestamp, b.timestamp) == (10_000, 12_000)


def test_pages_with_from_to_and_continues(store: Store, owner: str):
    sched = Scheduler(store, clock=Clock())
    pid = spawn(sched, owner)
    for n in range(1, 26):
        send(sched, pid, owner, n)  # slots 0..25
    page, more = sched.page(pid, 0, None, limit=10)
    assert [a.slot for a in page] == list(range(10)) and more
    page, more = sched.page(pid, 10, None, limit=10)
    assert [a.slot for a in page] == list(range(10, 20)) and more
    page, more = sched.page(pid, 20, None, limit=10)
    assert [a.slot for a in page] == list(range(20, 26)) and not more
    page, more = sched.page(pid, 3, 7)
    assert [a.slot for a in page] == [3, 4, 5, 6, 7] and not more
    page, more = sched.page(pid, 3, 7, limit=2)
    assert [a.slot for a in page] == [3, 4] and more
    page, more = sched.page(pid, 30, 40)
    assert page == [] and not more
    with pytest.raises(BadInput):
        sched.page(pid, 5, 2)


def test_page_is_capped_at_1000(store: Store, owner: str):
    sched = Scheduler(store, clock=Clock())
    pid = spawn(sched, owner)
    for n in range(1, PAGE_LIMIT + 5):
        send(sched, pid, owner, n)
    page, more = sched.page(pid, 0, None, limit=5000)
    assert len(page) == PAGE_LIMIT and more
    rest, more = sched.page(pid, page[-1].slot + 1)
    assert [a.slot for a in rest] == list(range(PAGE_LIMIT, PAGE_LIMIT + 5)) and not more


def test_hash_chain_verifies_and_tampering_is_detected(store: Store, owner: str):
    sched = Scheduler(store, clock=Clock())
    pid = spawn(sched, owner)
    for n in range(1, 10):
        send(sched, pid, owner, n)
    chain = store.assignments(pid)
    assert verify_chain(chain)
    assert verify_chain(chain[5:], previous=chain[4].hash_chain)
    assert not verify_chain(chain[5:])  # a middle piece needs its predecessor's link

    other = Message.create(owner=owner, target=pid, data="forged")
    swapped = chain[:4] + [dataclasses.replace(chain[4], message_id=other.id, message=other)]
    assert not verify_chain(swapped + chain[5:])
    bad_link = dataclasses.replace(chain[6], hash_chain=chain[5].hash_chain)
    assert not verify_chain(chain[:6] + [bad_link] + chain[7:])
    assert not verify_chain(chain[:3] + chain[4:])  # a dropped slot
    assert not verify_chain([chain[0], chain[2], chain[1]] + chain[3:])  # reordered


def test_concurrent_schedule_gives_unique_consecutive_slots(store: Store, owner: str):
    sched = Scheduler(store)
    pid = spawn(sched, owner)
    got: list[int] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(15):
            a = send(sched, pid, owner, t * 100 + i)
            with lock:
                got.append(a.slot)

    assert in_threads(worker, 8) == []
    assert sorted(got) == list(range(1, 121))
    chain = store.assignments(pid)
    assert verify_chain(chain)
    stamps = [a.timestamp for a in chain]
    assert stamps == sorted(stamps)


def test_schedule_survives_reopen(store_spec: str, owner: str):
    first = open_store(store_spec)
    sched = Scheduler(first, clock=Clock())
    pid = spawn(sched, owner)
    for n in range(1, 4):
        send(sched, pid, owner, n)
    first.close()
    second = open_store(store_spec)
    sched2 = Scheduler(second, clock=Clock())
    assert sched2.current_slot(pid) == 3
    assert send(sched2, pid, owner, 4).slot == 4
    assert send(sched2, pid, owner, 2).slot == 2  # idempotency holds across restarts
    assert verify_chain(second.assignments(pid))
    second.close()


def test_nodes_sharing_a_store_never_fork_the_chain(store_spec: str, owner: str):
    """Three schedulers, each on its own store connection (as three nodes would be), scheduling on
    one process at once: one slot each, no gap, one continuous chain, cron ticks included."""
    stores = [open_store(store_spec) for _ in range(3)]
    try:
        scheds = [Scheduler(s) for s in stores]
        pid = spawn(scheds[0], owner, **{"Cron-Frequency": "100-Milliseconds"})
        got: list[tuple[str, int]] = []
        lock = threading.Lock()

        def worker(t: int) -> None:
            n = t % 3  # two threads per node
            for i in range(12):
                m = Message.create(owner=owner, target=pid, data=f"thread {t} msg {i}")
                a = scheds[n].schedule(pid, m)
                again = scheds[(n + 1) % 3].schedule(pid, m)  # retried through another node
                assert again.slot == a.slot
                with lock:
                    got.append((m.id, a.slot))
                time.sleep(0.02)  # the threads' run spans cron periods (>= 240 ms), however fast a schedule is

        assert in_threads(worker, 6) == []
        chain = stores[1].assignments(pid)
        assert [a.slot for a in chain] == list(range(len(chain))) and verify_chain(chain)
        assert {a.message_id: a.slot for a in chain if a.message_id in dict(got)} == dict(got)
        assert len(got) == 72 == len(dict(got))
        assert any(a.message.tag("Action") == "Cron" for a in chain)  # ticks interleaved, same chain
    finally:
        for s in stores:
            s.close()
