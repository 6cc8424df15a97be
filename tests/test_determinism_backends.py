"""The same schedule gives the same memory, slot by slot, whichever store holds it: a process computed
on SQLite, its schedule copied verbatim into PostgreSQL and computed again by a node on that store."""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine.store.postgres import PostgresStore
from tests.helpers.nodeutil import definition, eval_msg, make_node

pytestmark = pytest.mark.slow  # computes and snapshots every slot twice

CODE = ["Log = {}", "for i = 1, 200 do Log[i] = string.rep('x', i) end",
        "Total = 0; for i, v in ipairs(Log) do Total = Total + #v end", "return Total"]


def memory_by_slot(node, pid: str, last: int) -> list[str | None]:
    shas = []
    for slot in range(last + 1):
        node.compute(pid, slot)
        shas.append(node.snapshot(pid)["memory-sha256"])
    return shas


def test_same_schedule_same_memory_sha256_on_sqlite_and_postgresql(tmp_path: Path, pg_dsn: str):
    embedded = make_node(tmp_path / "sqlite")
    try:
        pid = embedded.spawn(definition())["process"]
        for code in CODE:
            embedded.schedule(pid, eval_msg(pid, code))
        last = len(CODE)
        on_sqlite = memory_by_slot(embedded, pid, last)
        assert embedded.compute(pid, last)["results"]["Output"]["data"] == "20100"
        schedule = embedded.store.assignments(pid)
        process = embedded.store.get_process(pid)
    finally:
        embedded.close()

    shared = PostgresStore(pg_dsn)
    shared.append_assignments(schedule)
    assert process is not None
    shared.put_process(pid, process)
    shared.close()
    other = make_node(tmp_path / "pg-node", store=pg_dsn)
    try:
        on_postgres = memory_by_slot(other, pid, last)
        assert other.compute(pid, last)["results"]["Output"]["data"] == "20100"
    finally:
        other.close()
    assert None not in on_sqlite and len(set(on_sqlite)) == len(on_sqlite)  # every slot changed memory
    assert on_postgres == on_sqlite
