"""Cron on the wall clock: a served node ticks a cron process without any message arriving.

Real hypercorn on loopback, real clock. The process patches its tick count from a Cron handler; the
test then only reads `compute` (which never does work itself), so any tick it sees was scheduled and
computed by the server's cron timer.
"""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.httpnode import http_node

pytestmark = pytest.mark.slow  # waits for real cron timers

COUNTER = """
Count = 0
Handlers.add("cron", Handlers.utils.hasMatchingTag("Action", "Cron"), function(msg)
  Count = Count + 1
  Send({ device = "patch@1.0", cache = { count = Count, tick = msg["Cron-Tick"] } })
end)
return "counting"
"""


def count_after_compute(c: httpx.Client, pid: str) -> int | None:
    r = c.get(f"/{pid}~process@1.0/compute/cache/count")
    return int(r.json()) if r.status_code == 200 else None


def test_a_served_cron_process_ticks_without_traffic(tmp_path: Path) -> None:
    with http_node(tmp_path / "node") as srv, srv.client() as c:
        r = c.post("/~process@1.0/schedule", json={
            "Tags": [{"name": "Module", "value": "aos2_0_6"}, {"name": "Cron-Frequency", "value": "1-Second"}],
            "Data": ""})
        assert r.status_code == 200, r.text
        pid = r.json()["process"]
        r = c.post(f"/{pid}~process@1.0/schedule", json={"Tags": [{"name": "Action", "value": "Eval"}],
                                                          "Data": COUNTER})
        assert r.status_code == 200, r.text
        assert c.get(f"/{pid}~process@1.0/now/cache").status_code in (200, 404)  # handler installed
        first = count_after_compute(c, pid)
        deadline, seen = time.monotonic() + 30, first
        while time.monotonic() < deadline and (seen or 0) < (first or 0) + 2:
            time.sleep(0.25)
            seen = count_after_compute(c, pid)
        assert seen is not None and seen >= (first or 0) + 2, (first, seen)
        # The schedule first: the cron loop goes on ticking, and a tick between the two reads would put
        # one more tick in a schedule read second than in the slot read first.
        page = c.get(f"/{pid}~process@1.0/schedule").json()
        slots = c.get(f"/{pid}~process@1.0/slot").json()
        ticks = [a for a in page["assignments"] if any(t["name"] == "Cron-Tick" for t in a["body"]["Tags"])]
        assert len(ticks) >= seen and slots["current"] >= 1 + len(ticks)


def test_cron_timer_can_be_turned_off(tmp_path: Path) -> None:
    from aonode.server.compose import make_node
    from aonode.server.app import create_app
    from tests.helpers.httpnode import serving

    node = make_node(tmp_path / "node", dev=True)
    try:
        with serving(create_app(node, dev=True, cron_every=0)) as url, httpx.Client(base_url=url, timeout=120) as c:
            pid = c.post("/~process@1.0/schedule", json={
                "Tags": [{"name": "Module", "value": "aos2_0_6"}, {"name": "Cron-Frequency", "value": "1-Second"}],
                "Data": ""}).json()["process"]
            time.sleep(2.5)
            assert c.get(f"/{pid}~process@1.0/slot").json()["current"] == 0  # nothing scheduled by itself
    finally:
        node.close()
