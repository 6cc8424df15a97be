"""The patched cache on disk as full copies now and then plus the per-slot changes in between.

Why: a process that patched 100k keys once and then one key per message used to store the whole
cache again at every patching slot (issue 10 item 14: 20 one-key patches grew the DB by 21 MB).
Now a patching slot stores only what it merged (the patch payloads, in order), and a full copy is
written when the changes since the last one add up to more than that copy (or there are many of
them), so reading the cache at a slot replays at most about one copy's worth of changes, and the
store grows with what the process patches, not with the cache's size times the patches.

Both SQL stores keep the same two tables (`caches`: full copies, `cache_changes`: one row per
patching slot with the payloads) and use this module for the decision and the replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbor2

MIN_FULL_BYTES = 64 * 1024  # below this much of changes, a full copy is never worth writing
MAX_CHANGES = 256  # changes rows between two full copies: bounds the replay of a read

JsonMap = dict[str, Any]


def merge(cache: JsonMap, patch: JsonMap) -> JsonMap:
    """Deep-merge `patch` into `cache` in place: maps merge, anything else replaces, nothing is deleted."""
    for key, value in patch.items():
        current = cache.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        else:
            cache[key] = _copy(value)
    return cache


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass(frozen=True)
class SinceFull:
    """What the store holds for a process since its last full copy."""

    full_bytes: int  # size of the last full copy (0: none yet)
    changes_bytes: int  # encoded changes rows after it
    changes: int  # how many


def encode_changes(changes: Iterable[JsonMap]) -> bytes:
    return cbor2.dumps(list(changes))


def wants_full(since: SinceFull, new_changes_bytes: int) -> bool:
    """Write a full copy instead of one more changes row?"""
    pending = since.changes_bytes + new_changes_bytes
    return since.changes + 1 > MAX_CHANGES or pending > max(MIN_FULL_BYTES, since.full_bytes)


@dataclass(frozen=True)
class CacheChanges:
    """The patch payloads merged at each patching slot of a computed batch (slot order), and the
    cache after the last of them (None: do not write a full copy now, e.g. after a failed slot)."""

    slots: list[tuple[int, list[JsonMap] | bytes]]  # bytes: the payloads already encoded (encode_changes)
    cache: JsonMap | None


@dataclass(frozen=True)
class CacheRows:
    """What to write for a CacheChanges: changes rows (slot, CBOR) and at most one full copy."""

    changes: list[tuple[int, bytes]]
    full: tuple[int, bytes] | None


def plan(since: SinceFull, batch: CacheChanges) -> CacheRows:
    """One changes row per slot; when a full copy comes due anywhere in the batch, it is written
    at the batch's last slot (where `batch.cache` is the cache) in place of that slot's changes,
    so one batch is one transaction and a read replays at most one batch more than MAX_CHANGES."""
    rows: list[tuple[int, bytes]] = []
    due = False
    for slot, payloads in batch.slots:
        delta = payloads if isinstance(payloads, bytes) else encode_changes(payloads)
        due = due or wants_full(since, len(delta))
        since = SinceFull(since.full_bytes, since.changes_bytes + len(delta), since.changes + 1)
        rows.append((slot, delta))
    if not (due and rows and batch.cache is not None):
        return CacheRows(rows, None)
    return CacheRows(rows[:-1], (rows[-1][0], cbor2.dumps(batch.cache)))


def replay(full: tuple[int, bytes] | None, changes: Iterable[tuple[int, bytes]]) -> tuple[int, JsonMap] | None:
    """The cache after the last row: the full copy (slot, CBOR) with the changes rows after it
    (slot, CBOR list of payloads; in slot order) merged on top. None when there is nothing."""
    slot, cache = (full[0], cbor2.loads(full[1])) if full else (-1, {})
    seen = full is not None
    for at, body in changes:
        for payload in cbor2.loads(body):
            merge(cache, payload)
        slot, seen = at, True
    return (slot, cache) if seen else None
