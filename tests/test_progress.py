"""Progress a person can see: long work registers a task (the dashboard lists it) and, when the CLI
watches, prints plain lines to a log (a bar only on a terminal)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from aonode.engine.devices.process import REPLAY_PROGRESS_FROM
from aonode.engine.progress import PROGRESS, Progress
from tests.helpers.nodeutil import definition, eval_msg, make_node


def test_plain_lines_when_the_stream_is_not_a_terminal() -> None:
    progress, log = Progress(), io.StringIO()
    progress.report_to(log)
    with progress.task("fetching image", total=300, unit="B") as task:
        task.advance(100)
        task._last_line = 0.0  # as if two seconds had passed since the last line
        task.advance(50)
    lines = log.getvalue().splitlines()
    assert lines[0] == "aonode: fetching image: 0% 0/300 B (started)"
    assert lines[1] == "aonode: fetching image: 50% 150/300 B"
    assert lines[2].startswith("aonode: fetching image: 50% 150/300 B (done in ")
    [shown] = progress.tasks()
    assert shown["done"] == 150 and shown["fraction"] == 0.5 and shown["finished"]


def test_a_failed_task_says_why() -> None:
    progress = Progress()
    try:
        with progress.task("preparing variant"):
            raise ValueError("wasm-opt refused")
    except ValueError:
        pass
    assert progress.tasks()[0]["error"] == "ValueError: wasm-opt refused"


@pytest.mark.slow
def test_computing_many_slots_at_once_is_a_task(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    try:
        pid = node.spawn(definition())["process"]
        count = REPLAY_PROGRESS_FROM + 2
        for i in range(count):
            node.schedule(pid, eval_msg(pid, f"X = {i}"))
        assert node.now(pid)["at-slot"] == count
        label = f"computing {pid[:8]}… slots 0–{count}"
        [task] = [t for t in PROGRESS.tasks() if t["label"] == label]
        assert task["done"] == task["total"] == count + 1 and task["finished"] and task["error"] is None
        node.schedule(pid, eval_msg(pid, "X = 'one more'"))
        node.now(pid)  # one slot: no task
        assert not [t for t in PROGRESS.tasks() if str(t["label"]).startswith(f"computing {pid[:8]}… slots {count + 1}")]
    finally:
        node.close()
