"""Three real `aonode serve --store postgresql://...` nodes on one throwaway PostgreSQL: any node
schedules, one computes each process at a time (its lease), every node answers the same; concurrent
schedules through all of them leave one continuous hash chain; kill -9 of the computing node loses
nothing acknowledged and the survivors finish the work from the stored snapshot, reaching the same
memory (sha256) as one node on SQLite given the same schedule."""
from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aonode.engine.crypto import Wallet
from tests.helpers.httpnode import cli_node
from tests.helpers.pgcluster import PgCluster
from tests.helpers.served import (Served, add, assert_one_chain, assert_same_memory_as_one_node,
                                  holder_of as holder_of_process, schedule_of, spawn)
from tests.helpers.threads import Threads, in_threads

pytestmark = pytest.mark.slow

LEASE_TTL = "2"
SINK = """
Got = Got or 0
Handlers.add('Got', 'Got', function(m)
  Got = Got + 1
  Send({ device = 'patch@1.0', cache = { got = Got } })
end)
"""
COUNTER = """
Count = Count or 0
Seen = Seen or {}
Handlers.add('Add', 'Add', function(m)
  Count = Count + 1
  Seen[m.Data] = true
  Send({ Target = Sink, Action = 'Got', Data = m.Data })
  Send({ device = 'patch@1.0', cache = { count = Count, seen = Seen } })
end)
Send({ device = 'patch@1.0', cache = { count = Count } })
"""


@dataclass
class Cluster:
    dsn: str
    nodes: list[Served]
    pid: str  # the counter: every Add also sends one Got to the sink
    sink: str


@pytest.fixture(scope="module")
def cluster(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    dsn = pg.create_database("scaleout")
    wallet = tmp_path_factory.mktemp("key") / "wallet.json"
    Wallet.generate("ed25519").save(wallet)  # one identity: pushed messages are the same whoever computes
    with ExitStack() as stack:
        nodes = []
        for i in range(3):
            url, proc = stack.enter_context(cli_node(
                tmp_path_factory.mktemp(f"node{i}"), "--dev", "--store", dsn, "--lease-ttl", LEASE_TTL,
                "--cron-every", "0", "--wallet", str(wallet)))
            nodes.append(Served(url, proc, stack.enter_context(httpx.Client(base_url=url, timeout=120))))
        sink = spawn(nodes[2], SINK)
        yield Cluster(dsn, nodes, spawn(nodes[0], f"Sink = '{sink}'\n" + COUNTER), sink)


def assert_sink_got_each_once(cluster: Cluster, node: Served, count: int) -> None:
    """Every Add pushed exactly one Got to the sink, replays after a takeover included."""
    assert node.client.get(f"/{cluster.sink}~process@1.0/now/cache/got").text == str(count)
    assert len(schedule_of(node, cluster.sink)) == count + 1


def test_every_node_answers_the_same(cluster: Cluster):
    pid, nodes = cluster.pid, cluster.nodes
    for i in range(12):  # round-robin through all three
        add(nodes[i % 3], pid, f"rr-{i}")
    counts = {n.client.get(f"/{pid}~process@1.0/now/cache/count").text for n in nodes}
    assert counts == {"12"}
    for read in ("/slot", "/compute/at-slot", "/compute/cache/seen", "/compute/5/cache/count"):
        answers = [n.client.get(f"/{pid}~process@1.0{read}", headers={"accept": "application/json"})
                   for n in nodes]
        assert {a.status_code for a in answers} == {200}, read
        assert len({a.text for a in answers}) == 1, (read, [a.text for a in answers])
    assert len({str(schedule_of(n, pid)) for n in nodes}) == 1
    assert_sink_got_each_once(cluster, nodes[1], 12)


def test_concurrent_schedules_through_all_nodes_make_one_chain(cluster: Cluster):
    pid, nodes = cluster.pid, cluster.nodes
    acked: list[int] = []

    def sender(n: int) -> None:
        for i in range(15):
            acked.append(add(nodes[n % 3], pid, f"c-{n}-{i}")["slot"])

    assert in_threads(sender, 6) == [] and len(set(acked)) == 90
    rows = schedule_of(nodes[2], pid)
    assert_one_chain(rows, pid)
    assert set(acked) <= {a["slot"] for a in rows}
    assert {n.client.get(f"/{pid}~process@1.0/now/cache/count").text for n in nodes} == {str(len(rows) - 1)}


def holder_of(cluster: Cluster) -> Served:
    return holder_of_process(cluster.dsn, cluster.pid, cluster.nodes)


def test_kill_9_of_the_computing_node_loses_nothing_acknowledged(cluster: Cluster, tmp_path: Path):
    pid, nodes = cluster.pid, cluster.nodes
    nodes[1].client.get(f"/{pid}~process@1.0/now/cache/count")
    victim = holder_of(cluster)
    acked: dict[str, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def sender(n: int) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            node, data = nodes[(n + i) % 3], f"k-{n}-{i}"
            try:
                slot = add(node, pid, data)["slot"]
            except (httpx.TransportError, AssertionError):
                continue  # the killed node: not acknowledged, so nothing is promised about it
            with lock:
                acked[data] = slot

    senders = Threads(sender, 3, "sender").start()
    time.sleep(1.5)
    victim.client.get(f"/{pid}~process@1.0/now/cache/count", timeout=30)
    victim.proc.send_signal(signal.SIGKILL)  # mid-load, holding the lease, live state in memory
    victim.proc.wait()
    time.sleep(1.5)  # the survivors keep scheduling
    stop.set()
    senders.join(120)

    survivors = [n for n in nodes if n is not victim]
    rows = schedule_of(survivors[0], pid)
    assert_one_chain(rows, pid)
    by_slot = {a["slot"]: a for a in rows}
    assert all(slot in by_slot for slot in acked.values())
    started = time.monotonic()
    counts = {n.client.get(f"/{pid}~process@1.0/now/cache/count").text for n in survivors}
    assert counts == {str(len(rows) - 1)}
    assert time.monotonic() - started < 60
    seen = survivors[1].client.get(f"/{pid}~process@1.0/compute/cache/seen",
                                   headers={"accept": "application/json"}).json()
    assert set(acked) <= set(seen)
    holder = holder_of(cluster)
    assert holder in survivors
    assert_sink_got_each_once(cluster, survivors[0], len(rows) - 1)
    assert_same_memory_as_one_node(cluster.dsn, cluster.pid, holder, tmp_path)
