"""The store writes of computed slots, buffered so one compute run commits once per batch of slots.

Why: a slot's result and the cache changes its patches made used to cost a transaction each (plus
two queries to decide between a changes row and a full copy), more than the JSON around the wasm
call. Computed results can always be recomputed from the schedule, so durability per computed
batch is enough: results and cache changes of up to `limit` slots go into one transaction per
process (Store.put_results), results and cache always together, so a read never sees one ahead of
the other. A named snapshot is never ahead of the stored results (process.py flushes first).
Each slot's result and changes are encoded when it is added, not inside the batch's transaction
(store/result_rows.py: a long GIL-held stretch there stalls the wasm-ahead thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aonode.engine.jsondata import JsonObject
from aonode.engine.store.base import Store
from aonode.engine.store.cache_log import CacheChanges, encode_changes
from aonode.engine.store.result_rows import Encoded, encoded


@dataclass
class _Pending:
    """One process's buffered slots; `cache` is its live cache (the cache after its last slot)."""

    cache: JsonObject
    rows: list[tuple[int, str, Encoded]] = field(default_factory=list)
    changes: list[tuple[int, list[JsonObject] | bytes]] = field(default_factory=list)


@dataclass
class SlotWrites:
    store: Store
    limit: int
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _count: int = 0

    def add(
        self,
        pid: str,
        slot: int,
        message_id: str,
        record: JsonObject,
        changes: list[JsonObject] | None,
        cache: JsonObject,
    ) -> None:
        """Buffer slot `slot` of `pid` (its result `record`, the patch payloads it merged into
        `cache`); the buffer is stored once it holds `limit` slots. `record` and `changes` are
        encoded now: what they become afterwards is not stored."""
        pending = self._pending.get(pid)
        if pending is None:
            pending = self._pending[pid] = _Pending(cache)
        pending.cache = cache
        # Encoded here, one slot at a time, not in the batch's transaction (store/result_rows.py).
        pending.rows.append((slot, message_id, encoded(record)))
        if changes:
            pending.changes.append((slot, encode_changes(changes)))
        self._count += 1
        if self._count >= self.limit:
            self.flush()

    def flush(self, complete: bool = True) -> None:
        """Store what is buffered, one transaction per process. `complete` False (a slot failed
        part way, so a live cache may hold more than its last stored slot): no full cache copy."""
        pending, self._pending, self._count = self._pending, {}, 0
        for pid, batch in pending.items():
            cache = CacheChanges(batch.changes, batch.cache if complete else None)
            self.store.put_results(pid, batch.rows, cache)
