"""Snapshot bytes outside the store's database: chunks by hash, manifests by name, in a blob bucket.

Why: a snapshot's chunks are the bulk of what a store holds, and they need no transaction, only a place
every node reaches. So a store may keep its snapshot index (process, slot -> name) in its own database
and the bytes in a `SnapshotBlobs` (an S3-compatible bucket: engine/store/s3_blobs.py). Every key is
the sha256 of what it names (a chunk's stored body, a manifest's bytes), so writes are idempotent and two
nodes writing the same chunk never conflict; reads are checked against the key on restore
(engine/wasm/chunked.py), so a damaged or missing object is never computed on.

Order: chunks, then the manifest, then (the caller) the index row, so an index row never names bytes
that were not written. Collection deletes what no indexed snapshot names, but only objects older than
`grace`: a snapshot being written right now (objects uploaded, index row not yet committed) keeps
its objects, since every write, even of an object already there, makes it new again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from aonode.engine.store.rows import live_chunks

GRACE_SECONDS = 15 * 60.0  # far longer than writing one snapshot takes


class Kind(Enum):
    """The two kinds of object, each under its own key prefix."""

    CHUNK = "chunks"  # a stored 64 KiB chunk (chunk_codec.py), named by the sha256 of these bytes
    SNAPSHOT = "snapshots"  # a chunked snapshot's manifest or a whole-memory snapshot, named as indexed


@dataclass(frozen=True)
class Listed:
    name: str
    modified: float  # seconds since the epoch, as the bucket reports it


class SnapshotBlobs(Protocol):
    """A flat namespace of immutable objects per kind. Reads leave missing objects out; an unreachable
    bucket is Busy (HTTP 503), never "missing"."""

    where: str  # for messages: s3://bucket/prefix

    def put(self, kind: Kind, items: Mapping[str, bytes]) -> None: ...
    def get(self, kind: Kind, names: Iterable[str]) -> dict[str, bytes]: ...
    def listing(self, kind: Kind) -> Iterator[Listed]: ...
    def delete(self, kind: Kind, names: Sequence[str]) -> None: ...
    def close(self) -> None: ...


@dataclass
class BlobSnapshots:
    """What a store does with snapshot bytes kept in a SnapshotBlobs (both SQL stores use it)."""

    blobs: SnapshotBlobs
    grace: float = GRACE_SECONDS

    def put(self, name: str, blob: bytes, chunks: Mapping[str, bytes] | None) -> None:
        """The snapshot's new chunks, then its manifest (or whole blob): before its index row."""
        if chunks:
            self.blobs.put(Kind.CHUNK, chunks)
        self.blobs.put(Kind.SNAPSHOT, {name: blob})

    def manifest(self, name: str) -> bytes | None:
        return self.blobs.get(Kind.SNAPSHOT, [name]).get(name)

    def chunks(self, hashes: Iterable[str]) -> dict[str, bytes]:
        return self.blobs.get(Kind.CHUNK, hashes)

    def collect(self, indexed: set[str]) -> int:
        """Delete the snapshots `indexed` (every name the store's index holds, all processes) does not
        name and the chunks no kept manifest names, if older than the grace; how many chunks went."""
        cutoff = time.time() - self.grace
        old = [
            item.name
            for item in self.blobs.listing(Kind.SNAPSHOT)
            if item.name not in indexed and item.modified < cutoff
        ]
        self.blobs.delete(Kind.SNAPSHOT, old)
        kept = self.blobs.get(Kind.SNAPSHOT, sorted(indexed))
        keep = live_chunks(kept.values())
        gone = [
            item.name for item in self.blobs.listing(Kind.CHUNK) if item.name not in keep and item.modified < cutoff
        ]
        self.blobs.delete(Kind.CHUNK, gone)
        return len(gone)

    def close(self) -> None:
        self.blobs.close()
