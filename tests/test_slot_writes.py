"""A compute run's results and cache changes, stored a batch at a time (engine/devices/slot_writes.py),
read back at every slot exactly as if each slot had been stored on its own, on both stores."""
from __future__ import annotations

import json
from pathlib import Path

from aonode.engine.devices.slot_writes import SlotWrites
from aonode.engine.store import SQLiteStore, open_store
from aonode.engine.store.cache_log import MAX_CHANGES, merge


def changes_of(slot: int) -> list[dict] | None:
    if slot % 3 == 0:
        return None  # a slot that patched nothing
    return [{"balances": {f"k{slot % 7}": slot}, "last": slot}, {"list": [slot]}] if slot % 5 else [{"n": slot}]


def compute(writes: SlotWrites, slots: range, cache: dict | None = None) -> tuple[dict[int, dict], dict]:
    """Buffer `slots` as the process device does; the cache each slot leaves (JSON copies)."""
    cache = {} if cache is None else cache
    seen: dict[int, dict] = {}
    for slot in slots:
        changes = changes_of(slot)
        for change in changes or []:
            merge(cache, change)
        writes.add("p", slot, f"m{slot}", {"Output": {"data": str(slot)}, "slot": slot}, changes, cache)
        seen[slot] = json.loads(json.dumps(cache))
    return seen, cache


def test_batched_results_and_cache_read_back_at_every_slot(store_spec: str) -> None:
    store = open_store(store_spec)
    try:
        writes = SlotWrites(store, limit=64)
        seen, cache = compute(writes, range(1, 2 * MAX_CHANGES + 100))
        assert store.last_result_slot("p") == 64 * (len(seen) // 64)  # stored once a batch is full
        writes.flush()
        assert store.last_result_slot("p") == max(seen)
        for slot in (1, 2, 3, 64, 65, MAX_CHANGES, MAX_CHANGES + 1, MAX_CHANGES + 70, max(seen) - 1):
            assert store.get_result("p", slot) == {"Output": {"data": str(slot)}, "slot": slot}
            patched = max(s for s in seen if s <= slot and changes_of(s))
            assert store.get_cache("p", slot) == (patched, seen[slot])
        assert store.get_cache("p")[1] == cache
    finally:
        store.close()


def test_full_copies_bound_the_replay_and_an_unfinished_batch_writes_none(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store")
    fulls = "SELECT COUNT(*) FROM caches"
    writes = SlotWrites(store, limit=2 * MAX_CHANGES + 64)
    _, cache = compute(writes, range(1, 2 * MAX_CHANGES))
    writes.flush(complete=False)  # a slot failed part way: the live cache may be ahead of the rows
    assert store._conn().execute(fulls).fetchone() == (0,)
    writes = SlotWrites(store, limit=64)
    seen, _ = compute(writes, range(2 * MAX_CHANGES, 2 * MAX_CHANGES + 10), cache)
    writes.flush()
    assert store._conn().execute(fulls).fetchone() == (1,)  # due: written at the batch's last slot
    for slot in (2 * MAX_CHANGES + 2, 2 * MAX_CHANGES + 6, 2 * MAX_CHANGES + 9):  # patching slots
        assert store.get_cache("p", slot) == (slot, seen[slot])
    store.close()


def test_one_slot_alone_is_stored_at_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store")
    writes = SlotWrites(store, limit=1)
    writes.add("p", 0, "m0", {"ok": True}, [{"a": 1}], {"a": 1})
    assert store.get_result("p", 0) == {"ok": True} and store.get_cache("p") == (0, {"a": 1})
    store.close()
