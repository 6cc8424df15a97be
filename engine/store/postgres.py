"""PostgresStore: the Store protocol on PostgreSQL, so several nodes can share one durable state.

Why PostgreSQL: it is the database operators already run, back up and replicate, and it gives the
two things scale-out needs: row locks (one sequencer per process across all nodes) and commits
every node sees. Snapshots are stored in it as chunked bytea, so any node can resume any process.

Every write commits before the call returns; assignments commit with `synchronous_commit=on`
(survive a server crash), results and caches with `off` (recomputable from the schedule).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cbor2
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

import aonode.engine.store.cache_log as cache_log
from aonode.engine.errors import AONodeError, Busy
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment, Plan, T
from aonode.engine.store.blobs import BlobSnapshots
from aonode.engine.store.pg_schema import migrate
from aonode.engine.store.pg_sequence import Sequencer
from aonode.engine.store.result_rows import Encoded, stored
from aonode.engine.store.rows import (
    ASSIGNMENT_COLUMNS,
    GC_EVERY,
    KEEP_SNAPSHOTS,
    SCHEDULED_MESSAGE,
    check_sha256,
    live_chunks,
    range_clause,
    row_to_assignment,
)
from aonode.engine.store.snapshot_cache import NewestSnapshots


def _pg_range(frm: int | None, to: int | None) -> tuple[str, list[int]]:
    return range_clause(frm, to, "%s")


CHUNK = 4 << 20  # snapshot bytes per row: well under bytea's 1 GB and kind to memory on both ends
POOL_MAX = 16
CONNECT_TIMEOUT = 30.0


def _since_full(conn: psycopg.Connection, pid: str) -> cache_log.SinceFull:
    full = conn.execute(
        "SELECT slot, octet_length(body) FROM caches WHERE process = %s ORDER BY slot DESC LIMIT 1", (pid,)
    ).fetchone()
    after = -1 if full is None else full[0]
    row = conn.execute(
        "SELECT COALESCE(SUM(octet_length(body)), 0), COUNT(*) FROM cache_changes WHERE process = %s AND slot > %s",
        (pid, after),
    ).fetchone()
    assert row is not None
    return cache_log.SinceFull(0 if full is None else full[1], int(row[0]), int(row[1]))


def _put_changes(conn: psycopg.Connection, pid: str, cache: cache_log.CacheChanges) -> None:
    planned = cache_log.plan(_since_full(conn, pid), cache)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO cache_changes VALUES (%s, %s, %s) ON CONFLICT (process, slot) "
            "DO UPDATE SET body = excluded.body",
            [(pid, slot, delta) for slot, delta in planned.changes],
        )
    if planned.full is not None:
        conn.execute(
            "INSERT INTO caches VALUES (%s, %s, %s) ON CONFLICT (process, slot) DO UPDATE SET body = excluded.body",
            (pid, *planned.full),
        )


class PostgresStore:
    """Thread safe: every call borrows a connection from a pool (autocommit; explicit transactions
    where several statements must land together)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_max: int = POOL_MAX,
        connect_timeout: float = CONNECT_TIMEOUT,
        cache_dir: Path | None = None,
        blobs: BlobSnapshots | None = None,
    ) -> None:
        self.dsn = dsn
        self.blobs = blobs  # snapshot bytes in a bucket (the index stays here); None: in the database
        self.newest = NewestSnapshots(cache_dir)  # this node's copy of each process's newest snapshot
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_max,
            open=False,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=connect_timeout,
            name="aonode-store",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except (psycopg.Error, PoolTimeout) as err:
            self.pool.close()
            raise AONodeError(f"cannot reach PostgreSQL at {_redacted(dsn)}: {err}") from err
        with self.pool.connection() as conn:
            self.schema_version = migrate(conn)
        self._sequencer = Sequencer(self._connection, "aonode-commit-pg")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the database being away (no free connection in time, a dropped
        connection) is Busy (HTTP 503), so the node keeps serving what does not need it."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as err:
            raise Busy(f"the database is unavailable ({type(err).__name__}); retry shortly") from err

    def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        with self._connection() as conn:
            return conn.execute(sql, args).fetchone()  # type: ignore[arg-type]

    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]

    def close(self) -> None:
        self._sequencer.close()
        self.pool.close()
        if self.blobs is not None:
            self.blobs.close()

    # -- processes and messages --------------------------------------------------------------

    def put_process(self, pid: str, definition: Message) -> None:
        body = definition.to_cbor()
        with self._connection() as conn, conn.transaction():
            conn.execute("INSERT INTO processes (pid, definition) VALUES (%s, %s) ON CONFLICT DO NOTHING", (pid, body))
            conn.execute("INSERT INTO messages VALUES (%s, %s) ON CONFLICT DO NOTHING", (definition.id, body))

    def get_process(self, pid: str) -> Message | None:
        row = self._one("SELECT definition FROM processes WHERE pid = %s", (pid,))
        return Message.from_cbor(bytes(row[0]), f"definition of process {pid}") if row else None

    def list_processes(self) -> list[str]:
        return [r[0] for r in self._all("SELECT pid FROM processes ORDER BY seq", ())]

    def put_message(self, msg: Message) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO messages VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (msg.id, msg.to_cbor()),
            )

    def get_message(self, mid: str) -> Message | None:
        row = self._one("SELECT body FROM messages WHERE id = %s", (mid,))
        row = row or self._one(SCHEDULED_MESSAGE.format(mark="%s"), (mid, mid))
        return Message.from_cbor(bytes(row[0]), f"message {mid}") if row else None

    # -- assignments -------------------------------------------------------------------------

    def append_assignment(self, a: Assignment) -> None:
        self.append_assignments([a])

    def append_assignments(self, batch: Sequence[Assignment]) -> None:
        """Several assignments in one transaction: all of them are stored or none."""
        if batch:
            self.sequence(batch[0].process, lambda view: (batch, None))

    def sequence(self, pid: str, plan: Plan[T]) -> T:
        """Lock the process's sequencer row (created on first use), let `plan` read the schedule
        and say what to append, insert it, commit (plans arriving together share the commit:
        pg_sequence.py). Nodes scheduling on one process queue on that row, so each sees the
        previous one's commit: no gap, no duplicate, no fork."""
        return self._sequencer.sequence(pid, plan)

    def sequence_later(self, pid: str, plan: Plan[T], size: int = 1) -> Future[T]:
        return self._sequencer.sequence_later(pid, plan, size)

    def get_assignment(self, pid: str, slot: int) -> Assignment | None:
        row = self._one(f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s AND slot = %s", (pid, slot))
        return row_to_assignment(row) if row else None

    def assignment_for_message(self, pid: str, mid: str) -> Assignment | None:
        row = self._one(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s AND message_id = %s", (pid, mid)
        )
        return row_to_assignment(row) if row else None

    def assignments(self, pid: str, frm: int = 0, to: int | None = None, limit: int | None = None) -> list[Assignment]:
        where, args = _pg_range(frm, to)
        rows = self._all(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s{where} ORDER BY slot LIMIT %s",
            [pid, *args, limit],
        )
        return [row_to_assignment(r) for r in rows]

    def last_assignment(self, pid: str) -> Assignment | None:
        row = self._one(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s ORDER BY slot DESC LIMIT 1", (pid,)
        )
        return row_to_assignment(row) if row else None

    # -- results and caches ------------------------------------------------------------------

    def _put_recomputable(self, sql: str, args: Sequence[Any]) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(sql, args)  # type: ignore[arg-type]

    def put_result(self, pid: str, slot: int, message_id: str, result: dict) -> None:
        self.put_results(pid, [(slot, message_id, result)])

    def put_results(
        self, pid: str, rows: Sequence[tuple[int, str, dict | Encoded]], cache: cache_log.CacheChanges | None = None
    ) -> None:
        """Several slots' results, and the cache changes they made, in one transaction (one commit
        for a computed batch)."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO results VALUES (%s, %s, %s, %s) ON CONFLICT (process, slot) DO UPDATE "
                    "SET message_id = excluded.message_id, body = excluded.body",
                    [(pid, slot, mid, stored(result)) for slot, mid, result in rows],
                )
            if cache is not None and cache.slots:
                _put_changes(conn, pid, cache)

    def get_result(self, pid: str, slot: int) -> dict | None:
        row = self._one("SELECT body FROM results WHERE process = %s AND slot = %s", (pid, slot))
        return cbor2.loads(row[0]) if row else None

    def get_result_by_message(self, pid: str, mid: str) -> tuple[int, dict] | None:
        row = self._one(
            "SELECT slot, body FROM results WHERE process = %s AND message_id = %s ORDER BY slot LIMIT 1", (pid, mid)
        )
        return (row[0], cbor2.loads(row[1])) if row else None

    def results(
        self,
        pid: str,
        frm: int | None = None,
        to: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[int, dict]]:
        where, args = _pg_range(frm, to)
        order = "DESC" if descending else "ASC"
        rows = self._all(
            f"SELECT slot, body FROM results WHERE process = %s{where} ORDER BY slot {order} LIMIT %s",
            [pid, *args, limit],
        )
        return [(slot, cbor2.loads(body)) for slot, body in rows]

    def last_result_slot(self, pid: str) -> int | None:
        row = self._one("SELECT max(slot) FROM results WHERE process = %s", (pid,))
        return row[0] if row else None

    def put_cache(self, pid: str, slot: int, cache: dict, changes: list[dict] | None = None) -> None:
        """As SQLiteStore.put_cache: only the changes, unless a full copy is due (cache_log.py)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            if changes is not None:
                _put_changes(conn, pid, cache_log.CacheChanges([(slot, changes)], cache))
            else:
                conn.execute(
                    "INSERT INTO caches VALUES (%s, %s, %s) ON CONFLICT (process, slot) DO UPDATE "
                    "SET body = excluded.body",
                    (pid, slot, cbor2.dumps(cache)),
                )

    def get_cache(self, pid: str, max_slot: int | None = None) -> tuple[int, dict] | None:
        where, args = _pg_range(None, max_slot)
        full = self._one(
            f"SELECT slot, body FROM caches WHERE process = %s{where} ORDER BY slot DESC LIMIT 1", [pid, *args]
        )
        where, args = _pg_range(None if full is None else full[0] + 1, max_slot)
        changes = self._all(
            f"SELECT slot, body FROM cache_changes WHERE process = %s{where} ORDER BY slot", [pid, *args]
        )
        return cache_log.replay(
            None if full is None else (full[0], bytes(full[1])), ((slot, bytes(body)) for slot, body in changes)
        )

    # -- snapshots ---------------------------------------------------------------------------

    def put_snapshot(
        self, pid: str, slot: int, memory_sha256: str, blob: bytes, chunks: Mapping[str, bytes] | None = None
    ) -> None:
        """The index row and all its bytes in one transaction: a reader sees all of it or none. A
        chunked snapshot (`chunks`: the ones it adds) keeps only the newest KEEP_SNAPSHOTS."""
        check_sha256(memory_sha256)
        pieces = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
        if self.blobs is not None:  # bytes to the bucket first; no pieces here marks them as there
            self.blobs.put(memory_sha256, blob, chunks)
            pieces = []
        with self._connection() as conn, conn.transaction():
            if chunks and self.blobs is None:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO memory_chunks VALUES (%s, %s) ON CONFLICT DO NOTHING", list(chunks.items())
                    )
            conn.execute("DELETE FROM snapshots WHERE process = %s AND slot = %s", (pid, slot))
            conn.execute(
                "INSERT INTO snapshots VALUES (%s, %s, %s, %s, %s)", (pid, slot, memory_sha256, len(blob), len(pieces))
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO snapshot_chunks VALUES (%s, %s, %s, %s)",
                    [(pid, slot, n, piece) for n, piece in enumerate(pieces)],
                )
            if chunks is not None:
                conn.execute(
                    "DELETE FROM snapshots WHERE process = %s AND slot NOT IN (SELECT slot FROM "
                    "snapshots WHERE process = %s ORDER BY slot DESC LIMIT %s)",
                    (pid, pid, KEEP_SNAPSHOTS),
                )
        self.newest.keep(pid, slot, memory_sha256, blob)
        if chunks is not None:
            self._puts = getattr(self, "_puts", 0) + 1
            if self._puts % GC_EVERY == 0:
                self.collect_chunks()

    def collect_chunks(self) -> int:
        """Drop chunks no stored manifest names; writers of chunks wait meanwhile (table lock)."""
        if self.blobs is not None:
            return self.blobs.collect({sha for (sha,) in self._all("SELECT sha256 FROM snapshots", ())})
        with self._connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE memory_chunks IN SHARE ROW EXCLUSIVE MODE")
            blobs: dict[tuple[str, int], list[bytes]] = {}
            for process, slot, piece in conn.execute(
                "SELECT process, slot, bytes FROM snapshot_chunks ORDER BY process, slot, n"
            ):
                blobs.setdefault((process, slot), []).append(bytes(piece))
            keep = live_chunks(b"".join(pieces) for pieces in blobs.values())
            gone = [h for (h,) in conn.execute("SELECT hash FROM memory_chunks") if h not in keep]
            if gone:
                conn.execute("DELETE FROM memory_chunks WHERE hash = ANY(%s)", (gone,))
            return len(gone)

    def get_chunks(self, hashes: Iterable[str]) -> dict[str, bytes]:
        if self.blobs is not None:
            return self.blobs.chunks(hashes)
        rows = self._all("SELECT hash, body FROM memory_chunks WHERE hash = ANY(%s)", (list(hashes),))
        return {h: bytes(b) for h, b in rows}

    def drop_snapshot(self, pid: str, slot: int) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM snapshots WHERE process = %s AND slot = %s", (pid, slot))

    def latest_snapshot(self, pid: str, max_slot: int | None = None) -> tuple[int, str, bytes] | None:
        """Newest snapshot at or before `max_slot` whose bytes are there: from this node's cache when
        it holds that one, else from the database or the bucket (and then kept in the cache)."""
        where, args = _pg_range(None, max_slot)
        for slot, sha, size, pieces in self._all(
            f"SELECT slot, sha256, size, chunks FROM snapshots WHERE process = %s{where} ORDER BY slot DESC LIMIT %s",
            [pid, *args, KEEP_SNAPSHOTS],
        ):
            cached = self.newest.read(pid, slot, sha, size)
            if cached is not None:
                return slot, sha, cached
            blob = self._snapshot_bytes(pid, slot, sha, size, pieces)
            if blob is not None:
                self.newest.keep(pid, slot, sha, blob)
                return slot, sha, blob
        return None

    def _snapshot_bytes(self, pid: str, slot: int, sha: str, size: int, pieces: int) -> bytes | None:
        if pieces == 0 and self.blobs is not None:
            return self.blobs.manifest(sha)  # None when missing: an older snapshot is tried (checked on restore)
        rows = self._all(
            "SELECT c.bytes FROM snapshot_chunks c JOIN snapshots s USING (process, slot) "
            "WHERE s.process = %s AND s.slot = %s AND s.sha256 = %s ORDER BY c.n",
            (pid, slot, sha),
        )
        blob = b"".join(bytes(r[0]) for r in rows)
        if len(blob) != size:
            raise AONodeError(
                f"snapshot of {pid} at slot {slot} is damaged or was replaced while "
                f"read ({len(blob)} bytes, {size} expected); retry"
            )
        return blob


def _redacted(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    head, sep, tail = dsn.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
