"""aonode.engine.store: the only package that knows where bytes live."""
from __future__ import annotations

from pathlib import Path

from aonode.engine.store.base import Assignment, Store
from aonode.engine.store.sqlite import SQLiteStore

__all__ = ["Assignment", "SQLiteStore", "Store", "is_postgres_url", "open_store"]


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def open_store(spec: str | Path, cache_dir: Path | None = None) -> Store:
    """A `postgresql://` URL opens a PostgresStore (shared by many nodes; `cache_dir` keeps this
    node's copies of snapshots); anything else is the directory of the embedded SQLite store."""
    if isinstance(spec, str) and is_postgres_url(spec):
        from aonode.engine.store.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(spec, cache_dir=cache_dir)
    return SQLiteStore(spec)
