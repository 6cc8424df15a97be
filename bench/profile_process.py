"""Where a slot's time goes on the process path (issue 13 goal 1): µs per message in each part.

Run: python bench/profile_process.py [--messages 400] [--runs 2] [--one-at-a-time] [--wake-every 1 4]

Why: bench_process.py gives the ratio of the process path to bare wasm; this says which part of the
difference to cut next. The same token Transfer backlog as bench_process.py is computed by one
`Node.now`; the wasm call, the json-iface, patch and push devices, the batched store writes and the
periodic snapshot are each timed by a wrapper around them (a few µs of its own, no cProfile: its
per-call overhead inflates the many small Python calls several times over). A backlog runs its wasm
calls on a worker thread ahead of the slots' post-processing (engine/devices/wasm_ahead.py), so each
part is given per thread, in wall and in that thread's CPU time (the CPU columns are what to compare
on a loaded machine): the compute thread's parts plus its waits make the total, the wasm-ahead
thread's run meanwhile (AONODE_WASM_AHEAD=1: always, whichever way a node would measure faster);
`--one-at-a-time` (AONODE_WASM_AHEAD=0) profiles the path without the worker.
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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aonode.engine.devices import wasm_ahead  # noqa: E402
from aonode.engine.devices.json_iface import JSONInterface  # noqa: E402
from aonode.engine.devices.patch import Patch  # noqa: E402
from aonode.engine.devices.process import ProcessDevice  # noqa: E402
from aonode.engine.devices.push import Push  # noqa: E402
from aonode.engine.devices.slot_writes import SlotWrites  # noqa: E402
from aonode.engine.devices.wasm_ahead import SWITCH, _Worker  # noqa: E402
from aonode.engine.wasm import Instance  # noqa: E402
from bench.paired_lanes import PATCHING_TOKEN  # noqa: E402
from tests.helpers.nodeutil import action, definition, eval_msg, make_node  # noqa: E402

WORKER = "aonode-wasm-ahead"  # the wasm-ahead thread's name
PARTS: tuple[tuple[type, str, str], ...] = (
    (Instance, "handle", "wasm call (Instance.handle: what bare wasm measures)"),
    (Instance, "_rebuild", "  of which: rollback after an undecided message (rebuild, journal replay)"),
    (Instance, "_leave_home", "  of which: the move to the metered engine for its redo"),
    (JSONInterface, "compute", "json-iface (message JSON in on pass 1, result JSON out on pass 2)"),
    (JSONInterface, "prepare", "json-iface message JSON in, ahead of pass 1 (wasm ahead)"),
    (Patch, "compute", "patch device"),
    (Push, "compute", "push device"),
    (SlotWrites, "flush", "store: results + cache changes, one transaction per batch"),
    (ProcessDevice, "snapshot", "periodic snapshot, one slot at a time (the part on the compute thread)"),
    (ProcessDevice, "snapshot_before_cache", "periodic snapshot, wasm ahead (the memory copy on the worker)"),
)


@dataclass
class Window:
    """Calls are counted only while the timed `now` runs, and only on its thread and the wasm-ahead
    thread (a node also snapshots and prepares images on threads of its own). Each part's wall time
    and its thread's CPU time (time.thread_time): on a machine shared with other work the wall times
    swing with the load, the CPU times much less, so an A/B of a cut reads best in CPU."""

    compute: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    ahead: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    compute_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    ahead_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    thread: int | None = None
    compute_thread_cpu: float = 0.0  # the timed `now`'s thread's CPU seconds in all
    worker_cpu: float = 0.0  # the wasm-ahead threads' CPU seconds in all
    wakes: int = 0  # times the compute thread was woken with begun slots (slot_handover.py)


def timed(window: Window, label: str, fn: Callable[..., object]) -> Callable[..., object]:
    def wrapper(*args: object, **kwargs: object) -> object:
        if window.thread is None:
            return fn(*args, **kwargs)
        if window.thread == threading.get_ident():
            spent, cpu = window.compute, window.compute_cpu
        elif threading.current_thread().name == WORKER:
            spent, cpu = window.ahead, window.ahead_cpu
        else:
            return fn(*args, **kwargs)
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time() - start_cpu
            spent[label] += time.perf_counter() - start

    return wrapper


def _counting_worker(window: Window) -> tuple[object, object]:
    """_Worker's run and end, counting its thread's CPU time and the compute thread's wake-ups."""
    run, end = _Worker._run, _Worker.end

    def counted_run(worker: _Worker) -> None:
        start = time.thread_time()
        try:
            run(worker)
        finally:
            if window.thread is not None:
                window.worker_cpu += time.thread_time() - start

    def counted_end(worker: _Worker) -> list:
        left = end(worker)
        if window.thread is not None:
            window.wakes += worker.outputs.wakes
        return left

    return counted_run, counted_end


