"""Snapshots in an S3-compatible bucket (engine/store/blobs.py, s3_blobs.py) on both stores, against a
real S3 server on loopback (moto's server mode): the bytes go to the bucket and only the index stays in
the database; collection keeps every chunk a kept snapshot names; a damaged or missing object is never
served as right (refused on restore, or an older snapshot is used)."""
from __future__ import annotations

import hashlib
import os

import pytest

from aonode.engine.devices.wasm64 import loaded
from aonode.engine.errors import StartupRefused
from aonode.engine.store import Store, open_store
from aonode.engine.store.rows import KEEP_SNAPSHOTS
from aonode.engine.wasm.chunked import CHUNK, ZERO_HASH, Manifest, SnapshotDamaged
from tests.helpers.s3bucket import S3Server, bucket, s3_server  # noqa: F401  (fixtures)


def chunk(n: int) -> tuple[bytes, str]:
    raw = bytes([n]) * CHUNK
    return raw, hashlib.sha256(raw).hexdigest()


@pytest.fixture
def store(store_spec: str, bucket: str):
    s = open_store(store_spec, snapshots=f"s3://{bucket}/node-a")
    yield s
    s.close()


def put_chunked(store: Store, slot: int, shared: tuple[bytes, str], first: bool) -> str:
    """A two-chunk snapshot at `slot`: one chunk every snapshot shares, one of its own."""
    own_raw, own = chunk(slot + 1)
    manifest = Manifest(2 * CHUNK, b"{}", (bytes.fromhex(shared[1]), bytes.fromhex(own)))
    added = {own: b"z" + own_raw[:9], **({shared[1]: b"s"} if first else {})}  # stand-ins for zstd
    store.put_snapshot("p", slot, manifest.name, manifest.to_bytes(), added)
    return manifest.name


def test_snapshot_bytes_go_to_the_bucket_and_the_index_to_the_database(store: Store, store_spec: str, bucket: str,
                                                                         s3_server: S3Server):
    whole = os.urandom(3 << 20)
    store.put_snapshot("p", 1, hashlib.sha256(whole).hexdigest(), whole)
    name = put_chunked(store, 2, chunk(200), first=True)
    objects = s3_server.keys(bucket)
    assert objects[f"node-a/snapshots/{name}"] == store.latest_snapshot("p")[2]
    assert objects[f"node-a/snapshots/{hashlib.sha256(whole).hexdigest()}"] == whole
    assert objects[f"node-a/chunks/{chunk(3)[1]}"] == b"z" + chunk(3)[0][:9]
    assert store.latest_snapshot("p", 1) == (1, hashlib.sha256(whole).hexdigest(), whole)
    assert store.get_chunks([chunk(200)[1], chunk(3)[1], "0" * 64]) == {
        chunk(200)[1]: b"s", chunk(3)[1]: b"z" + chunk(3)[0][:9]}
    reopened = open_store(store_spec, snapshots=f"s3://{bucket}/node-a")
    try:
        assert reopened.latest_snapshot("p")[:2] == (2, name)
    finally:
        reopened.close()


def test_collection_keeps_what_kept_snapshots_name(store: Store, bucket: str, s3_server: S3Server):
    shared = chunk(200)
    names = {slot: put_chunked(store, slot, shared, first=slot == 0) for slot in range(KEEP_SNAPSHOTS + 3)}
    assert store.latest_snapshot("p", 2) is None  # only the newest KEEP_SNAPSHOTS stay indexed
    assert store.collect_chunks() == 0  # everything is younger than the grace: a writer may be mid-way
    store.blobs.grace = 0  # type: ignore[attr-defined]
    assert store.collect_chunks() == 3
    kept = {chunk(slot + 1)[1] for slot in range(3, KEEP_SNAPSHOTS + 3)}
    chunks = {key.rsplit("/", 1)[1] for key in s3_server.keys(bucket, "node-a/chunks/")}
    assert chunks == kept | {shared[1]}
    manifests = {key.rsplit("/", 1)[1] for key in s3_server.keys(bucket, "node-a/snapshots/")}
    assert manifests == {names[slot] for slot in range(3, KEEP_SNAPSHOTS + 3)}
    assert store.latest_snapshot("p")[:2] == (KEEP_SNAPSHOTS + 2, names[KEEP_SNAPSHOTS + 2])


def test_a_damaged_or_missing_object_is_never_served_as_right(store: Store, bucket: str, s3_server: S3Server):
    shared = chunk(200)
    names = {slot: put_chunked(store, slot, shared, first=slot == 0) for slot in range(3)}
    # A chunk overwritten in the bucket: the restore checks it against its hash and refuses.
    real = zstd_chunk(7)
    store.put_snapshot("p", 3, *manifest_of(7), {real[1]: real[0]})
    found = store.latest_snapshot("p")
    snapshot = loaded(found[2], found[1], store.get_chunks)
    assert snapshot.raw()[CHUNK:] == bytes([7]) * CHUNK  # right as stored
    s3_server.put(bucket, f"node-a/chunks/{real[1]}", zstd_of(bytes([8]) * CHUNK))
    with pytest.raises(SnapshotDamaged, match="does not match its hash"):
        loaded(found[2], found[1], store.get_chunks).raw()
    # A manifest edited in the bucket: it no longer matches its name.
    s3_server.put(bucket, f"node-a/snapshots/{names[2]}", b"AOCHUNK1" + bytes(60))
    found = store.latest_snapshot("p", 2)
    with pytest.raises(SnapshotDamaged, match="does not match its name"):
        loaded(found[2], found[1], store.get_chunks)
    # A missing chunk: refused; a missing manifest: the next older snapshot is the newest there.
    s3_server.client().delete_object(Bucket=bucket, Key=f"node-a/chunks/{chunk(2)[1]}")
    with pytest.raises(SnapshotDamaged, match="misses"):
        loaded(*reversed(store.latest_snapshot("p", 1)[1:]), store.get_chunks)
    s3_server.client().delete_object(Bucket=bucket, Key=f"node-a/snapshots/{names[2]}")
    assert store.latest_snapshot("p", 2)[:2] == (1, names[1])


def zstd_of(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(raw)


def zstd_chunk(n: int) -> tuple[bytes, str]:
    """A real stored chunk and its name (the sha256 of the body: engine/wasm/chunk_codec.py)."""
    body = zstd_of(chunk(n)[0])
    return body, hashlib.sha256(body).hexdigest()


def manifest_of(n: int) -> tuple[str, bytes]:
    manifest = Manifest(2 * CHUNK, b"{}", (ZERO_HASH, bytes.fromhex(zstd_chunk(n)[1])))  # zeros, then n
    return manifest.name, manifest.to_bytes()


def test_an_unreachable_bucket_refuses_to_start(tmp_path, s3_server: S3Server):
    with pytest.raises(StartupRefused, match="cannot use snapshot bucket s3://no-such-bucket"):
        open_store(tmp_path, snapshots="s3://no-such-bucket/x")
    with pytest.raises(StartupRefused, match="must be s3://bucket"):
        open_store(tmp_path, snapshots="s3:///nobucket")


def test_aonode_serve_with_a_missing_bucket_exits_with_one_line(tmp_path, s3_server: S3Server):
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "aonode.server.cli", "serve", "--data-dir", str(tmp_path),
                              "--port", "0",
                              "--snapshots", "s3://no-such-bucket/x", "--s3-endpoint", s3_server.endpoint],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"aonode: cannot use snapshot bucket s3://no-such-bucket/x ({s3_server.endpoint})")
