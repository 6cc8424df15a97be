"""A worker of `aonode serve --ingest-workers 1` that cannot start (its wallet file replaced by another
wallet's after the node loaded it: the worker refuses a key that is not the node's) is started again
ever more rarely, not at every poll for ever (each start costs a worker's imports and key load, ~0.6
CPU-s); once the file is the node's again, a worker starts and listens. Real CLI, loopback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from aonode.engine.crypto import Wallet
from tests.helpers.httpnode import cli_node
from tests.helpers.ingest import _children, _workers

pytestmark = pytest.mark.slow  # a served node whose worker is killed and fails to start again

FAILURES = 5  # workers watched end (the one killed, if still seen, and the starts that fail)


def _lifetimes(node_pid: int, count: int, timeout: float) -> list[tuple[float, float]]:
    """(appeared, ended) of the node's next `count` worker processes, watched every 20 ms."""
    seen: dict[int, list[float]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now, alive = time.monotonic(), _children(node_pid)
        for pid in alive:
            seen.setdefault(pid, [now, 0.0])
        for pid, times in seen.items():
            if pid not in alive and not times[1]:
                times[1] = now
        ended = [tuple(t) for t in seen.values() if t[1]]
        if len(ended) >= count:
            return sorted(ended)[:count]  # type: ignore[return-value]
        time.sleep(0.02)
    raise AssertionError(f"{count} workers did not start and end in {timeout} s: {seen}")


def test_a_worker_that_cannot_start_is_started_again_ever_more_rarely(tmp_path: Path) -> None:
    own, other = Wallet.generate("ed25519"), Wallet.generate("ed25519")
    wallet = tmp_path / "wallet.json"
    own.save(wallet)
    with cli_node(tmp_path / "node", "--ingest-workers", "1", "--wallet", str(wallet)) as (url, proc):
        (first,) = _workers(proc, url, 1)
        other.save(wallet)  # the next worker loads this one and refuses it
        os.kill(first, signal.SIGKILL)
        lives = _lifetimes(proc.pid, FAILURES, timeout=120)
        gaps = [start - end for (_, end), (start, _) in zip(lives, lives[1:], strict=False)]
        assert gaps[-1] >= 1.9, gaps  # waits of 0.5, 1, 2, 4 s (+ polls); before, each at the next poll
        own.save(wallet)
        _workers(proc, url, 1, timeout=90)  # started again (after at most RESTART_LONGEST), and it listens
