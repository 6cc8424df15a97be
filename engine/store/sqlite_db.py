"""The SQLite file under a data dir: its schema and one connection per thread.

Why its own module: connections (WAL, one per thread, closed when their thread ends) and
transactions (`durable` fsyncs before the commit returns) are one job; what the rows mean is
SQLiteStore's (engine/store/sqlite.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aonode.engine.errors import AONodeError, SchemaTooNew
from aonode.engine.store.group_commit import SyncNotRun

DB_NAME = "aonode.sqlite3"
SNAPSHOT_DIR = "snapshots"
# PRAGMA user_version. 0: a data dir from before versions. 2: a scheduled message's body only in its
# assignment row (rows.SCHEDULED_MESSAGE), which an aonode from before would not find by id. No such
# aonode reads a version, but each runs `CREATE INDEX IF NOT EXISTS results_by_message` at open, which
# fails on a view of that name: the fence that stops it there (this one's index has another name).
SCHEMA_VERSION = 2
_FENCE = (
    "DROP INDEX IF EXISTS results_by_message",
    "CREATE VIEW IF NOT EXISTS results_by_message AS SELECT 'this data dir was written by a newer aonode "
    "(SQLite schema 2: scheduled messages only in assignments): upgrade aonode to open it' AS why",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processes (
    pid TEXT PRIMARY KEY, definition BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    process TEXT NOT NULL, slot INTEGER NOT NULL, message_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL, block_height INTEGER NOT NULL, block_hash TEXT,
    epoch INTEGER NOT NULL, hash_chain TEXT NOT NULL, message BLOB NOT NULL,
    PRIMARY KEY (process, slot), UNIQUE (process, message_id));
CREATE TABLE IF NOT EXISTS results (
    process TEXT NOT NULL, slot INTEGER NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (process, slot));
CREATE INDEX IF NOT EXISTS results_by_message_id ON results (process, message_id);
CREATE TABLE IF NOT EXISTS caches (
    process TEXT NOT NULL, slot INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (process, slot));
CREATE TABLE IF NOT EXISTS cache_changes (
    process TEXT NOT NULL, slot INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (process, slot));
CREATE TABLE IF NOT EXISTS snapshots (
    process TEXT NOT NULL, slot INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (process, slot));
CREATE TABLE IF NOT EXISTS manifests (
    name TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    hash TEXT PRIMARY KEY, body BLOB NOT NULL);
"""


class SQLiteDatabase:
    """Thread safe: each thread gets its own connection (WAL lets readers run beside the writer);
    SQLite serializes the writers."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / DB_NAME
        self._local = threading.local()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()
        self._closed = False
        version = self._checked_version()  # before anything is written
        self._conn().executescript(_SCHEMA)
        if version < SCHEMA_VERSION:
            self._upgrade()

    def _checked_version(self) -> int:
        found: int = self._conn().execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            self.close_connections()
            raise SchemaTooNew(
                f"the data dir {self.data_dir} has SQLite schema version {found}, newer than this aonode knows "
                f"({SCHEMA_VERSION}): upgrade aonode, or use another --data-dir"
            )
        return found

    def _upgrade(self) -> None:
        """An older data dir to this version: its index renamed behind the fence (once, in one transaction)."""
        with self._tx(durable=True) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _FENCE:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._conns_lock:
            if self._closed:
                raise AONodeError("store is closed")
            # Threads come and go (server worker pools); close what finished threads left behind.
            for thread in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(thread).close()
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Debian's SQLite is built with SECURE_DELETE: every collected snapshot chunk's pages were
            # zeroed (written once more, in the WAL and again at the checkpoint). Nothing here is secret.
            conn.execute("PRAGMA secure_delete=0")
            self._conns[threading.current_thread()] = conn
        self._local.conn, self._local.full = conn, False  # synchronous=NORMAL, as just set (_tx)
        return conn

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; `durable` fsyncs the WAL before the commit returns. A connection's
        synchronous setting is changed only when the next transaction wants the other one: the
        group-commit writer's connection stays FULL (two statements less per commit; each one also lets
        the node's other threads take the GIL from the committing one)."""
        conn = self._conn()
        if durable != self._local.full:
            conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._local.full = durable
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def in_wal_mode(self) -> bool:
        return str(self._conn().execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"

    def sync_wal(self) -> None:
        """fdatasync of the WAL file: every transaction committed before this call (with synchronous=NORMAL,
        which does not sync at commit) is durable when it returns. The file is opened each time: one that
        was replaced since cannot be the one synced. (WAL frames carry checksums; a checkpoint syncs the WAL
        before copying it and the database after, so a WAL reused after one holds nothing not synced.)"""
        try:
            fd = os.open(f"{self.db_path}-wal", os.O_RDONLY)
        except OSError as err:  # nothing asked of the disk: a later sync may still make them durable
            raise SyncNotRun(f"the WAL file did not open for its sync: {err}") from err
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _one(self, sql: str, args: tuple | list) -> tuple | None:
        return self._conn().execute(sql, args).fetchone()

    def close_connections(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.close()
        self._local = threading.local()
