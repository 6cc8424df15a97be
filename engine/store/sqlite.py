"""The default store: one SQLite file in WAL mode plus a folder of snapshot files.

Why this shape: SQLite gives unique constraints and crash-safe commits for the schedule (the one
thing that can never be recomputed), while snapshots are large opaque blobs that are cheaper as
files. Assignment commits use `synchronous=FULL` so an acknowledged assignment survives a kill -9
or power loss; results and caches use NORMAL (survives a process crash; recomputable anyway).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

import aonode.engine.store.cache_log as cache_log
from aonode.engine import metrics
from aonode.engine.errors import AONodeError, BadInput
from aonode.engine.files import write_atomic
from aonode.engine.later import settled
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment, Plan, T
from aonode.engine.store.blobs import BlobSnapshots
from aonode.engine.store.chunk_collection import ChunkCollector
from aonode.engine.store.group_commit import group_committer, sync_apart
from aonode.engine.store.result_rows import Encoded, stored
from aonode.engine.store.rows import (
    ASSIGNMENT_COLUMNS,
    GC_EVERY,
    KEEP_SNAPSHOTS,
    SCHEDULED_MESSAGE,
    TIP_COLUMNS,
    already_assigned,
    assignment_values,
    check_sha256,
    in_chunks,
    is_tip,
    range_clause,
    row_to_assignment,
)
from aonode.engine.store.sqlite_db import SNAPSHOT_DIR, SQLiteDatabase

_encode: Callable[[dict], bytes] = cbor2.dumps
_decode: Callable[[bytes], Any] = cbor2.loads


@dataclass(frozen=True)
class _View:
    """Schedule reads inside SQLiteStore.sequence: the same thread, so the same connection and
    transaction."""

    store: SQLiteStore
    pid: str

    def last(self) -> Assignment | None:
        return self.store.last_assignment(self.pid)

    def get(self, slot: int) -> Assignment | None:
        return self.store.get_assignment(self.pid, slot)

    def for_message(self, mid: str) -> Assignment | None:
        return self.store.assignment_for_message(self.pid, mid)

    def for_messages(self, mids: Sequence[str]) -> dict[str, Assignment]:
        found: dict[str, Assignment] = {}
        for part in in_chunks(mids):
            rows = self.store._conn().execute(
                f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = ? AND message_id IN "
                f"({','.join('?' * len(part))})",
                [self.pid, *part],
            )
            found.update((a.message_id, a) for a in map(row_to_assignment, rows))
        return found


class SQLiteStore(SQLiteDatabase):
    """The Store protocol on one SQLite file (engine/store/sqlite_db.py) plus a folder of snapshot files."""

    def __init__(self, data_dir: Path | str, blobs: BlobSnapshots | None = None) -> None:
        super().__init__(data_dir)
        self.blobs = blobs  # snapshot bytes in a bucket (the index stays here); None: here
        self.snapshot_dir = self.data_dir / SNAPSHOT_DIR
        self.snapshot_dir.mkdir(exist_ok=True)
        self._collector = ChunkCollector()  # chunk collection over what dropped manifests named
        # In WAL mode the group's commits fsync apart from them (group_commit.py): synchronous=NORMAL, then sync_wal.
        self._sync_apart = sync_apart() and self.in_wal_mode()
        sync = self.sync_wal if self._sync_apart else None
        self._group = group_committer(self._group_transaction, f"aonode-commit-{self.data_dir.name}", sync)
        # The last assignment appended or read per process: `last_assignment` reads the tip's columns
        # (no message blob) and returns this one when they match, instead of decoding the message
        # again at every schedule. Set only by an append that got through its savepoint, dropped when
        # a transaction fails; the row read each time keeps it right if another writer appended.
        self._tips: dict[str, Assignment] = {}

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self.close_connections()
        if self.blobs is not None:
            self.blobs.close()

    # -- processes and messages --------------------------------------------------------------

    def put_process(self, pid: str, definition: Message) -> None:
        body = definition.to_cbor()
        with self._tx(durable=True) as conn:
            conn.execute("INSERT OR IGNORE INTO processes VALUES (?, ?)", (pid, body))
            conn.execute("INSERT OR IGNORE INTO messages VALUES (?, ?)", (definition.id, body))

    def get_process(self, pid: str) -> Message | None:
        row = self._one("SELECT definition FROM processes WHERE pid = ?", (pid,))
        return Message.from_cbor(row[0], f"definition of process {pid}") if row else None

    def list_processes(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT pid FROM processes ORDER BY rowid")]

    def put_message(self, msg: Message) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO messages VALUES (?, ?)", (msg.id, msg.to_cbor()))

    def get_message(self, mid: str) -> Message | None:
        row = self._one("SELECT body FROM messages WHERE id = ?", (mid,))
        row = row or self._one(SCHEDULED_MESSAGE.format(mark="?"), (mid, mid))
        return Message.from_cbor(row[0], f"message {mid}") if row else None

    # -- assignments -------------------------------------------------------------------------

    def append_assignment(self, a: Assignment) -> None:
        """Durable when this returns; a taken slot or an already assigned message is BadInput."""
        self.append_assignments([a])

    def append_assignments(self, batch: Sequence[Assignment]) -> None:
        """Several assignments in one durable transaction: all of them are stored or none."""
        self.sequence(batch[0].process if batch else "", lambda view: (batch, None))

    def sequence(self, pid: str, plan: Plan[T]) -> T:
        """BEGIN IMMEDIATE takes SQLite's one write lock before `plan` reads, so no other writer
        (thread or process on this file) appends in between. Concurrent calls share one durable
        commit (group_commit.py); each returns only after its assignments are on disk."""
        return self.sequence_later(pid, plan).result()

    def sequence_later(self, pid: str, plan: Plan[T], size: int = 1) -> Future[T]:
        """`sequence` without waiting for the commit (the Future is settled when it is durable)."""
        if self._group is None:  # AONODE_GROUP_COMMIT=0: one fsync per call (to compare)
            return settled(lambda: self._alone(lambda: self._append(pid, plan)))
        if self._group.on_writer():
            raise AONodeError("a schedule plan may not schedule again")
        return self._group.submit_later(lambda: self._append(pid, plan), key=pid, size=size)

    def _append(self, pid: str, plan: Plan[T]) -> T:
        """Inside the group's transaction, on the writer's connection."""
        conn = self._conn()
        batch: Sequence[Assignment] = ()
        try:
            batch, answer = plan(_View(self, pid))
            if batch:  # one statement for the plan's rows, however many (the body only here: rows.py)
                rows = [assignment_values(a, a.message.to_cbor()) for a in batch]
                conn.executemany(f"INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.IntegrityError as err:
            raise BadInput(already_assigned(batch)) from err
        if batch:
            self._tips[pid] = batch[-1]
        return answer

    @contextmanager
    def _appending(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction for appends (durable: fsynced in the commit); when it fails, the kept tips go."""
        try:
            with self._tx(durable) as conn:
                yield conn
        except BaseException:
            self._tips.clear()
            raise

    def _alone(self, run: Callable[[], T]) -> T:
        """`run` alone in one durable transaction (no group commit), counted as the group's are."""
        with self._appending():
            answer = run()
        metrics.schedule_committed()
        return answer

    def _group_transaction(self, steps: Sequence[Callable[[], None]]) -> None:
        with self._appending(durable=not self._sync_apart) as conn:
            if len(steps) == 1:  # no savepoint: its failure rolls back a transaction of nothing else
                return steps[0]()
            for step in steps:
                conn.execute("SAVEPOINT request")
                try:
                    step()
                except Exception:  # noqa: BLE001 - that request's answer; the others go on
                    conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")

    def get_assignment(self, pid: str, slot: int) -> Assignment | None:
        row = self._one(f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = ? AND slot = ?", (pid, slot))
        return row_to_assignment(row) if row else None

    def assignment_for_message(self, pid: str, mid: str) -> Assignment | None:
        row = self._one(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = ? AND message_id = ?", (pid, mid)
        )
        return row_to_assignment(row) if row else None

    def assignments(self, pid: str, frm: int = 0, to: int | None = None, limit: int | None = None) -> list[Assignment]:
        where, args = range_clause(frm, to)
        rows = self._conn().execute(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = ?{where} ORDER BY slot LIMIT ?",
            [pid, *args, -1 if limit is None else limit],
        )
        return [row_to_assignment(r) for r in rows]

    def last_assignment(self, pid: str) -> Assignment | None:
        row = self._one(f"SELECT {TIP_COLUMNS} FROM assignments WHERE process = ? ORDER BY slot DESC LIMIT 1", (pid,))
        if row is None:
            return None
        tip = self._tips.get(pid)
        if tip is not None and is_tip(tip, row):
            return tip
        found = self.get_assignment(pid, row[0])
        if found is not None:
            self._tips[pid] = found
        return found

    # -- results and caches ------------------------------------------------------------------

    def put_result(self, pid: str, slot: int, message_id: str, result: dict) -> None:
        self.put_results(pid, [(slot, message_id, result)])

    def put_results(
        self, pid: str, rows: Sequence[tuple[int, str, dict | Encoded]], cache: cache_log.CacheChanges | None = None
    ) -> None:
        """Several slots' results, and the cache changes they made, in one transaction (one commit
        for a computed batch)."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                [(pid, slot, mid, stored(result)) for slot, mid, result in rows],
            )
            if cache is not None and cache.slots:
                self._put_changes(conn, pid, cache)

    def _put_changes(self, conn: sqlite3.Connection, pid: str, cache: cache_log.CacheChanges) -> None:
        planned = cache_log.plan(self._since_full(conn, pid), cache)
        conn.executemany(
            "INSERT OR REPLACE INTO cache_changes VALUES (?, ?, ?)",
            [(pid, slot, delta) for slot, delta in planned.changes],
        )
        if planned.full is not None:
            conn.execute("INSERT OR REPLACE INTO caches VALUES (?, ?, ?)", (pid, *planned.full))

    def get_result(self, pid: str, slot: int) -> dict | None:
        row = self._one("SELECT body FROM results WHERE process = ? AND slot = ?", (pid, slot))
        return _decode(row[0]) if row else None

    def get_result_by_message(self, pid: str, mid: str) -> tuple[int, dict] | None:
        row = self._one(
            "SELECT slot, body FROM results WHERE process = ? AND message_id = ? ORDER BY slot LIMIT 1", (pid, mid)
        )
        return (row[0], _decode(row[1])) if row else None

    def results(
        self,
        pid: str,
        frm: int | None = None,
        to: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[int, dict]]:
        where, args = range_clause(frm, to)
        order = "DESC" if descending else "ASC"
        rows = self._conn().execute(
            f"SELECT slot, body FROM results WHERE process = ?{where} ORDER BY slot {order} LIMIT ?",
            [pid, *args, -1 if limit is None else limit],
        )
        return [(slot, _decode(body)) for slot, body in rows]

    def last_result_slot(self, pid: str) -> int | None:
        row = self._one("SELECT MAX(slot) FROM results WHERE process = ?", (pid,))
        return row[0] if row else None

    def put_cache(self, pid: str, slot: int, cache: dict, changes: list[dict] | None = None) -> None:
        """The cache after `slot`; with `changes` (the payloads merged at `slot`) only those are
        stored, unless a full copy is due (engine/store/cache_log.py)."""
        with self._tx() as conn:
            if changes is not None:
                self._put_changes(conn, pid, cache_log.CacheChanges([(slot, changes)], cache))
            else:
                conn.execute("INSERT OR REPLACE INTO caches VALUES (?, ?, ?)", (pid, slot, _encode(cache)))

    @staticmethod
    def _since_full(conn: sqlite3.Connection, pid: str) -> cache_log.SinceFull:
        full = conn.execute(
            "SELECT slot, LENGTH(body) FROM caches WHERE process = ? ORDER BY slot DESC LIMIT 1", (pid,)
        ).fetchone()
        after = -1 if full is None else full[0]
        size, count = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM cache_changes WHERE process = ? AND slot > ?",
            (pid, after),
        ).fetchone()
        return cache_log.SinceFull(0 if full is None else full[1], size, count)

    def get_cache(self, pid: str, max_slot: int | None = None) -> tuple[int, dict] | None:
        where, args = range_clause(None, max_slot)
        full = self._one(
            f"SELECT slot, body FROM caches WHERE process = ?{where} ORDER BY slot DESC LIMIT 1", [pid, *args]
        )
        where, args = range_clause(None if full is None else full[0] + 1, max_slot)
        changes = self._conn().execute(
            f"SELECT slot, body FROM cache_changes WHERE process = ?{where} ORDER BY slot", [pid, *args]
        )
        return cache_log.replay(full, changes)

    # -- snapshots ---------------------------------------------------------------------------

    def put_snapshot(
        self, pid: str, slot: int, memory_sha256: str, blob: bytes, chunks: Mapping[str, bytes] | None = None
    ) -> None:
        """A chunked snapshot (`chunks`: the ones it adds, hash hex -> zstd) goes into the database in one
        transaction with its manifest and index row (the newest KEEP_SNAPSHOTS of the process stay); a whole
        blob is written as a file first (atomically, fsynced), so an index row never names a partial file."""
        check_sha256(memory_sha256)
        if self.blobs is not None:
            self.blobs.put(memory_sha256, blob, chunks)
        elif chunks is None:
            write_atomic(self.snapshot_dir / memory_sha256, blob, durable=True)
        with self._tx() as conn:
            if chunks is not None and self.blobs is None:
                conn.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?)", chunks.items())
                conn.execute("INSERT OR IGNORE INTO manifests VALUES (?, ?)", (memory_sha256, blob))
            conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (pid, slot, memory_sha256))
            if chunks is not None:
                conn.execute(
                    "DELETE FROM snapshots WHERE process = ? AND slot NOT IN (SELECT slot FROM "
                    "snapshots WHERE process = ? ORDER BY slot DESC LIMIT ?)",
                    (pid, pid, KEEP_SNAPSHOTS),
                )
        if chunks is not None:
            self._puts = getattr(self, "_puts", 0) + 1
            if self._puts % GC_EVERY == 0:
                self.collect_chunks()

    def collect_chunks(self) -> int:
        """Drop manifests no snapshot row names and chunks no manifest names: how many chunks went."""
        if self.blobs is not None:
            return self.blobs.collect({sha for (sha,) in self._conn().execute("SELECT sha256 FROM snapshots")})
        with self._tx() as conn:
            return self._collector.collect(conn)

    def get_chunks(self, hashes: Iterable[str]) -> dict[str, bytes]:
        """The stored chunks among `hashes` (hash hex -> zstd); missing ones are left out."""
        if self.blobs is not None:
            return self.blobs.chunks(hashes)
        found = dict[str, bytes]()
        for part in in_chunks(list(hashes)):
            rows = self._conn().execute(
                f"SELECT hash, body FROM chunks WHERE hash IN ({','.join('?' * len(part))})", part
            )
            found.update((h, bytes(b)) for h, b in rows)
        return found

    def drop_snapshot(self, pid: str, slot: int) -> None:
        """Forget a damaged snapshot (its manifest and chunks go at the next collection)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM snapshots WHERE process = ? AND slot = ?", (pid, slot))

    def latest_snapshot(self, pid: str, max_slot: int | None = None) -> tuple[int, str, bytes] | None:
        """Newest snapshot at or before `max_slot` whose manifest or file is still present."""
        where, args = range_clause(None, max_slot)
        rows = (
            self._conn()
            .execute(
                f"SELECT s.slot, s.sha256, m.body FROM snapshots s LEFT JOIN manifests m ON m.name = s.sha256 "
                f"WHERE s.process = ?{where} ORDER BY s.slot DESC",
                [pid, *args],
            )
            .fetchall()
        )
        for slot, sha, manifest in rows:
            manifest = manifest if manifest is not None or self.blobs is None else self.blobs.manifest(sha)
            if manifest is not None:  # (missing from the bucket: an older one is tried)
                return slot, sha, bytes(manifest)
            try:
                return slot, sha, (self.snapshot_dir / check_sha256(sha)).read_bytes()
            except FileNotFoundError:
                continue
        return None
