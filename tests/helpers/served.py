"""Test helper: `aonode serve` nodes sharing one PostgreSQL, seen from outside: schedule, read the
schedule, find the lease holder, and check a survivor's memory against one node on SQLite."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx
import psycopg

from aonode.engine.devices.scheduler import chain_link
from aonode.engine.store.postgres import PostgresStore
from tests.helpers.nodeutil import make_node

# A process counting its Add messages into its cache (`now/cache/count`).
COUNTER = """
Count = Count or 0
Handlers.add('Add', 'Add', function(m)
  Count = Count + 1
  Send({ device = 'patch@1.0', cache = { count = Count } })
end)
Send({ device = 'patch@1.0', cache = { count = Count } })
"""


@dataclass
class Served:
    url: str
    proc: Popen[str]
    client: httpx.Client

    def alive(self) -> bool:
        return self.proc.poll() is None


def spawn(node: Served, code: str, *tags: tuple[str, str]) -> str:
    """An aos2_0_6 process booting `code`; its id."""
    spawned = node.client.post("/~process@1.0/schedule", json={
        "Tags": [{"name": "Module", "value": "aos2_0_6"}, {"name": "On-Boot", "value": "Data"},
                 *({"name": name, "value": value} for name, value in tags)], "Data": code})
    assert spawned.status_code == 200, spawned.text
    return spawned.json()["process"]


def add(node: Served, pid: str, data: str) -> dict:
    answer = node.client.post(f"/{pid}~process@1.0/schedule", json={
        "Tags": [{"name": "Action", "value": "Add"}], "Data": data})
    assert answer.status_code == 200, answer.text
    return answer.json()


def schedule_of(node: Served, pid: str) -> list[dict]:
    rows: list[dict] = []
    while True:
        page = node.client.get(f"/{pid}~process@1.0/schedule", params={"from": len(rows)},
                               headers={"accept": "application/json"}).json()
        rows += page["assignments"]
        if not page["continues"]:
            return rows


def assert_one_chain(rows: list[dict], pid: str) -> None:
    assert [a["slot"] for a in rows] == list(range(len(rows)))
    previous = None
    for a in rows:
        assert a["hash-chain"] == chain_link(previous, a["message"]), f"chain breaks at {a['slot']}"
        previous = a["hash-chain"]
    assert rows[0]["message"] == pid


def holder_of(dsn: str, pid: str, nodes: list[Served]) -> Served:
    """The live node holding `pid`'s compute lease."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT owner FROM leases WHERE process = %s AND expires_at > now()",
                           (pid,)).fetchone()
    assert row and row[0], "nobody holds the lease after a `now`"
    for node in [n for n in nodes if n.alive()]:
        if f":{node.proc.pid}/" in row[0]:  # owner: address/host:pid/instance
            return node
    raise AssertionError(f"lease owner {row[0]} is none of the nodes")


def assert_same_memory_as_one_node(dsn: str, pid: str, node: Served, tmp_path: Path) -> None:
    """The memory `node` reached (after a takeover from a snapshot) is byte for byte the memory one
    node on SQLite reaches from the same schedule."""
    taken = node.client.get(f"/{pid}~process@1.0/snapshot", headers={"accept": "application/json"}).json()
    shared = PostgresStore(dsn)
    schedule, process = shared.assignments(pid), shared.get_process(pid)
    shared.close()
    alone = make_node(tmp_path / "one-node")
    try:
        assert process is not None
        alone.store.append_assignments(schedule)
        alone.store.put_process(pid, process)
        alone.compute(pid, taken["slot"])
        assert alone.snapshot(pid) == taken
    finally:
        alone.close()
