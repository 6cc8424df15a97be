"""aonode_schedule_commits_total counts every durable commit of a schedule, on both stores and both ways
of committing: with a group commit (the default) and with AONODE_GROUP_COMMIT=0 (one commit per call, the
switch the benches compare against), where it stayed at 0 while every call committed."""

from __future__ import annotations

import pytest

from aonode.engine.message import Message
from aonode.engine.metrics import REGISTRY
from aonode.engine.store import open_store
from tests.helpers.store_rows import OWNER, assignment, msg


def commits() -> float:
    return REGISTRY.get_sample_value("aonode_schedule_commits_total") or 0.0


@pytest.mark.parametrize("group", ["1", "0"])
def test_each_sequential_schedule_is_one_counted_commit(
    store_spec: str, group: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AONODE_GROUP_COMMIT", group)
    store = open_store(store_spec)
    try:
        proc = Message.create(owner=OWNER, tags=[("Type", "Process")], data=f"commits {group}")
        before = commits()
        store.append_assignment(assignment(proc.id, 0, proc))
        for n in range(1, 4):
            store.append_assignment(assignment(proc.id, n, msg(n)))
        assert commits() - before == 4  # sequential calls: one durable commit each
    finally:
        store.close()
