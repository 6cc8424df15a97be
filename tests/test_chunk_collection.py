"""Chunk collection (engine/store/chunk_collection.py on SQLite, the full scan on PostgreSQL) keeps
exactly the chunks that the kept snapshots' manifests name: none still named is ever collected, none
unnamed is left after a collection. Random snapshots of two processes over a small set of chunks: chunks
shared between processes and slots, chunks that come back after their manifests went, snapshots
replaced at the same slot and dropped as damaged, a store reopened in between, manifests whose names
the collection parses and ones it takes from this process's own (manifest_names.names_in)."""

from __future__ import annotations

import hashlib
import random

from aonode.engine.store import Store, open_store
from aonode.engine.store.rows import KEEP_SNAPSHOTS
from aonode.engine.wasm.chunk_codec import ZERO_HASH
from aonode.engine.wasm.chunked import CHUNK, Manifest
from aonode.engine.wasm.manifest_names import RECENT

NAMES = [hashlib.sha256(bytes([n])).digest() for n in range(40)]


def _manifest(rng: random.Random) -> Manifest:
    hashes = tuple(rng.choice([*NAMES, ZERO_HASH]) for _ in range(6))
    bases = tuple(rng.sample(NAMES, rng.choice([0, 0, 1])))
    return Manifest(len(hashes) * CHUNK, b"{}", hashes, bases)


def _named(manifests: list[Manifest]) -> set[str]:
    return set().union(*(m.stored_hashes() for m in manifests))


def test_a_collection_keeps_exactly_the_chunks_kept_manifests_name(store_spec: str) -> None:
    rng = random.Random(13)
    store: Store = open_store(store_spec)
    kept: dict[str, dict[int, Manifest]] = {"p": {}, "q": {}}  # what each process's snapshot rows name
    every = sorted(n.hex() for n in NAMES)
    try:
        for step in range(120):
            pid = rng.choice(["p", "q"])
            slots = kept[pid]
            slot = max(slots, default=-1) + rng.choice([1, 1, 1, 0])  # 0: the same slot stored again
            manifest = _manifest(rng)
            chunks = {h: b"body " + bytes.fromhex(h) for h in manifest.stored_hashes()}
            if rng.random() < 0.5:  # made by this process: a collection takes its names from names_in
                RECENT.remember(manifest.name, frozenset((*manifest.hashes, *manifest.bases)))
            store.put_snapshot(pid, slot, manifest.name, manifest.to_bytes(), chunks)
            slots[slot] = manifest
            for old in sorted(slots)[:-KEEP_SNAPSHOTS]:
                del slots[old]
            if rng.random() < 0.05:  # a snapshot found damaged on restore
                gone = rng.choice(sorted(slots))
                store.drop_snapshot(pid, gone)
                del slots[gone]
            if step % 40 == 39:  # a node restart: a new store object over the same data
                store.close()
                store = open_store(store_spec)
            if rng.random() < 0.3:
                store.collect_chunks()
                found = store.get_chunks(every)
                assert set(found) == _named([*kept["p"].values(), *kept["q"].values()]), step
                assert all(body == b"body " + bytes.fromhex(h) for h, body in found.items())
    finally:
        store.close()


def _own_manifest(label: str) -> Manifest:
    """A manifest of chunks no other names, remembered as made by this process (names_in finds it)."""
    hashes = tuple(hashlib.sha256(f"{label}/{i}".encode()).digest() for i in range(4))
    manifest = Manifest(len(hashes) * CHUNK, b"{}", hashes, ())
    RECENT.remember(manifest.name, frozenset(hashes))
    return manifest


def test_the_names_a_collection_keeps_stay_bounded_when_this_process_made_the_manifests(tmp_path) -> None:
    """Manifests whose names come from names_in are kept under KEPT_MANIFESTS like parsed ones (they
    were added past the bound: one entry for each such manifest a collection looked at)."""
    from aonode.engine.store.chunk_collection import KEPT_MANIFESTS

    store = open_store(tmp_path / "store")
    try:
        store.collect_chunks()  # the first collection's full scan, behind us
        for n in range(KEPT_MANIFESTS * 2):
            for label in (f"{n}a", f"{n}b"):  # the second replaces the first: its chunks are candidates
                manifest = _own_manifest(label)
                chunks = {h: b"body " + bytes.fromhex(h) for h in manifest.stored_hashes()}
                store.put_snapshot(f"p{n}", 0, manifest.name, manifest.to_bytes(), chunks)
            store.collect_chunks()  # looks at every kept manifest: none names the candidates
            assert len(store._collector._named) <= KEPT_MANIFESTS, n  # type: ignore[attr-defined]
    finally:
        store.close()
