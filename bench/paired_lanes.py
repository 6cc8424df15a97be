"""The process path next to bare wasm in interleaved blocks, compared block by block (issue 13 goal 1).

Why: on a shared 2-vCPU machine one run's bare-wasm rate swings by +-30% from the next, so a ratio
of two separate runs says more about the moment than the path. Here a backlog is computed in
blocks: each block's messages are scheduled (untimed), then every lane computes that block, the
lanes' order rotating from block to block; each block gives one ratio per path lane over the bare
lane that ran beside it, and the bench reports the median of those paired ratios and their spread.

Lanes: a node computing its backlog with `Node.now` (as a node does: wasm ahead or one slot at a time,
as engine/devices/pace.py measures), two more nodes doing the same one slot at a time
(AONODE_WASM_AHEAD=0) and with wasm always ahead (=1), and bare `Instance.handle` on the first
node's messages under the process's limits and with none. Every lane must end with the first node's
memory (sha256): the same work, whichever way it ran.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aonode.engine import aos
from aonode.engine.devices.json_iface import environment, legacy_message
from aonode.engine.devices.wasm64 import limits_for
from aonode.engine.devices.wasm_ahead import SWITCH
from aonode.engine.wasm import Instance, Limits
from bench.workloads import TOKEN_LUA
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

PATCHING_TOKEN = TOKEN_LUA.replace(  # the token's Transfer also patches its balances into the cache
    '  Send({ Target = from, Action = "Debit-Notice"',
    '  Send({ device = "patch@1.0", cache = { balances = Balances } })\n'
    '  Send({ Target = from, Action = "Debit-Notice"',
)


@dataclass
class Lane:
    """One way of computing the blocks, and its rates per block (msgs per wall / per CPU second)."""

    name: str
    compute: Callable[[], None]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    ways: dict[bool, int] = field(default_factory=dict)  # slots finished ahead (True) / in batches, as pace chose

    def run(self, count: int) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        self.compute()
        self.walls.append(count / (time.perf_counter() - start))
        self.cpus.append(count / max(time.process_time() - cpu, 1e-9))


class PathNode:
    """A fresh node with one process on the token (or evaluating `return 1`), warmed onto the fast variant."""

    def __init__(self, data_dir: Path, token: bool, switch: str | None = None) -> None:
        self.node = make_node(data_dir)
        self.token = token
        self.switch = switch  # AONODE_WASM_AHEAD for its `now`: "0" one slot at a time, "1" always ahead
        self.pid = self.node.spawn(definition())["process"]
        # Steady state: the image's fast variant prepared and the instance moved onto it by one
        # untimed message, as each bare instance is by its untimed setup calls.
        self.node.images.load("aos2_0_6").wait_variant()
        self.node.schedule(self.pid, eval_msg(self.pid, PATCHING_TOKEN if token else "return 'warm'"))
        self.node.now(self.pid)
        self.scheduled = self.node.store.last_assignment(self.pid).slot + 1

    def schedule(self, count: int) -> float:
        """Schedule `count` more messages; durable schedules per second."""
        start, pid = time.perf_counter(), self.pid
        for i in range(self.scheduled, self.scheduled + count):
            self.node.schedule(
                pid,
                action(pid, "Transfer", ("Recipient", "R" * 43), ("Quantity", "1"), nonce=str(i))
                if self.token
                else eval_msg(pid, "return 1", nonce=str(i)),
            )
        self.scheduled += count
        return count / (time.perf_counter() - start)

    def now(self) -> None:
        if self.switch is None:
            self.node.now(self.pid)
            return
        os.environ[SWITCH] = self.switch
        try:
            self.node.now(self.pid)
        finally:
            del os.environ[SWITCH]

    def memory_sha256(self) -> str:
        instance = self.node.live.state(self.pid).instance
        assert instance is not None
        return instance.memory_sha256()


class Bare:
    """A bare instance replaying a node's process slot by slot, its messages' JSON made before the clock."""

    def __init__(self, source: PathNode, limited: bool) -> None:
        node, pid = source.node, source.pid
        self.source = source
        self.process = node.store.get_process(pid)
        limits = limits_for(self.process) if limited else Limits()
        self.inst = Instance(node.runtime, node.images.load("aos2_0_6"), limits=limits)
        proc_env = environment(pid, self.process)
        self.env = aos.env_json(proc_env["Process"], proc_env["Module"])
        self.done = 0
        self.pending: list[str] = []
        self.load()
        self.compute()  # the setup slots (spawn, warm-up): onto the fast variant, untimed

    def load(self) -> None:
        """The JSON of the source's slots scheduled and not yet computed here."""
        store, pid = self.source.node.store, self.source.pid
        self.pending = []
        for slot in range(self.done, self.source.scheduled):
            a = store.get_assignment(pid, slot)
            message = self.process if slot == 0 else a.message
            self.pending.append(aos.message_json(legacy_message(message, pid, self.process, a)))
        self.done = self.source.scheduled

    def compute(self) -> None:
        for message in self.pending:
            self.inst.handle(message, self.env)


@dataclass(frozen=True)
class Spread:
    """Median of paired-block ratios, quartiles and extremes."""

    median: float
    low: float
    high: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        return cls(statistics.median(values), min(values), max(values), q1, q3)


def paired(path: Lane, bare: Lane, cpu: bool = False) -> Spread:
    ups, downs = (path.cpus, bare.cpus) if cpu else (path.walls, bare.walls)
    return Spread.of([up / down for up, down in zip(ups, downs, strict=True)])


def run_blocks(tmp: Path, token: bool, n: int, blocks: int) -> tuple[list[Lane], list[float]]:
    """The lanes after `blocks` blocks of `n // blocks` messages, and the schedule rates."""
    ahead = PathNode(tmp / "ahead", token)
    single = PathNode(tmp / "single", token, switch="0")
    forced = PathNode(tmp / "forced", token, switch="1")
    limited, unlimited = Bare(ahead, limited=True), Bare(ahead, limited=False)
    lanes = [
        Lane("process path (Node.now)", ahead.now),
        Lane("process path, one slot at a time (AONODE_WASM_AHEAD=0)", single.now),
        Lane("process path, wasm always ahead (AONODE_WASM_AHEAD=1)", forced.now),
        Lane("bare wasm (Instance.handle, the process's limits)", limited.compute),
        Lane("bare wasm, no compute limit", unlimited.compute),
    ]
    size, ingest = n // blocks, []
    for block in range(blocks):
        ingest.append(ahead.schedule(size))
        single.schedule(size)
        forced.schedule(size)
        limited.load()
        unlimited.load()
        turn = block % len(lanes)
        for lane in lanes[turn:] + lanes[:turn]:
            lane.run(size)
    memory = ahead.memory_sha256()
    for bare in (limited, unlimited):
        if bare.inst.memory_sha256() != memory:
            raise SystemExit("bare wasm did not end with the process path's memory: not the same work")
        bare.inst.close()
    for other in (single, forced):  # the same definition and messages on each node: the same process id
        if other.pid != ahead.pid or other.memory_sha256() != memory:
            raise SystemExit("the path's ways did not end with the same memory")
    pace = ahead.node.live.state(ahead.pid).pace
    if pace is not None:
        lanes[0].ways = dict(pace.slots)
    for path in (ahead, single, forced):
        path.node.close()
    return lanes, ingest
