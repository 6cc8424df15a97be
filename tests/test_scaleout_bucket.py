"""Three real `aonode serve --store postgresql://... --snapshots s3://...` nodes on one throwaway
PostgreSQL and one bucket on a real S3-compatible server on loopback (moto): the snapshots' bytes are
in the bucket only; kill -9 of the computing node, and a survivor continues from the bucket's snapshot
(not from slot 0) to the same answers and the same memory as one node on SQLite; then a chunk of the
newest snapshot is damaged in the bucket and the computing node killed again: the last node refuses
the damaged snapshot, falls back (older snapshot or slot 0), still answers right, and the snapshot its
recompute stores names only right objects."""
from __future__ import annotations

import hashlib
import re
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.wasm.chunked import Manifest
from tests.helpers.httpnode import cli_node
from tests.helpers.pgcluster import PgCluster
from tests.helpers.s3bucket import S3Server, s3_server  # noqa: F401  (fixture)
from tests.helpers.served import COUNTER, Served, add, assert_same_memory_as_one_node, holder_of, spawn

pytestmark = pytest.mark.slow

EVERY = 5  # Cache-Frequency: a snapshot every 5 slots


@dataclass
class Bucketed:
    dsn: str
    bucket: str
    nodes: list[Served]
    pid: str


@pytest.fixture(scope="module")
def bucketed(pg: PgCluster, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucketed]:
    dsn, bucket = pg.create_database("bucket"), s3_server.create_bucket("nodes")
    wallet = tmp_path_factory.mktemp("key") / "wallet.json"
    Wallet.generate("ed25519").save(wallet)
    with ExitStack() as stack:
        nodes = []
        for i in range(3):
            # Node 0 is told the endpoint with --s3-endpoint; the others read AWS_ENDPOINT_URL.
            endpoint = ("--s3-endpoint", s3_server.endpoint) if i == 0 else ()
            url, proc = stack.enter_context(cli_node(
                tmp_path_factory.mktemp(f"bnode{i}"), "--dev", "--store", dsn, "--snapshots", f"s3://{bucket}/aonode",
                *endpoint, "--lease-ttl", "2", "--cron-every", "0", "--wallet", str(wallet)))
            nodes.append(Served(url, proc, stack.enter_context(httpx.Client(base_url=url, timeout=120))))
        yield Bucketed(dsn, bucket, nodes, spawn(nodes[0], COUNTER, ("Cache-Frequency", str(EVERY))))


def count(node: Served, pid: str) -> str:
    answer = node.client.get(f"/{pid}~process@1.0/now/cache/count")
    assert answer.status_code == 200, answer.text
    return answer.text


def slots_computed(node: Served) -> float:
    text = node.client.get("/metrics").text
    found = re.search(r"^aonode_slots_computed_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def indexed(dsn: str, pid: str) -> dict[int, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT slot, sha256 FROM snapshots WHERE process = %s", (pid,)).fetchall())


def kill_holder(b: Bucketed) -> Served:
    victim = holder_of(b.dsn, b.pid, b.nodes)
    victim.proc.send_signal(signal.SIGKILL)  # holding the lease, live state in memory
    victim.proc.wait()
    return victim


def test_a_survivor_continues_from_the_bucket_snapshot(bucketed: Bucketed, s3_server: S3Server, tmp_path: Path):
    b = bucketed
    for i in range(23):
        add(b.nodes[i % 3], b.pid, f"a-{i}")
    assert {count(n, b.pid) for n in b.nodes} == {"23"}
    snapshots = indexed(b.dsn, b.pid)
    assert max(snapshots) >= 20
    objects = s3_server.keys(b.bucket, "aonode/")
    with psycopg.connect(b.dsn) as conn:  # the bytes are in the bucket, only the index in the database
        assert conn.execute("SELECT count(*) FROM memory_chunks").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM snapshot_chunks").fetchone() == (0,)
    for name in snapshots.values():
        manifest = Manifest.from_bytes(objects[f"aonode/snapshots/{name}"], name)
        assert {f"aonode/chunks/{h}" for h in manifest.stored_hashes()} <= set(objects)

    victim = kill_holder(b)
    survivors = [n for n in b.nodes if n is not victim]
    before = {n.url: slots_computed(n) for n in survivors}
    for i in range(7):
        add(survivors[i % 2], b.pid, f"b-{i}")
    assert {count(n, b.pid) for n in survivors} == {"30"}
    holder = holder_of(b.dsn, b.pid, survivors)
    # From the bucket's snapshot at slot >= 20, not a replay from slot 0 (31 slots).
    assert 0 < slots_computed(holder) - before[holder.url] <= 30 - 20
    assert_same_memory_as_one_node(b.dsn, b.pid, holder, tmp_path)


def test_a_damaged_chunk_in_the_bucket_is_never_computed_on(bucketed: Bucketed, s3_server: S3Server,
                                                            tmp_path: Path):
    b = bucketed
    live = [n for n in b.nodes if n.alive()]
    assert len(live) == 2, "runs after the first takeover"
    assert {count(n, b.pid) for n in live} == {"30"}
    snapshots = indexed(b.dsn, b.pid)
    newest = snapshots[max(snapshots)]
    manifest = Manifest.from_bytes(s3_server.keys(b.bucket, f"aonode/snapshots/{newest}")[
        f"aonode/snapshots/{newest}"], newest)
    damaged = sorted(manifest.stored_hashes())[len(manifest.stored_hashes()) // 2]
    s3_server.put(b.bucket, f"aonode/chunks/{damaged}", b"not the chunk that hashes to its name")

    victim = kill_holder(b)
    last = next(n for n in live if n is not victim)
    before = slots_computed(last)
    add(last, b.pid, "c-0")
    assert count(last, b.pid) == "31"
    # Not computed on from the damaged snapshot at slot 30 (that would be one slot): it was refused,
    # and the node went back to an older snapshot (or slot 0) and recomputed.
    assert slots_computed(last) - before > 1
    assert_same_memory_as_one_node(b.dsn, b.pid, last, tmp_path)
    # The snapshot the recompute stored names only bodies that are right in the bucket (a chunk body
    # is named by its sha256: engine/wasm/chunk_codec.py).
    snapshots = indexed(b.dsn, b.pid)
    assert max(snapshots) >= 30
    latest, objects = snapshots[max(snapshots)], s3_server.keys(b.bucket, "aonode/")
    for body in Manifest.from_bytes(objects[f"aonode/snapshots/{latest}"], latest).stored_hashes():
        assert hashlib.sha256(objects[f"aonode/chunks/{body}"]).hexdigest() == body
