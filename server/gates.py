"""The two bounded thread pools every engine call goes through, and the server's size limits.

Two pools, because a long compute must never delay a read of already computed state: `quick` runs
store reads and appends, `compute` runs anything that may evaluate messages and answers 503 +
Retry-After (engine `Busy`) once its queue is full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread

from aonode.engine import metrics
from aonode.engine.errors import Busy

RETRY_AFTER_SECONDS = 1  # the Retry-After of every Busy (503) answer

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Limits:
    max_body: int = 10 * 1024 * 1024
    compute_workers: int = 2
    compute_queue: int = 256
    quick_workers: int = 16  # reads, and /push schedules waiting for a group commit (signed schedules: ingest.py)
    quick_queue: int = 10_000


@dataclass
class Gate:
    """A bounded thread pool with a bounded queue: past `workers + queue` callers, Busy at once."""

    workers: int
    queue: int
    name: str = "compute"
    pending: int = 0
    _limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        if self.pending >= self.workers + self.queue:
            raise Busy(f"the {self.name} queue is full ({self.pending} waiting or running); retry later")
        if self._limiter is None:  # made lazily: a limiter belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        self.pending += 1
        metrics.pool_depth(self.name, self.pending)
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self.pending -= 1
            metrics.pool_depth(self.name, self.pending)
