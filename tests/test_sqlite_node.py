"""The AOS-SQLite image on a real Node: lsqlite3 in memory and in a database file of the process's
emscripten filesystem, across a snapshot/restore and a node restart (the FS is part of the snapshot)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.nodeutil import definition, eval_msg, make_node, output as node_output

pytestmark = pytest.mark.slow  # the 3 MB AOS-SQLite image on a node, twice

SETUP = ("local sqlite3 = require('lsqlite3'); Mem = sqlite3.open_memory(); "
         "Mem:exec('CREATE TABLE t(a, b); INSERT INTO t VALUES (1, \"x\"), (2, \"y\")'); "
         "Db = sqlite3.open('/tmp/app.db'); "
         "Db:exec('CREATE TABLE kv(k, v); INSERT INTO kv VALUES (\"answer\", 42)'); return 'ready'")
SELECT = ("local r = {}; for row in Mem:nrows('SELECT * FROM t ORDER BY a') do r[#r+1] = row.a .. row.b end; "
          "for v in Db:urows('SELECT v FROM kv') do r[#r+1] = v end; return table.concat(r, ',')")
def output(view: dict) -> str:
    """This AOS build answers an Eval with {output, prompt, json} as its Output's data."""
    data = node_output(view)
    return str(data["output"]) if isinstance(data, dict) else str(data)


REOPEN = ("Db:close(); Db = require('lsqlite3').open('/tmp/app.db'); Db:exec('INSERT INTO kv VALUES (\"more\", 7)'); "
          "local n; for c in Db:urows('SELECT sum(v) FROM kv') do n = c end; return n")


def test_sqlite_survives_snapshots_and_restarts(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = make_node(data)
    pid = node.spawn(definition(("Cache-Frequency", "2"), module="sqlite"))["process"]
    for code in (SETUP, SELECT):
        node.schedule(pid, eval_msg(pid, code))
    assert output(node.now(pid)) == "1x,2y,42"  # slot 2: a snapshot is taken here
    node.close()  # a clean stop snapshots the live process

    restarted = make_node(data)
    restarted.schedule(pid, eval_msg(pid, SELECT, nonce="after restart"))
    assert output(restarted.now(pid)) == "1x,2y,42"
    assert restarted.slots_evaluated == 1  # restored from the snapshot, files and open databases included
    restarted.schedule(pid, eval_msg(pid, REOPEN))
    assert output(restarted.now(pid)) == "49"
    restarted.store.close()  # a crash: the next start replays from the last snapshot

    again = make_node(data)
    again.schedule(pid, eval_msg(pid, "local n; for c in Db:urows('SELECT count(*) FROM kv') do n = c end; return n"))
    assert output(again.now(pid)) == "2"
    again.close()
