"""Where the every-slot snapshot's time goes (issue 13 goal 2): ms per slot in each part, per thread.

Run: python bench/profile_snapshots.py [--transfers 100] [--rounds 2] [--fill-mib 120]

Why: bench_snapshots.py gives the ratio of a process snapshotted at every slot to one never
snapshotted; this says which part of the difference to cut next. The same two processes (a token on
a Lua heap filled to `--fill-mib`) compute `--transfers` Transfers per round, in alternating order;
the wasm call, the compare (Shadow.take), the written-pages look, the background encoding and naming,
the store writes and the chunk collection are each timed by a wrapper (thread CPU and wall), listed
per thread: the wasm-ahead worker's compare delays its next wasm call, the background thread's parts
run beside it. CPU columns are what to compare on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aonode.engine.devices import wasm_ahead  # noqa: E402
from aonode.engine.devices.process import ProcessDevice  # noqa: E402
from aonode.engine.store.sqlite import SQLiteStore  # noqa: E402
from aonode.engine.wasm import chunk_compare, chunked, written_pages  # noqa: E402
from aonode.engine.wasm.instance import Instance  # noqa: E402
from bench.bench_snapshots import RECIPIENT, build  # noqa: E402
from tests.helpers.images import use_shared_modules  # noqa: E402
from tests.helpers.nodeutil import action, make_node  # noqa: E402

use_shared_modules()
PARTS: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # calls, CPU s, wall s
_lock = threading.Lock()


def timed(owner: object, name: str, label: str) -> None:
    real: Callable = getattr(owner, name)

    def wrapper(*args, **kwargs):
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            with _lock:
                part = PARTS[(threading.current_thread().name.split("_")[0], label)]
                part[0], part[1], part[2] = part[0] + 1, part[1] + cpu, part[2] + wall

    setattr(owner, name, wrapper)


def wrap_parts() -> None:
    timed(Instance, "handle", "wasm call (Instance.handle)")
    timed(written_pages.WrittenPages, "take_written", "written pages (take_written)")
    timed(chunked.Shadow, "take", "compare + copy (Shadow.take)")
    timed(chunked, "_encode_changes", "encode + name (_encode_changes)")
    timed(chunked, "encode", "  of which chunk bodies (encode)")
    timed(SQLiteStore, "put_snapshot", "store: put_snapshot")
    timed(SQLiteStore, "put_cache", "store: put_cache")
    timed(SQLiteStore, "collect_chunks", "store: collect_chunks")
    timed(ProcessDevice, "finish", "slot post-processing (finish)")
    timed(wasm_ahead._Worker, "_run", "worker loop, all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fill-mib", type=int, default=120)
    args = parser.parse_args()
    n = args.transfers
    tracking = written_pages.enabled() and written_pages.available()
    print(f"written pages: {tracking}, compare in C: {chunk_compare.native()}")
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node")
        pids, _ = build(node, args.fill_mib)
        wrap_parts()
        for r in range(args.rounds):
            order = list(pids.items()) if r % 2 == 0 else list(reversed(pids.items()))
            for label, pid in order:
                for i in range(n):
                    msg = action(pid, "Transfer", ("Recipient", RECIPIENT), ("Quantity", "1"), nonce=f"{label}{r}.{i}")
                    node.schedule(pid, msg)
                PARTS.clear()
                cpu, wall = time.process_time(), time.perf_counter()
                node.now(pid)
                node.live.processes.flush()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"\nround {r}, {label}: {wall * 1000 / n:.1f} ms/slot wall, {cpu * 1000 / n:.1f} ms/slot CPU "
                    f"(all threads), load {os.getloadavg()[0]:.1f}"
                )
                print("| thread | part | calls | CPU ms/slot | wall ms/slot |\n|---|---|---:|---:|---:|")
                for (thread, part), (calls, c, w) in sorted(PARTS.items(), key=lambda kv: -kv[1][1]):
                    print(f"| {thread} | {part} | {calls} | {c * 1000 / n:.2f} | {w * 1000 / n:.2f} |")
        node.close()


if __name__ == "__main__":
    main()
