"""Test helper: after a node stopped (or was killed), its stored schedule of `pid` is one gapless,
verified chain holding every acknowledged message at the slot its answer named."""

from __future__ import annotations

from pathlib import Path

from aonode.engine.devices.scheduler import verify_chain
from aonode.engine.store import open_store


def assert_all_stored(data: Path | str, pid: str, acknowledged: dict[str, int]) -> int:
    """The checks above; the number of slots stored."""
    store = open_store(str(data))
    try:
        schedule = store.assignments(pid)
        assert [a.slot for a in schedule] == list(range(len(schedule)))  # no gap, no duplicate
        assert verify_chain(schedule)
        stored = {a.message_id: a.slot for a in schedule}
        assert {mid: stored.get(mid) for mid in acknowledged} == acknowledged
        return len(schedule)
    finally:
        store.close()
