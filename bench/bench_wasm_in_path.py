"""The wasm call inside the process path vs the same call bare, in paired blocks (issue 13 goal 1).

Run: python bench/bench_wasm_in_path.py [--blocks 20] [--block 20] [--ahead]

Why: bench_process.py measures the path and bare wasm one after the other, so on a shared machine a
change of load between the two reads as a difference in the call itself (a profile once showed the
call ~240 µs slower in the path). Here blocks alternate: `--block` token Transfers computed by the
path (`Node.now`, one slot at a time unless `--ahead`), each `Instance.handle` timed, then the same
messages on a bare instance at the same state (same image variant, limits and memory), so load hits
both sides alike. Medians of the per-call times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aonode.engine import aos  # noqa: E402
from aonode.engine.devices.json_iface import environment, legacy_message  # noqa: E402
from aonode.engine.devices.wasm64 import limits_for  # noqa: E402
from aonode.engine.devices.wasm_ahead import SWITCH  # noqa: E402
from aonode.engine.wasm import Instance  # noqa: E402
from bench.paired_lanes import PATCHING_TOKEN  # noqa: E402
from tests.helpers.images import use_shared_modules  # noqa: E402
from tests.helpers.nodeutil import action, definition, eval_msg, make_node  # noqa: E402

use_shared_modules()
HANDLE = Instance.handle


def paired(blocks: int, block: int) -> tuple[list[float], list[float], str]:
    """(path call seconds, bare call seconds, what both ran on)."""
    in_path: list[float] = []
    timing = [False]

    def timed(self: Instance, msg_json: str, env_json: str) -> str:
        start = time.perf_counter()
        try:
            return HANDLE(self, msg_json, env_json)
        finally:
            if timing[0]:
                in_path.append(time.perf_counter() - start)

    Instance.handle = timed  # type: ignore[method-assign]
    bare_calls: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            node = make_node(Path(tmp) / "node")
            pid = node.spawn(definition())["process"]
            node.images.load("aos2_0_6").wait_variant()
            node.schedule(pid, eval_msg(pid, PATCHING_TOKEN))
            node.now(pid)
            process = node.store.get_process(pid)
            proc_env = environment(pid, process)
            env = aos.env_json(proc_env["Process"], proc_env["Module"])

            def message(slot: int) -> str:
                a = node.store.get_assignment(pid, slot)
                assert a is not None
                return aos.message_json(legacy_message(process if slot == 0 else a.message, pid, process, a))

            bare = Instance(node.runtime, node.images.load("aos2_0_6"), limits=limits_for(process))
            for slot in range(node.slot(pid)["current"] + 1):  # the same state, on the variant after these
                HANDLE(bare, message(slot), env)
            sent = 0
            for _ in range(blocks):
                first = node.slot(pid)["current"] + 1
                for _ in range(block):
                    transfer = action(pid, "Transfer", ("Recipient", "R" * 43), ("Quantity", "1"), nonce=str(sent))
                    node.schedule(pid, transfer)
                    sent += 1
                timing[0] = True
                node.now(pid)
                timing[0] = False
                for slot in range(first, first + block):
                    msg = message(slot)
                    start = time.perf_counter()
                    HANDLE(bare, msg, env)
                    bare_calls.append(time.perf_counter() - start)
            live = node.live.state(pid).instance
            assert live is not None
            ran = (
                f"path: {live.flavor.value}, {live.memory_size >> 20} MiB; "
                f"bare: {bare.flavor.value}, {bare.memory_size >> 20} MiB"
            )
            bare.close()
            node.close()
    finally:
        Instance.handle = HANDLE  # type: ignore[method-assign]
    return in_path, bare_calls, ran


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--ahead", action="store_true", help="the path's wasm calls on the wasm-ahead thread")
    args = parser.parse_args()
    os.environ[SWITCH] = "1" if args.ahead else "0"
    in_path, bare, ran = paired(args.blocks, args.block)
    path_us, bare_us = statistics.median(in_path) * 1e6, statistics.median(bare) * 1e6
    mode = "wasm ahead" if args.ahead else "one slot at a time"
    print(
        f"\n## wasm call per token Transfer, {len(bare)} messages in blocks of {args.block} ({ran}; "
        f"load {os.getloadavg()[0]:.2f})\n| where | median µs | mean µs |\n|---|---:|---:|"
    )
    print(f"| in the process path ({mode}) | {path_us:.0f} | {statistics.mean(in_path) * 1e6:.0f} |")
    print(f"| bare Instance.handle, same messages | {bare_us:.0f} | {statistics.mean(bare) * 1e6:.0f} |")
    print(f"| path / bare | {path_us / bare_us:.2f}x | |")


if __name__ == "__main__":
    main()
