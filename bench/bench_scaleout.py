"""Scale-out: schedule throughput and `now` latency, one node on SQLite vs one and three nodes on one
PostgreSQL (docs/scale-out.md).

Each configuration runs real `aonode serve` processes on loopback (PostgreSQL: a throwaway cluster
from tests/pgcluster.py, or `--dsn` for an operator's server; a fresh database per configuration).
1. Schedule: `--messages` Add messages POSTed by `--connections` concurrent clients, spread
   round-robin over the nodes; messages/s and p50/p95 of the acknowledgement (durable commit).
2. now: `--rounds` times, one message scheduled through node i and `now` read through node i+1
   (so with three nodes most reads are on a node without the lease: ask the holder, wait for its
   notice); p50/p95 of the `now`.
3. The sequencer alone, in this process (no HTTP, no dev-mode signing, no wasm): `--sequenced`
   messages through 1 or 3 Scheduler+store pairs ("nodes") on one process, 4 threads per pair.
4. Three nodes again with `--snapshots` in an S3-compatible bucket (moto's server on loopback, or
   `--bucket s3://...` with the AWS variables), and what a takeover reads first: the newest snapshot
   (manifest + chunks) from PostgreSQL vs from the bucket, best of 3.

    python bench/bench_scaleout.py [--messages 300] [--connections 8] [--rounds 30] [--dsn URL] [--bucket URL]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))
from bench_http import free_port, start  # noqa: E402  (same folder: server start-up helpers)
from tests.helpers.pgcluster import PgCluster, pg_cluster  # noqa: E402  (the tests' throwaway PostgreSQL)
from tests.helpers.served import COUNTER  # noqa: E402  (the counter process the tests use)


@dataclass
class Result:
    name: str
    rate: float
    ack_p50: float
    ack_p95: float
    now_p50: float
    now_p95: float
    pid: str


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


@contextmanager
def nodes(count: int, store: str | None, base: Path, extra: tuple[str, ...] = ()) -> Iterator[list[str]]:
    from aonode.engine.crypto import Wallet

    wallet = base / "wallet.json"  # nodes on one database share one wallet (they refuse otherwise)
    base.mkdir(parents=True, exist_ok=True)
    Wallet.generate("rsa").save(wallet)
    with ExitStack() as stack:
        urls = []
        for i in range(count):
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "aonode.server.cli",
                "serve",
                "--dev",
                "--port",
                str(port),
                "--data-dir",
                str(base / f"node{i}"),
                "--cron-every",
                "0",
                "--wallet",
                str(wallet),
                *extra,
            ]
            if store:
                cmd += ["--store", store]
            url = f"http://127.0.0.1:{port}"
            proc = start(cmd, url + "/~meta@1.0/info")
            stack.callback(_stop, proc)
            urls.append(url)
        yield urls


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def add_body(tag: str) -> dict:
    return {"Tags": [{"name": "Action", "value": "Add"}], "Data": tag}


async def schedule_load(urls: list[str], pid: str, messages: int, connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(messages))

    async def client(c: int) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            for n in counter:
                url = urls[n % len(urls)]
                t0 = time.perf_counter()
                answer = await http.post(f"{url}/{pid}~process@1.0/schedule", json=add_body(f"s{n}"))
                answer.raise_for_status()
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(connections)))
    return time.perf_counter() - t0, latencies


def run(name: str, urls: list[str], args: argparse.Namespace) -> Result:
    with httpx.Client(timeout=120) as http:
        pid = http.post(
            f"{urls[0]}/~process@1.0/schedule",
            json={
                "Tags": [{"name": "Module", "value": "aos2_0_6"}, {"name": "On-Boot", "value": "Data"}],
                "Data": COUNTER,
            },
        ).json()["process"]
        http.get(f"{urls[0]}/{pid}~process@1.0/now/cache/count").raise_for_status()
        seconds, acks = asyncio.run(schedule_load(urls, pid, args.messages, args.connections))
        http.get(f"{urls[0]}/{pid}~process@1.0/now/cache/count").raise_for_status()  # catch up
        nows = []
        for i in range(args.rounds):
            http.post(f"{urls[i % len(urls)]}/{pid}~process@1.0/schedule", json=add_body(f"n{i}")).raise_for_status()
            t0 = time.perf_counter()
            answer = http.get(f"{urls[(i + 1) % len(urls)]}/{pid}~process@1.0/now/cache/count")
            nows.append(time.perf_counter() - t0)
            assert answer.text == str(args.messages + i + 1), answer.text
    return Result(name, args.messages / seconds, pct(acks, 0.5), pct(acks, 0.95), pct(nows, 0.5), pct(nows, 0.95), pid)


def snapshot_read(spec: str, snapshots: str | None, pid: str) -> tuple[float, int, int]:
    """Best of 3: ms to read `pid`'s newest snapshot (manifest + every chunk) with no local cache;
    the chunk count and their compressed bytes."""
    from aonode.engine.store import open_store
    from aonode.engine.wasm.chunked import Manifest

    store = open_store(spec, snapshots=snapshots)
    try:
        best, count, size = float("inf"), 0, 0
        for _ in range(3):
            t0 = time.perf_counter()
            found = store.latest_snapshot(pid)
            assert found is not None
            chunks = store.get_chunks(Manifest.from_bytes(found[2], found[1]).stored_hashes())
            best = min(best, time.perf_counter() - t0)
            count, size = len(chunks), sum(len(c) for c in chunks.values())
        return best * 1000, count, size
    finally:
        store.close()


@contextmanager
def bucket_url(given: str | None) -> Iterator[str]:
    """`given`, or a fresh bucket on moto's S3-compatible server in this process (loopback)."""
    if given:
        yield given
        return
    import logging
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }
    )
    boto3.client("s3").create_bucket(Bucket="aonode-bench")
    try:
        yield "s3://aonode-bench/bench"
    finally:
        server.stop()


