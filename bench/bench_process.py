"""Process-path benchmarks (issue 3): `now` latency as history grows, orchestration overhead, RSS.

Run: python bench/bench_process.py [--quick]

- `now` latency after 10, 1,000 and 10,000 messages with nothing new scheduled (must stay flat) and
  with one new message scheduled (grows only by that message's work).
- Messages/s through Node.schedule + Node.now (store, scheduler, stack, patch, push) next to the bare
  wasm Instance.handle on the same messages (the backlog's own, in order, from the same state: it
  must end with the same memory), as ratios: the cost of the orchestration. Node.now runs a
  backlog's wasm calls on a second thread, ahead of the slots' post-processing
  (engine/devices/wasm_ahead.py), so the process path may use more than one core: the output gives the
  wall-time ratio AND the CPU-time ratio (all threads), the cores the path used, and the same path
  one slot at a time (AONODE_WASM_AHEAD=0) for comparison. Bare wasm uses one core.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.images import use_shared_modules  # noqa: E402
from tests.helpers.nodeutil import action, definition, eval_msg, make_node  # noqa: E402
from bench.workloads import TOKEN_LUA  # noqa: E402

from aonode.engine import aos  # noqa: E402
from aonode.engine.devices.json_iface import environment, legacy_message  # noqa: E402
from aonode.engine.devices.wasm_ahead import SWITCH  # noqa: E402
from aonode.engine.devices.wasm64 import limits_for  # noqa: E402
from aonode.engine.node import Node  # noqa: E402
from aonode.engine.wasm import Instance, Limits  # noqa: E402

use_shared_modules()
PATCHING_TOKEN = TOKEN_LUA.replace(  # the token's Transfer also patches its balances into the cache
    '  Send({ Target = from, Action = "Debit-Notice"',
    '  Send({ device = "patch@1.0", cache = { balances = Balances } })\n'
    '  Send({ Target = from, Action = "Debit-Notice"')


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


@dataclass(frozen=True)
class Rate:
    """Messages per second of wall time, and per second of this process's CPU time (all threads):
    the second is what a shared, loaded machine disturbs least, and it counts every core the path
    used (the wasm-ahead thread, background snapshots), so it is the honest cost of a message."""

    wall: float
    cpu: float

    @property
    def cores(self) -> float:
        """CPU seconds per wall second while it ran."""
        return self.wall / self.cpu


@dataclass(frozen=True)
class Throughput:
    ingest: float  # durable schedule msgs/s
    ahead: Rate  # Node.now, wasm ahead on a second thread (the default)
    one_at_a_time: Rate  # Node.now with AONODE_WASM_AHEAD=0
    bare: Rate  # bare wasm under the process's limits
    unlimited: Rate  # bare wasm with no limit


def throughput(n: int, token: bool = False, repeat: int = 1) -> Throughput:
    """Evals of `return 1`, or (`token`) Transfers on a token that patches its balances into the cache.
    With `repeat`, the runs alternate (one at a time, then ahead and bare) and each rate is the median
    run by wall time: a shared machine's load then hits both sides alike."""
    runs: list[Throughput] = []
    for _ in range(repeat):
        os.environ[SWITCH] = "0"
        try:
            _, one_at_a_time, _, _ = path_and_bare(n, token, bare=False)
        finally:
            del os.environ[SWITCH]
        ingest, ahead, bare, unlimited = path_and_bare(n, token)
        runs.append(Throughput(ingest, ahead, one_at_a_time, bare, unlimited))

    def median(pick: Callable[[Throughput], Rate]) -> Rate:
        return sorted((pick(run) for run in runs), key=lambda rate: rate.wall)[len(runs) // 2]

    return Throughput(
        statistics.median(run.ingest for run in runs),
        median(lambda run: run.ahead),
        median(lambda run: run.one_at_a_time),
        median(lambda run: run.bare),
        median(lambda run: run.unlimited),
    )


def path_and_bare(n: int, token: bool, bare: bool = True) -> tuple[float, Rate, Rate, Rate]:
    """(durable schedule msgs/s, compute through the process path, bare wasm under the process's
    limits, and with none) on one fresh node."""
    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node")
        pid = node.spawn(definition())["process"]
        # Steady state on both sides: the image's fast variant prepared (a node's first use of an
        # image prepares it in the background), and the instance moved onto it by one untimed
        # message, as the bare instance below is by its untimed call.
        node.images.load("aos2_0_6").wait_variant()
        node.schedule(pid, eval_msg(pid, PATCHING_TOKEN if token else "return 'warm'"))
        node.now(pid)
        first = node.store.last_assignment(pid).slot + 1
        start = time.perf_counter()
        for i in range(n):
            node.schedule(pid, action(pid, "Transfer", ("Recipient", "R" * 43), ("Quantity", "1"), nonce=str(i))
                          if token else eval_msg(pid, "return 1", nonce=str(i)))
        ingest = n / (time.perf_counter() - start)
        start, cpu = time.perf_counter(), time.process_time()
        node.now(pid)
        full = Rate(n / (time.perf_counter() - start), n / (time.process_time() - cpu))
        # The bare device gets exactly the JSON the process path hands it (the same messages in the
        # same order from the same state), under the same limits as the wasm device gives it (a
        # deadline per call, from the node's compute cap) and, for reference, with no limit at all.
        process = node.store.get_process(pid)
        instance = node.live.state(pid).instance
        assert instance is not None
        memory = instance.memory_sha256()  # what bare wasm must end with too: the same work
        limited = bare_rate(node, pid, first, n, limits_for(process), memory) if bare else full
        unlimited = bare_rate(node, pid, first, n, Limits(), memory) if bare else full
        node.close()
    return ingest, full, limited, unlimited


def bare_rate(node: Node, pid: str, first: int, n: int, limits: Limits, memory: str) -> Rate:
    """Messages/s of a bare Instance.handle on the backlog's own messages, each once and in slot
    order, from the same state (the setup slots replayed first): the same work the process path's
    wasm device does, its JSON made before the clock starts. Its first two messages (spawn, setup)
    move the instance onto the fast variant, as they moved the process's. It must end with the
    process's memory (`memory`, its sha256)."""
    inst = Instance(node.runtime, node.images.load("aos2_0_6"), limits=limits)
    process = node.store.get_process(pid)
    proc_env = environment(pid, process)
    env = aos.env_json(proc_env["Process"], proc_env["Module"])

    def message(slot: int) -> str:
        a = node.store.get_assignment(pid, slot)
        return aos.message_json(legacy_message(process if slot == 0 else a.message, pid, process, a))

    for setup in range(first):
        inst.handle(message(setup), env)
    backlog = [message(slot) for slot in range(first, first + n)]
    start, cpu = time.perf_counter(), time.process_time()
    for msg in backlog:
        inst.handle(msg, env)
    rate = Rate(n / (time.perf_counter() - start), n / (time.process_time() - cpu))
    if inst.memory_sha256() != memory:
        raise SystemExit("bare wasm did not end with the process path's memory: not the same work")
    inst.close()
    return rate


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
    parser.add_argument("--repeat", type=int, default=1, help="alternating throughput runs; medians reported")
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
        t = throughput(n, token, args.repeat)
        print(f"\n## throughput, {n} messages: {label} (median of {args.repeat}; load {os.getloadavg()[0]:.2f})")
        print("| path | msgs/s (wall) | msgs per CPU-second (all threads) | cores used |\n|---|---:|---:|---:|")
        print(f"| Node.schedule (durable: fsync before acknowledging) | {t.ingest:.0f} | | |")
        for name, rate in (
            ("Node.now over the backlog, wasm ahead (stack, patch, push, store, snapshots)", t.ahead),
            ("Node.now over the backlog, one slot at a time (AONODE_WASM_AHEAD=0)", t.one_at_a_time),
            ("bare Instance.handle, the process's limits (wasm device only)", t.bare),
            ("bare Instance.handle, no compute limit (no deadline per call)", t.unlimited),
        ):
            print(f"| {name} | {rate.wall:.0f} | {rate.cpu:.0f} | {rate.cores:.2f} |")
        print("\n| ratio | wall | CPU |\n|---|---:|---:|")
        paths = (("process path (wasm ahead)", t.ahead), ("process path one slot at a time", t.one_at_a_time))
        for name, path in paths:
            print(f"| {name} / bare wasm | {path.wall / t.bare.wall:.2f}x | {path.cpu / t.bare.cpu:.2f}x |")
            print(f"| {name} / bare wasm without a limit | {path.wall / t.unlimited.wall:.2f}x | "
                  f"{path.cpu / t.unlimited.cpu:.2f}x |")
    if args.throughput_only:
        return
    count = 100 if args.quick else 1000
    before, after, live, elapsed = rss_after_spawns(count)
    print(f"\n## {count} spawned processes\n| peak RSS before (MiB) | peak RSS after (MiB) | live instances | spawn+slot-0 per process (ms) |")
    print("|---:|---:|---:|---:|")
    print(f"| {before:.0f} | {after:.0f} | {live} | {elapsed / count * 1000:.1f} |")


if __name__ == "__main__":
    main()
