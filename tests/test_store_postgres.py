"""What only PostgresStore does, against a throwaway PostgreSQL: migrations, refusing a newer schema,
nodes starting at once, a clear error when the server is not there."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psycopg
import pytest

from aonode.engine.errors import AONodeError, Busy
from aonode.engine.store.pg_schema import MIGRATIONS, SchemaTooNew, migrate
from aonode.engine.store.postgres import PostgresStore
from tests.helpers.ports import reserved_port
from tests.helpers.threads import Threads


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM aonode_schema ORDER BY version")]


def test_migrations_apply_once_when_nodes_start_together(pg_dsn: str):
    stores = Threads(lambda _n: PostgresStore(pg_dsn, pool_max=2), 4, "start").start().join(120)
    assert versions(pg_dsn) == list(range(1, len(MIGRATIONS) + 1))
    assert {s.schema_version for s in stores} == {len(MIGRATIONS)}
    for s in stores:
        s.close()
    PostgresStore(pg_dsn).close()  # a restart on a current schema changes nothing
    assert versions(pg_dsn) == list(range(1, len(MIGRATIONS) + 1))


def test_a_newer_schema_is_refused(pg_dsn: str):
    PostgresStore(pg_dsn).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO aonode_schema (version) VALUES (%s)", (len(MIGRATIONS) + 5,))
    with pytest.raises(SchemaTooNew, match=f"version {len(MIGRATIONS) + 5}, newer than this aonode"):
        PostgresStore(pg_dsn)


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with reserved_port() as port:  # bound here, never listening: a connection there is refused
        with pytest.raises(AONodeError, match="cannot reach PostgreSQL") as caught:
            PostgresStore(f"postgresql://u:s3cret@127.0.0.1:{port}/db", connect_timeout=2)
    assert "s3cret" not in str(caught.value) and "u:***@" in str(caught.value)


def test_dropped_connections_are_replaced(pg_dsn: str):
    store = PostgresStore(pg_dsn, pool_max=2)
    try:
        assert store.list_processes() == []
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # as a database restart would
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert store.list_processes() == []  # the pool checks a connection before lending it
    finally:
        store.close()


def test_no_connection_in_time_is_busy_not_a_crash(pg_dsn: str):
    store = PostgresStore(pg_dsn, pool_max=1, connect_timeout=1)
    try:
        with store.pool.connection():  # the only connection, taken
            with pytest.raises(Busy, match="database is unavailable"):
                store.list_processes()
        assert store.list_processes() == []
    finally:
        store.close()


def test_an_older_schema_is_migrated_forward_with_its_rows_kept(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert migrate(conn, MIGRATIONS[:1]) == 1  # as an aonode that knew only version 1 left it
        conn.execute("INSERT INTO processes (pid, definition) VALUES ('p', '\\x00')")
    store = PostgresStore(pg_dsn)
    try:
        assert store.schema_version == len(MIGRATIONS) and versions(pg_dsn) == list(range(1, len(MIGRATIONS) + 1))
        assert store.list_processes() == ["p"]
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM leases").fetchone() == (0,)  # version 2's table
    finally:
        store.close()


def test_snapshots_are_cached_per_node_and_the_database_stays_the_source(pg_dsn: str, tmp_path: Path):
    here = PostgresStore(pg_dsn, cache_dir=tmp_path / "here")
    there = PostgresStore(pg_dsn, cache_dir=tmp_path / "there")
    try:
        blobs = {slot: os.urandom(5000) for slot in (3, 8)}
        shas = {slot: hashlib.sha256(b).hexdigest() for slot, b in blobs.items()}
        here.put_snapshot("p", 3, shas[3], blobs[3])
        assert [f.name for f in (tmp_path / "here").iterdir()] == [f"p.3.{shas[3]}"]
        assert there.latest_snapshot("p") == (3, shas[3], blobs[3])  # from the database, then cached
        here.put_snapshot("p", 8, shas[8], blobs[8])
        assert [f.name for f in (tmp_path / "here").iterdir()] == [f"p.8.{shas[8]}"]  # newest only
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("DELETE FROM snapshot_chunks")  # only a cache can answer now
        assert here.latest_snapshot("p") == (8, shas[8], blobs[8])
        assert there.latest_snapshot("p", 5) == (3, shas[3], blobs[3])
        with pytest.raises(AONodeError, match="damaged"):
            there.latest_snapshot("p")  # slot 8 was never in its cache: the database is the source
    finally:
        here.close()
        there.close()


def test_two_nodes_grouping_schedules_of_several_processes_never_deadlock_or_fork(pg_dsn: str):
    """Two stores on one database (two nodes), each with 6 threads appending to 4 processes, one
    node in the order p0..p3 and the other p3..p0: the grouped commits (pg_sequence.py) lock rows
    in process order, so none waits on the other in a cycle; every chain is whole and verifies."""
    from aonode.engine.devices.scheduler import chain_link, verify_chain
    from aonode.engine.message import Message
    from aonode.engine.store.base import Assignment, ScheduleView

    nodes = [PostgresStore(pg_dsn, pool_max=4), PostgresStore(pg_dsn, pool_max=4)]
    pids = [f"p{i}" for i in range(4)]

    def append(store: PostgresStore, pid: str, data: str) -> None:
        msg = Message.create(owner="o" * 43, data=data)

        def plan(view: ScheduleView) -> tuple[list[Assignment], None]:
            last = view.last()
            a = Assignment(process=pid, slot=0 if last is None else last.slot + 1, message_id=msg.id,
                           timestamp=0, block_height=0, block_hash=None, epoch=0,
                           hash_chain=chain_link(None if last is None else last.hash_chain, msg.id), message=msg)
            return [a], None

        store.sequence(pid, plan)

    def writer(n: int) -> None:
        store, order = nodes[n % 2], pids if n % 2 == 0 else pids[::-1]
        for round_ in range(10):
            for pid in order:
                append(store, pid, f"{n}:{round_}:{pid}")

    try:
        Threads(writer, 12, "writer").start().join(300)
        for pid in pids:
            schedule = nodes[0].assignments(pid)
            assert [a.slot for a in schedule] == list(range(12 * 10))
            assert verify_chain(schedule)
    finally:
        for store in nodes:
            store.close()
