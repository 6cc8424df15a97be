"""engine/store/sqlite_db.py keeps each connection's `synchronous` setting and changes it only when a
transaction wants the other one: every durable transaction still commits with FULL (fsync in the commit)
and every other one with NORMAL, whatever ran before it on that thread or on another, and the group
commit's writer commits with FULL unless AONODE_SYNC_APART=1 (then NORMAL, its syncer fsyncs). The
setting is read by SQLite itself inside each transaction (PRAGMA synchronous: 1 NORMAL, 2 FULL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aonode.engine.store.base import ScheduleView
from aonode.engine.store.sqlite import SQLiteStore

NORMAL, FULL = 1, 2


def _inside(store: SQLiteStore, durable: bool) -> int:
    with store._tx(durable) as conn:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])


def test_each_transaction_runs_with_the_setting_it_wants_on_any_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    try:
        wants = [True, True, False, True, False, False, True]
        assert [_inside(store, durable) for durable in wants] == [FULL if d else NORMAL for d in wants]
        seen: list[int] = []
        other = threading.Thread(target=lambda: seen.extend(_inside(store, d) for d in (False, True, False)))
        other.start()
        other.join()
        assert seen == [NORMAL, FULL, NORMAL]
        assert _inside(store, True) == FULL and _inside(store, False) == NORMAL  # this thread's own
    finally:
        store.close()


@pytest.mark.parametrize(("apart", "expected"), [("0", FULL), ("1", NORMAL)])
def test_the_group_commits_writer_commits_full_unless_the_sync_is_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apart: str, expected: int
) -> None:
    monkeypatch.setenv("AONODE_SYNC_APART", apart)
    store = SQLiteStore(tmp_path)
    try:
        assert store._group is not None and (store._group.sync is not None) == (apart == "1")

        def plan(view: ScheduleView) -> tuple[list[object], int]:  # on the writer, inside its transaction
            return [], int(store._conn().execute("PRAGMA synchronous").fetchone()[0])

        for _ in range(3):
            assert store.sequence("p", plan) == expected  # type: ignore[arg-type]
            assert _inside(store, False) == NORMAL and _inside(store, True) == FULL  # other threads unchanged
    finally:
        store.close()


def test_deleted_rows_are_not_zeroed_on_any_thread(tmp_path: Path) -> None:
    """Collecting snapshot chunks must not write their pages once more to zero them (Debian's SQLite
    zeroes by default: PRAGMA secure_delete 1)."""
    store = SQLiteStore(tmp_path)
    try:
        seen: list[int] = []
        other = threading.Thread(
            target=lambda: seen.append(store._conn().execute("PRAGMA secure_delete").fetchone()[0])
        )
        other.start()
        other.join()
        assert seen == [0] and store._conn().execute("PRAGMA secure_delete").fetchone()[0] == 0
    finally:
        store.close()
