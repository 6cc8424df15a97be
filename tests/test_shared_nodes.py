"""Two Nodes in one test process on one PostgreSQL database: the lease holder computes, the other asks
it and answers from the store, reads on the other node see the newest state, and a released lease is
taken over. (The same with real servers and kill -9: tests/test_scaleout.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine.leases import LeaseConfig
from tests.helpers.nodeutil import definition, eval_msg, make_node, output

pytestmark = pytest.mark.slow  # two AOS instances

LEASES = LeaseConfig(ttl=1.0, wait=20.0)


def test_the_holder_computes_and_the_other_node_reads(tmp_path: Path, pg_dsn: str):
    a = make_node(tmp_path / "a", store=pg_dsn, leases=LEASES)
    b = make_node(tmp_path / "b", store=pg_dsn, leases=LEASES)
    try:
        pid = a.spawn(definition())["process"]
        a.schedule(pid, eval_msg(pid, "X = 1"))
        assert b.now(pid)["at-slot"] == 1
        assert a.leases.holder(pid) == b.leases.holder(pid) != None  # noqa: E711  (b's owner id)
        assert output(a.dry_run(pid, eval_msg(pid, "return X", nonce="d1"))) == "1"  # a: a warm copy

        a.schedule(pid, eval_msg(pid, "X = X + 1; return X"))
        before = a.slots_evaluated
        assert output(a.now(pid)) == "2"  # computed by b, asked through NOTIFY
        assert a.slots_evaluated == before
        assert output(b.compute(pid, 2)) == "2" and a.pending(pid) == 0 == b.pending(pid)
        # a's warm copy (slot 1) catches up with what b computed before a dry-run reads it
        assert output(a.dry_run(pid, eval_msg(pid, "return X", nonce="d2"))) == "2"

        b.close()  # releases its leases
        assert a.schedule(pid, eval_msg(pid, "X = X + 1; return X", nonce="third"))["slot"] == 3
        assert output(a.now(pid)) == "3"  # a takes over
        assert a.leases.holder(pid) is not None
    finally:
        a.close()
        b.close()
