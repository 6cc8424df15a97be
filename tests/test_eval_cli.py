"""`aonode eval` as a user runs it: a subprocess printing one JSON line per evaluated message."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # `aonode eval` subprocesses


def run_eval(*args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "aonode.server.cli", "eval", *args],
                          capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_eval_spawns_then_evaluates_each_argument(aos_image):
    rc, lines, err = run_eval(str(aos_image), "return 1+1", "x = 20", "print('p'); return x + 1", 'error("boom")')
    assert rc == 1, err  # the last message errored
    assert [line["slot"] for line in lines] == [0, 1, 2, 3, 4]
    assert lines[1]["output"] == "2" and lines[1]["error"] is None
    assert lines[3]["output"] == "p\n21"
    assert "boom" in lines[4]["error"]
    assert all(len(line["memory_sha256"]) == 64 for line in lines)
    assert lines[3]["memory_sha256"] != lines[4]["memory_sha256"]


def test_eval_is_deterministic_and_snapshots_continue(aos_image, tmp_path):
    _, whole, _ = run_eval(str(aos_image), "y = 3", "return y * 14")
    snap = tmp_path / "state.snap"
    rc, first, err = run_eval(str(aos_image), "y = 3", "--snapshot-out", str(snap))
    assert rc == 0 and snap.exists(), err
    rc, second, err = run_eval(str(aos_image), "return y * 14", "--snapshot-in", str(snap))
    assert rc == 0, err
    assert second[0]["slot"] == 2 and second[0]["output"] == "42"
    assert [line["memory_sha256"] for line in first + second] == [line["memory_sha256"] for line in whole]


def test_eval_compute_limit_fails_one_message_only(aos_image):
    rc, lines, _ = run_eval(str(aos_image), "z = 1", "while true do end", "return z",
                            "--compute-limit", "1000000000", "--memory-limit", "1-gb")
    assert rc == 1
    assert "ComputeLimitExceeded" in lines[2]["error"]
    assert lines[2]["memory_sha256"] == lines[1]["memory_sha256"]
    assert lines[3]["output"] == "1"


def test_eval_unknown_module_is_a_usage_error(tmp_path):
    rc, lines, err = run_eval(str(tmp_path / "missing.wasm"), "return 1")
    assert rc == 2 and not lines and "missing.wasm" in err
