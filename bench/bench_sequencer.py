"""The node's own CPU per ingested item when ingest workers hand it checked messages: the sequencer socket
(server/sequencer_socket.py) on a real Node and SQLite store, fed by child processes that play the
workers (pre-encoded frames of signed ANS-104 items, `--window` in flight per connection, the next frame
sent as each reply arrives). No HTTP, no signature check: what is measured is what the node's process
does per item with workers (decode, plan, durable group commit, replies), by thread.

bench_ingest.py measures the same part inside the served node, where the workers' pace sets how many
items share a commit; here the window does. Issue 13 goal 3 wants the node's share <= 0.35 ms per item
(session 9: 0.27-0.29 at load 10-11, bench/README.md).

With `--waits 0,2` the runs alternate between group-commit waits (AONODE_GROUP_WAIT_MS, ms: how long a
group waits for the requests its predecessor's answers bring; engine/store/group_commit.py), an A/B in one
sitting; each line also says how many items a commit held on average.

    python bench/bench_sequencer.py [--items 1000] [--connections 2] [--window 8] [--runs 2] [--waits 0,2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import cbor2

from aonode.engine.crypto import Wallet
from aonode.engine.frozen_heap import freeze_start
from aonode.engine.message import Message
from aonode.engine.store import group_commit
from aonode.server.cli.client import build_message, new_anchor
from aonode.server.compose import make_node
from aonode.server.sequencer_socket import Frames, SequencerSocket, frame

COMMITS = [0]  # group commits made so far (counted by the wrapper main() installs)


def counting(commit):  # type: ignore[no-untyped-def]
    """GroupCommitter._commit, counting the commits (how many items share one)."""

    def counted(self, group):  # type: ignore[no-untyped-def]
        COMMITS[0] += 1
        return commit(self, group)

    return counted


class Anyone(set[int]):
    """Every peer pid is allowed: the workers here are this bench's children."""

    def __contains__(self, pid: object) -> bool:
        return True


def worker(name: str, frames: list[bytes], window: int, go: Event, failures: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect("\0" + name)
    go.wait()
    replies, sent, bad = Frames(sock), min(window, len(frames)), 0
    sock.sendall(b"".join(frames[:sent]))
    for _ in frames:
        raw = replies.next()
        if raw is None:
            bad += 1
            break
        bad += cbor2.loads(raw)[1] != 200
        if sent < len(frames):
            sock.sendall(frames[sent])
            sent += 1
    failures.put(bad)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's live threads, summed by name."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[thread.name] = out.get(thread.name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def run(node_dir: Path, blobs: list[bytes], connections: int, window: int) -> str:
    node = make_node(node_dir)
    definition = Message.create(owner=node.address, tags=[("Type", "Process"), ("Module", "m")], data="bench")
    node.router.scheduler.spawn(definition.id, definition)
    freeze_start()  # the start's objects out of the collector's walks, as `aonode serve` does once started
    name = f"aonode-bench-{secrets.token_hex(6)}"
    sequencer = SequencerSocket(node, name, Anyone)
    try:
        frames = [frame([n, definition.id, blob, "/", 0.0]) for n, blob in enumerate(blobs)]
        failures: multiprocessing.Queue[int] = multiprocessing.Queue()
        go = multiprocessing.Event()
        workers = [
            multiprocessing.Process(target=worker, args=(name, frames[c::connections], window, go, failures))
            for c in range(connections)
        ]
        for proc in workers:  # started (forked) and connected before the clock starts
            proc.start()
        time.sleep(1.0)
        before, threads_before, commits = (time.perf_counter(), time.process_time()), thread_cpu(), COMMITS[0]
        go.set()
        bad = sum(failures.get(timeout=300) for _ in workers)
        seconds, cpu = time.perf_counter() - before[0], time.process_time() - before[1]
        commit = sum(v - threads_before.get(k, 0.0) for k, v in thread_cpu().items() if k.startswith("aonode-commit"))
        commits = COMMITS[0] - commits
        for proc in workers:
            proc.join()
        if bad:
            raise RuntimeError(f"{bad} items not answered 200")
    finally:
        sequencer.close()
        node.close()
    per = 1000 / len(blobs)
    return (
        f"{len(blobs) / seconds:8.0f} items/s  node {cpu * per:5.3f} ms/item (commit thread {commit * per:5.3f}, "
        f"socket threads {(cpu - commit) * per:5.3f})  {len(blobs) / max(commits, 1):5.1f} items/commit  "
        f"load {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--window", type=int, default=8, help="frames in flight per connection")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--waits", default="", help="group-commit waits in ms, alternated over the runs (e.g. 0,2)")
    args = parser.parse_args(argv)
    wallet = Wallet.generate("rsa")
    print(f"signing {args.items} RSA-4096 items ...", file=sys.stderr)
    pid = "b" * 43
    blobs = [
        build_message(wallet, process=pid, tags=[("Action", "Ping")], data=str(n), anchor=new_anchor())
        .to_message()
        .to_cbor()
        for n in range(args.items)
    ]
    group_commit.GroupCommitter._commit = counting(group_commit.GroupCommitter._commit)  # type: ignore[method-assign]
    waits = [w for w in args.waits.split(",") if w]
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            label = ""
            if waits:
                os.environ["AONODE_GROUP_WAIT_MS"] = waits[n % len(waits)]
                label = f" wait {waits[n % len(waits)]} ms"
            print(f"run {n}{label}: {run(Path(tmp) / str(n), blobs, args.connections, args.window)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
