"""What the two SQL stores share: the assignment row's columns and decoding, slot ranges, keys.

Both stores keep the same tables under the same column names, so one mapping serves both; only
the parameter mark differs (`?` in SQLite, `%s` in psycopg).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment
from aonode.engine.wasm.chunk_codec import ZERO_HASH
from aonode.engine.wasm.chunked import Manifest, SnapshotDamaged

GC_EVERY = 8  # chunked snapshots stored between two collections of unreferenced chunks
KEEP_SNAPSHOTS = 8  # chunked snapshots kept per process: the newest, and older ones to fall back on

ASSIGNMENT_COLUMNS = "process, slot, message_id, timestamp, block_height, block_hash, epoch, hash_chain, message"
# A scheduled message's body is stored once, in its assignment row (`messages` holds process definitions
# and messages put on their own; rows written before also hold a copy of each scheduled one there). Found
# through the (process, message_id) key of each listed process: every assignment but a slot 0 whose spawn
# never finished is of a listed process. That slot 0 (a crash before its process was listed) holds its
# spawn, whose id is the process id: the second lookup finds it by key. Takes the message id twice.
SCHEDULED_MESSAGE = (
    "SELECT message FROM assignments WHERE process IN (SELECT pid FROM processes) AND message_id = {mark} "
    "UNION ALL SELECT message FROM assignments WHERE process = {mark} AND slot = 0 LIMIT 1"
)
# An assignment's columns but the message: enough to tell whether a kept assignment is still the tip.
TIP_COLUMNS = "slot, message_id, timestamp, block_height, block_hash, epoch, hash_chain"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def row_to_assignment(row: Sequence[Any]) -> Assignment:
    process, slot, mid, ts, height, bhash, epoch, chain, body = row
    return Assignment(
        process=process,
        slot=slot,
        message_id=mid,
        timestamp=ts,
        block_height=height,
        block_hash=bhash,
        epoch=epoch,
        hash_chain=chain,
        message=Message.from_cbor(bytes(body), f"message {mid} at slot {slot} of process {process}"),
    )


def is_tip(a: Assignment, row: Sequence[Any]) -> bool:
    """True when the TIP_COLUMNS `row` read for a.process is `a`."""
    return (a.slot, a.message_id, a.timestamp, a.block_height, a.block_hash, a.epoch, a.hash_chain) == tuple(row)


def assignment_values(a: Assignment, body: bytes) -> tuple[Any, ...]:
    """The values for ASSIGNMENT_COLUMNS, in order (`body` is the message's CBOR)."""
    return (a.process, a.slot, a.message_id, a.timestamp, a.block_height, a.block_hash, a.epoch, a.hash_chain, body)


IN_CHUNK = 500  # values bound in one `IN (...)` at most (SQLite's old default limit is 999)


def in_chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    """`values` in pieces small enough for one `IN (...)` each."""
    return (values[start : start + IN_CHUNK] for start in range(0, len(values), IN_CHUNK))


def range_clause(frm: int | None, to: int | None, mark: str = "?") -> tuple[str, list[int]]:
    """SQL for an inclusive slot range; None leaves that side open."""
    sql, args = "", []
    if frm is not None:
        sql += f" AND slot >= {mark}"
        args.append(frm)
    if to is not None:
        sql += f" AND slot <= {mark}"
        args.append(to)
    return sql, args


def check_sha256(memory_sha256: str) -> str:
    """A snapshot's key, refused unless it is a sha256 in hex (it names a file in SQLiteStore)."""
    if not _SHA256_HEX.match(memory_sha256):
        raise BadInput(f"memory sha256 must be 64 lowercase hex digits: {memory_sha256!r:.80}")
    return memory_sha256


def already_assigned(batch: Sequence[Assignment]) -> str:
    """The error text for a batch that hit a unique (process, slot) or (process, message) key."""
    if not batch:
        return "nothing to assign"
    slots = ", ".join(str(a.slot) for a in batch[:5])
    return f"process {batch[0].process}: slot(s) {slots} or their messages are already assigned"


def live_chunks(manifests: Iterable[bytes]) -> set[str]:
    """The chunk hashes the given stored manifests name (damaged manifests name none)."""
    named: set[bytes] = set()  # raw names first: the manifests of one process share most of theirs
    for body in manifests:
        try:
            manifest = Manifest.from_bytes(bytes(body))
        except SnapshotDamaged:
            continue
        named.update(manifest.hashes, manifest.bases)
    named.discard(ZERO_HASH)  # implied, never stored
    return {name.hex() for name in named}
