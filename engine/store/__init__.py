"""aonode.engine.store: the only package that knows where bytes live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from aonode.engine.errors import StartupRefused
from aonode.engine.store.base import Assignment, Store
from aonode.engine.store.blobs import BlobSnapshots
from aonode.engine.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from aonode.engine.store.postgres import PostgresStore

__all__ = ["Assignment", "SQLiteStore", "Store", "as_postgres", "claim_scheduler", "is_postgres_url", "open_store"]


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def open_store(spec: str | Path, cache_dir: Path | None = None, snapshots: str | None = None) -> Store:
    """A `postgresql://` URL opens a PostgresStore (shared by many nodes; `cache_dir` keeps this
    node's copies of snapshots); anything else is the directory of the embedded SQLite store.
    `snapshots`: an `s3://bucket/prefix` for the snapshots' bytes (engine/store/blobs.py); default
    the store's own database."""
    blobs = _snapshot_blobs(snapshots) if snapshots else None
    if isinstance(spec, str) and is_postgres_url(spec):
        from aonode.engine.store.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(spec, cache_dir=cache_dir, blobs=blobs)
    return SQLiteStore(spec, blobs=blobs)


def claim_scheduler(store: Store, address: str) -> None:
    """Nodes sharing a PostgreSQL store sign as one scheduler and keep snapshots in one place: the first
    one's are recorded and a node with another wallet or place is refused (engine/store/pg_identity.py).
    One SQLite store, one node."""
    shared = as_postgres(store)
    if shared is not None:
        from aonode.engine.store.pg_identity import claim_identity  # psycopg only when asked for

        claim_identity(shared.pool, address, shared.blobs.blobs.where if shared.blobs else None)


def as_postgres(store: Store) -> PostgresStore | None:
    """`store` when it is a PostgresStore, else None, without importing psycopg (~0.2 s of a start)
    for any other store: no PostgresStore exists before its module is imported."""
    module = sys.modules.get("aonode.engine.store.postgres")
    if module is not None and isinstance(store, module.PostgresStore):
        return cast("PostgresStore", store)
    return None


def _snapshot_blobs(url: str) -> BlobSnapshots:
    """`s3://bucket/prefix`; endpoint and credentials as the AWS tools read them (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, ...)."""
    try:
        from aonode.engine.store.s3_blobs import S3Blobs  # boto3 only when asked for
    except ImportError as err:
        raise StartupRefused(f"snapshots in a bucket need boto3: pip install 'aonode[s3]' ({err})") from err
    return BlobSnapshots(S3Blobs.open(url))