def profile(n: int) -> tuple[float, Window]:
    """(seconds of the whole `now`, seconds per part on each thread) over a backlog of `n` Transfers."""
    window = Window()
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in PARTS]
    # Wrapped before the node is made: a device stack looks its devices' methods up once, when built.
    for (cls, name, label), (_, _, fn) in zip(PARTS, originals, strict=True):
        setattr(cls, name, timed(window, label, fn))
    originals += [(_Worker, "_run", _Worker._run), (_Worker, "end", _Worker.end)]
    _Worker._run, _Worker.end = _counting_worker(window)  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            node = make_node(Path(tmp) / "node")
            try:
                pid = node.spawn(definition())["process"]
                node.images.load("aos2_0_6").wait_variant()
                node.schedule(pid, eval_msg(pid, PATCHING_TOKEN))
                node.now(pid)  # also moves the instance onto the fast variant
                for i in range(n):
                    transfer = action(pid, "Transfer", ("Recipient", "R" * 43), ("Quantity", "1"), nonce=str(i))
                    node.schedule(pid, transfer)
                window.thread = threading.get_ident()
                start, start_cpu = time.perf_counter(), time.thread_time()
                node.now(pid)
                total = time.perf_counter() - start
                window.compute_thread_cpu = time.thread_time() - start_cpu
                window.thread = None
            finally:
                node.close()
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)
    return total, window


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one-at-a-time", action="store_true", help="AONODE_WASM_AHEAD=0: no wasm-ahead thread")
    parser.add_argument(
        "--wake-every",
        type=int,
        nargs="+",
        default=[wasm_ahead.WAKE_EVERY],
        help="begun slots per wake-up of the compute thread (slot_handover.py); several: runs alternate between them",
    )
    args = parser.parse_args()
    os.environ[SWITCH] = "0" if args.one_at_a_time else "1"  # not as engine/devices/pace.py would choose
    n = args.messages
    for run in range(1, args.runs + 1):
        for wake_every in args.wake_every if run % 2 else reversed(args.wake_every):
            wasm_ahead.WAKE_EVERY = wake_every
            total, window = profile(n)
            report(run, n, total, window, f"WAKE_EVERY={wake_every}")


def _us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.0f}"


def report(run: int, n: int, total: float, window: Window, variant: str) -> None:
    """One run's table: each part's wall and CPU µs per message on each thread, then the threads' totals."""
    nested = {label for _, _, label in PARTS if label.startswith("  of which")}
    parts = sum(v for k, v in window.compute.items() if k not in nested)
    parts_cpu = sum(v for k, v in window.compute_cpu.items() if k not in nested)
    ahead_cpu = sum(v for k, v in window.ahead_cpu.items() if k not in nested)
    print(
        f"\n## run {run}, {variant}: Node.now over {n} token Transfers, {n / total:.0f} msgs/s"
        f" (load {os.getloadavg()[0]:.2f}); the compute thread was woken {window.wakes} times"
        " with begun slots\n"
        "| part | compute thread µs/msg wall | CPU | wasm-ahead thread µs/msg wall | CPU |\n|---|---:|---:|---:|---:|"
    )
    for _, _, label in PARTS:
        print(
            f"| {label} | {_us(window.compute[label], n)} | {_us(window.compute_cpu[label], n)} |"
            f" {_us(window.ahead[label], n)} | {_us(window.ahead_cpu[label], n)} |"
        )
    print(
        "| everything else (compute thread: stack, process device, schedule pages, metrics, waits for the"
        " wasm-ahead thread; worker: its loop, the stack around the wasm call) | "
        f"{_us(total - parts, n)} | {_us(window.compute_thread_cpu - parts_cpu, n)} | |"
        f" {_us(window.worker_cpu - ahead_cpu, n)} |"
    )
    print(f"| **total** | {_us(total, n)} | {_us(window.compute_thread_cpu, n)} | | {_us(window.worker_cpu, n)} |")
    wasm = window.compute[PARTS[0][2]] + window.ahead[PARTS[0][2]]
    print(f"| wasm call / total (the ceiling of process path / bare wasm) | {wasm / total:.2f}x | | | |")


if __name__ == "__main__":
    main()
