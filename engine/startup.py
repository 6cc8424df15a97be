"""Where a node's start spends its time: named marks on stderr, only when AONODE_STARTUP_TRACE=1.

bench/bench_coldstart.py sets it and reads the marks from the node's log to split a cold start into
phases (imports, wallet, compile, node, demo). A mark is `aonode-startup: <phase> <monotonic s> <cpu s>`:
CLOCK_MONOTONIC is the same clock in every process of the machine, so the bench subtracts its own
start; the CPU seconds are the whole process's (every thread, and the children it has reaped: the
wallet's key searches), which a loaded machine moves much less than wall times. Without the variable
`mark` does nothing.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "AONODE_STARTUP_TRACE"
PREFIX = "aonode-startup:"
_ON = os.environ.get(ENV) == "1"


def mark(phase: str) -> None:
    """Record that `phase` (one word, no spaces) is over now."""
    if _ON:
        cpu = sum(os.times()[:4])  # user + system, of this process and of its reaped children
        sys.stderr.write(f"{PREFIX} {phase} {time.monotonic():.4f} {cpu:.4f}\n")
        sys.stderr.flush()
