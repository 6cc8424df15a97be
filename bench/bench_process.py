"""Process-path benchmarks (issue 3): `now` latency as history grows, orchestration overhead, RSS.

Run: python bench/bench_process.py [--quick]

- `now` latency after 10, 1,000 and 10,000 messages with nothing new scheduled (must stay flat) and
  with one new message scheduled (grows only by that message's work).
- Messages/s through Node.schedule + Node.now (store, scheduler, stack, patch, push) next to the bare
  wasm Instance.handle on the same messages (the backlog's own, in order, from the same state: it
  must end with the same memory), as ratios: the cost of the orchestration. The backlog is computed
  in interleaved blocks, every lane computing each block beside the others, and the ratios are
  medians of paired blocks with their spread (bench/paired_lanes.py): one lucky or unlucky bare run
  on this shared machine does not decide them. Node.now may run a backlog's wasm calls on a second
  thread (engine/devices/wasm_ahead.py), so the output gives wall-time AND CPU-time ratios (all
  threads), the cores the path used, and the same path one slot at a time (AONODE_WASM_AHEAD=0) and
  with wasm always ahead (=1); by default a node picks between those two as it measures (pace.py).
- Peak RSS after spawning 1,000 processes (each evaluated to slot 0; live set bounded by the LRU).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.paired_lanes import Lane, paired, run_blocks  # noqa: E402
from tests.helpers.images import use_shared_modules  # noqa: E402
from tests.helpers.nodeutil import definition, eval_msg, make_node  # noqa: E402

use_shared_modules()


def timed(fn, repeat: int = 20) -> float:
    """Median seconds of `fn()` over `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def now_latency(sizes: list[int]) -> list[tuple[int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node")
        pid = node.spawn(definition())["process"]
        sent = 0
        for size in sizes:
            while sent < size:
                node.schedule(pid, eval_msg(pid, "return 1", nonce=str(sent)))
                sent += 1
            node.now(pid)
            idle = timed(lambda: node.now(pid))

            def one_more() -> None:
                nonlocal sent
                node.schedule(pid, eval_msg(pid, "return 1", nonce=str(sent)))
                sent += 1
                node.now(pid)

            fresh = timed(one_more, repeat=10)
            rows.append((size, idle, fresh))
        node.close()
    return rows


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def throughput(label: str, n: int, token: bool, blocks: int, repeat: int) -> None:
    """Print the lanes' rates and the paired-block ratios (bench/paired_lanes.py) over `repeat` fresh runs."""
    load_before = uptime()
    lanes: list[Lane] = []
    ingest: list[float] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            run, rates = run_blocks(Path(tmp), token, n, blocks)
        ingest += rates
        if not lanes:
            lanes = run
        else:
            for pooled, more in zip(lanes, run, strict=True):
                pooled.walls += more.walls
                pooled.cpus += more.cpus
                for way, count in more.ways.items():
                    pooled.ways[way] = pooled.ways.get(way, 0) + count
    path, single, forced, bare, unlimited = lanes
    print(
        f"\n## throughput: {label}, {n} messages in {blocks} blocks of {n // blocks}, {repeat} run(s):"
        f" {len(path.walls)} paired blocks"
    )
    print(f"(before: {load_before}; after: {uptime()})")
    print("| lane (median block) | msgs/s (wall) | msgs per CPU-second (all threads) | cores used |")
    print("|---|---:|---:|---:|")
    print(f"| Node.schedule (durable: fsync before acknowledging) | {statistics.median(ingest):.0f} | | |")
    for lane in lanes:
        wall, cpu = statistics.median(lane.walls), statistics.median(lane.cpus)
        print(f"| {lane.name} | {wall:.0f} | {cpu:.0f} | {wall / cpu:.2f} |")
    if path.ways:
        ahead, batches = path.ways.get(True, 0), path.ways.get(False, 0)
        print(f"\n{path.name}: {ahead} slots ran wasm ahead, {batches} in batches (engine/devices/pace.py's pick)")
    print("\n| ratio of paired blocks | wall median | wall quartiles | wall min-max | CPU median |")
    print("|---|---:|---:|---:|---:|")
    for top, bottom in ((path, bare), (path, unlimited), (single, bare), (forced, bare), (bare, unlimited)):
        wall, cpu = paired(top, bottom), paired(top, bottom, cpu=True)
        print(
            f"| {top.name} / {bottom.name} | **{wall.median:.2f}x** | {wall.q1:.2f}-{wall.q3:.2f} | "
            f"{wall.low:.2f}-{wall.high:.2f} | {cpu.median:.2f}x |"
        )


def rss_after_spawns(count: int) -> tuple[float, float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node", max_live=32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        for i in range(count):
            pid = node.spawn(definition(("Name", f"p{i}")))["process"]
            node.now(pid)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        live = len(node.live)
        node.close()
    return before, after, live, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    parser.add_argument("--throughput-only", action="store_true", help="only the process path vs bare wasm")
    parser.add_argument("--repeat", type=int, default=1, help="fresh throughput runs; their blocks pooled")
    parser.add_argument("--blocks", type=int, default=10, help="interleaved blocks per throughput run")
    args = parser.parse_args()
    sizes = [10, 100, 1000] if args.quick else [10, 1000, 10000]
    if not args.throughput_only:
        print("## `now` latency (median)")
        print("| messages in history | now, nothing new (ms) | schedule 1 + now (ms) |")
        print("|---:|---:|---:|")
        for size, idle, fresh in now_latency(sizes):
            print(f"| {size} | {idle * 1000:.3f} | {fresh * 1000:.2f} |")
    n = 200 if args.quick else 1000
    for label, token in (("Eval `return 1`", False), ("token Transfer (patching its balances)", True)):
        throughput(label, n, token, args.blocks, args.repeat)
    if args.throughput_only:
        return
    count = 100 if args.quick else 1000
    before, after, live, elapsed = rss_after_spawns(count)
    print(
        f"\n## {count} spawned processes\n| peak RSS before (MiB) | peak RSS after (MiB) | live instances | spawn+slot-0 per process (ms) |"
    )
    print("|---:|---:|---:|---:|")
    print(f"| {before:.0f} | {after:.0f} | {live} | {elapsed / count * 1000:.1f} |")


if __name__ == "__main__":
    main()
