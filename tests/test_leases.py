"""Compute leases on a real PostgreSQL: one holder at a time, takeover after expiry, renewal while the
holder lives, work asked of the holder through NOTIFY, waiters woken by its computed notice."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from aonode.engine.leases import Claim, LeaseConfig, LocalLeases
from aonode.engine.store.pg_leases import PgLeases
from aonode.engine.store.postgres import PostgresStore
from tests.helpers.threads import in_threads

TTL = 1.0


class Node:
    """The two hooks a node gives its leases, recorded."""

    def __init__(self) -> None:
        self.worked: list[str] = []
        self.lost: list[str] = []
        self.leases: PgLeases | None = None

    def work(self, pid: str) -> None:
        self.worked.append(pid)
        assert self.leases is not None
        self.leases.computed(pid)


@pytest.fixture
def pair(pg_dsn: str) -> Iterator[tuple[PgLeases, PgLeases, Node, Node]]:
    store = PostgresStore(pg_dsn)
    nodes = [Node(), Node()]
    leases = [PgLeases(store.pool, pg_dsn, f"node-{i}", LeaseConfig(ttl=TTL, wait=5), n.work, n.lost.append)
              for i, n in enumerate(nodes)]
    for lease, node in zip(leases, nodes, strict=True):
        node.leases = lease
    yield leases[0], leases[1], nodes[0], nodes[1]
    for lease in leases:
        lease.close()
    store.close()


def test_one_holder_at_a_time_and_release(pair):
    a, b, _, _ = pair
    assert a.claim("p") is Claim.FRESH
    assert a.claim("p") is Claim.HELD and b.claim("p") is Claim.OTHER
    assert b.holder("p") == "node-0"
    a.release("p")
    assert b.claim("p") is Claim.FRESH and a.claim("p") is Claim.OTHER
    assert a.claim("q") is Claim.FRESH  # leases are per process


def test_the_holder_renews_while_it_lives(pair):
    a, b, _, _ = pair
    assert a.claim("p") is Claim.FRESH
    time.sleep(TTL * 3)
    assert b.claim("p") is Claim.OTHER  # renewed in the background, never lapsed


def test_a_dead_holders_lease_expires_and_is_taken_over(pair, pg_dsn: str):
    a, b, node_a, _ = pair
    assert a.claim("p") is Claim.FRESH
    a._closed.set()  # stop renewing without releasing: as if the node were killed
    a._thread.join()
    deadline = time.monotonic() + TTL * 5
    while b.claim("p") is Claim.OTHER:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)
    assert b.holder("p") == "node-1"
    a._closed.clear()
    a._renew()  # the old holder comes back: it learns it lost the process
    assert node_a.lost == ["p"] and "p" not in a._held


def test_work_is_asked_of_the_holder_and_waiters_wake_on_its_notice(pair):
    a, b, node_a, node_b = pair
    assert a.claim("p") is Claim.FRESH
    started = time.monotonic()
    b.ask("p")
    assert b.wait_for("p", lambda: "p" in node_a.worked, timeout=5)
    assert time.monotonic() - started < 2
    assert node_b.worked == []  # only the holder works
    assert not b.wait_for("p", lambda: False, timeout=0.3)  # bounded


def test_concurrent_claims_give_one_holder(pair, pg_dsn: str):
    a, b, _, _ = pair
    results: list[Claim] = []
    barrier = threading.Barrier(8)

    def grab(lease: PgLeases) -> None:
        barrier.wait()
        results.append(lease.claim("contended"))

    assert in_threads(lambda i: grab(a if i % 2 else b), 8) == []
    holder = a.holder("contended")
    assert holder in {"node-0", "node-1"}
    loser = b if holder == "node-0" else a
    assert loser.claim("contended") is Claim.OTHER
    assert results.count(Claim.FRESH) == 1


def test_local_leases_always_say_yours():
    local = LocalLeases()
    assert local.claim("p") is Claim.HELD and local.wait_for("p", lambda: True, 0)