def sequencer_rate(spec: str, count: int, node_count: int, threads: int = 4) -> float:
    """Messages/s through `node_count` Scheduler+store pairs on one process (one sequencer row)."""
    from aonode.engine.devices.scheduler import Scheduler, verify_chain
    from aonode.engine.message import Message
    from aonode.engine.store import open_store

    stores = [open_store(spec) for _ in range(node_count)]
    try:
        scheds = [Scheduler(s) for s in stores]
        owner = "bench-owner-0000000000000000000000000000000"[:43]
        proc = Message.create(owner=owner, tags=[("Type", "Process")], data=spec)
        scheds[0].spawn(proc.id, proc)
        per = count // (node_count * threads)

        def work(t: int) -> None:
            sched = scheds[t % node_count]
            for i in range(per):
                sched.schedule(proc.id, Message.create(owner=owner, target=proc.id, data=f"{t}-{i}"))

        import threading

        workers = [threading.Thread(target=work, args=(t,)) for t in range(node_count * threads)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - t0
        chain = stores[0].assignments(proc.id)
        assert len(chain) == per * node_count * threads + 1 and verify_chain(chain)
        return per * node_count * threads / seconds
    finally:
        for s in stores:
            s.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sequenced", type=int, default=1200)
    parser.add_argument("--dsn", help="an existing PostgreSQL (a database per configuration is created)")
    parser.add_argument("--bucket", help="an existing s3://bucket/prefix (default: moto's server on loopback)")
    args = parser.parse_args(argv)
    results = []
    sequenced: list[tuple[str, float]] = []
    reads: list[tuple[str, tuple[float, int, int]]] = []
    with ExitStack() as stack:
        cluster: PgCluster | None = None if args.dsn else stack.enter_context(pg_cluster())
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aonode-bench-")))
        bucket = stack.enter_context(bucket_url(args.bucket))
        configs = [
            ("1 node, SQLite", 1, None),
            ("1 node, PostgreSQL", 1, "pg"),
            ("3 nodes, PostgreSQL", 3, "pg"),
            ("3 nodes, PostgreSQL + S3 snapshots", 3, "s3"),
        ]
        for i, (name, count, backend) in enumerate(configs):
            store = None
            if backend:
                store = cluster.create_database("bench") if cluster else args.dsn
            snapshots = bucket if backend == "s3" else None
            with nodes(count, store, base / f"c{i}", ("--snapshots", bucket) if snapshots else ()) as urls:
                results.append(run(name, urls, args))
            if store and count == 3:  # the nodes stopped: each process's newest snapshot is stored
                reads.append((name, snapshot_read(store, snapshots, results[-1].pid)))
            if backend == "s3":
                continue  # the sequencer does not touch snapshots: as on PostgreSQL
            spec = store or str(base / f"seq{i}")
            if backend:
                spec = cluster.create_database("seq") if cluster else args.dsn
            sequenced.append((name, sequencer_rate(spec, args.sequenced, count)))
    print(f"\n{args.messages} messages over {args.connections} connections; {args.rounds} now rounds\n")
    print("| configuration | schedule msg/s | ack p50 ms | ack p95 ms | now p50 ms | now p95 ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.rate:.0f} | {r.ack_p50:.1f} | {r.ack_p95:.1f} | {r.now_p50:.1f} | {r.now_p95:.1f} |")
    base_rate = results[0].rate
    print(
        "\nschedule throughput relative to 1 node on SQLite: "
        + ", ".join(f"{r.name}: {r.rate / base_rate:.2f}x" for r in results)
    )
    print(f"\nsequencer alone ({args.sequenced} messages, 4 threads per node, one process):")
    for name, rate in sequenced:
        print(f"  {name}: {rate:.0f} msg/s ({rate / sequenced[0][1]:.2f}x)")
    print("\nnewest snapshot read (manifest + chunks, no local cache; best of 3):")
    for name, (ms, count, size) in reads:
        print(f"  {name}: {ms:.0f} ms ({count} chunks, {size / 2**20:.1f} MiB compressed; {ms / reads[0][1][0]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
