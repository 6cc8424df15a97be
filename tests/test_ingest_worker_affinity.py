"""server/ingest_worker.own_core (AONODE_WORKER_AFFINITY=1): worker i runs on the i-th core this process may
use, modulo their count (the supervisor gives each worker its place: --index, server/ingest_workers.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os, sys; from aonode.server.ingest_worker import own_core; own_core(int(sys.argv[1])); "
PROBE += "print(sorted(os.sched_getaffinity(0)))"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to choose")
def test_each_index_runs_on_its_own_core() -> None:
    cores = sorted(os.sched_getaffinity(0))
    for index in (0, 1, len(cores) + 1):
        out = subprocess.run([sys.executable, "-c", PROBE, str(index)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str([cores[index % len(cores)]])
