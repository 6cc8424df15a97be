"""kill -9 of a serving node: every acknowledged message is still scheduled and the state is the same."""
from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers.httpnode import cli_node

pytestmark = pytest.mark.slow  # kill -9 of a served node, restart, replay

COUNTER = "Count = 0; Handlers.add('inc', 'Inc', function(m) Count = Count + 1 end)"


def post(c: httpx.Client, path: str, body: dict) -> dict:
    answer = c.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "node"
    with cli_node(data, "--dev") as (url, proc), httpx.Client(base_url=url, timeout=120) as c:
        pid = post(c, "/~process@1.0/schedule", {"Tags": [{"name": "Module", "value": "aos2_0_6"}]})["process"]
        post(c, f"/{pid}~process@1.0/schedule", {"Tags": [{"name": "Action", "value": "Eval"}], "Data": COUNTER})
        assert c.get(f"/{pid}~process@1.0/now/at-slot").text == "1"
        slots = [post(c, f"/{pid}~process@1.0/schedule", {"Tags": [{"name": "Action", "value": "Inc"}]})["slot"]
                 for _ in range(20)]
        c.get(f"/{pid}~process@1.0/compute/10")  # part of the backlog computed, the rest not
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with cli_node(data, "--dev") as (url, _), httpx.Client(base_url=url, timeout=120) as c:
        schedule = c.get(f"/{pid}~process@1.0/schedule", params={"from": 0, "to": 100},
                         headers={"accept": "application/json"}).json()
        assert [a["slot"] for a in schedule["assignments"]] == list(range(slots[-1] + 1))
        post(c, f"/{pid}~process@1.0/schedule", {"Tags": [{"name": "Action", "value": "Eval"}], "Data": "return Count"})
        assert c.get(f"/{pid}~process@1.0/now/results/data").text == "20"
