"""Compute leases: which node computes a process, when several nodes share one PostgreSQL store.

Why: any node may schedule (the store's sequencer keeps one chain), but a process's memory lives in
one node's wasm instance at a time. The node holding a process's lease is the only one computing it;
the others answer reads from stored results and, for `now`, ask the holder to compute (NOTIFY
`aonode_work`) and wait for its `aonode_computed` notice. A lease lasts `ttl` seconds (the database's
clock) and is renewed while its node lives; when a node dies (kill -9), its leases expire and the next
node to need the process claims it and continues from the last stored snapshot.

On one SQLite store there is one node, so `LocalLeases` always says "yours"; the PostgreSQL side is
`engine/store/pg_leases.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from aonode.engine.errors import Busy


class Claim(Enum):
    HELD = "held"  # this node already held the lease (renewed): its live state is current
    FRESH = "fresh"  # newly this node's: whatever it kept in memory for the process may be stale
    OTHER = "other"  # another node holds an unexpired lease


@dataclass(frozen=True)
class LeaseConfig:
    ttl: float = 5.0  # seconds a lease outlives its last renewal (how long a dead node blocks)
    wait: float = 30.0  # how long a `now` waits for the holder before answering 503


DEFAULT_LEASES = LeaseConfig()


class Leases(Protocol):
    config: LeaseConfig

    def claim(self, pid: str) -> Claim: ...
    def release(self, pid: str) -> None: ...
    def computed(self, pid: str) -> None: ...
    def ask(self, pid: str) -> None: ...
    def wait_for(self, pid: str, done: Callable[[], bool], timeout: float) -> bool: ...
    def holder(self, pid: str) -> str | None: ...
    def close(self) -> None: ...


class LocalLeases:
    """One node on its own store: every process is always this node's."""

    def __init__(self, config: LeaseConfig = DEFAULT_LEASES) -> None:
        self.config = config

    def claim(self, pid: str) -> Claim:
        return Claim.HELD

    def release(self, pid: str) -> None:
        return None

    def computed(self, pid: str) -> None:
        return None

    def ask(self, pid: str) -> None:
        return None

    def wait_for(self, pid: str, done: Callable[[], bool], timeout: float) -> bool:
        return done()

    def holder(self, pid: str) -> str | None:
        return None

    def close(self) -> None:
        return None


def run_leased(leases: Leases, pid: str, done: Callable[[], bool], work: Callable[[Claim], None]) -> None:
    """Run `work` here when this node holds (or can take) the lease of `pid`; otherwise ask the
    holder and wait until `done()`. Each wait is at most one ttl, so a holder that died meanwhile is
    taken over on the next round; after `config.wait` seconds in all, Busy (HTTP 503)."""
    deadline = time.monotonic() + leases.config.wait
    while True:
        claim = leases.claim(pid)
        if claim is not Claim.OTHER:
            work(claim)
            return
        leases.ask(pid)
        remaining = deadline - time.monotonic()
        if leases.wait_for(pid, done, timeout=max(0.0, min(remaining, leases.config.ttl))):
            return
        if time.monotonic() >= deadline:
            raise Busy(
                f"process {pid} is being computed by node {leases.holder(pid) or '(none)'}, which "
                f"has not answered within {leases.config.wait:g} s; retry shortly"
            )
