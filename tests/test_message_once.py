"""A scheduled message's body is stored once, in its assignment row, on both stores (it was also copied
into `messages`: half the bytes each commit wrote), and is still found by id; rows an older aonode wrote
(the body in both tables) read as before and the schedule goes on after them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from aonode.engine.message import Message
from aonode.engine.store import is_postgres_url, open_store
from aonode.engine.store.pg_schema import MIGRATIONS, migrate
from aonode.engine.store.rows import ASSIGNMENT_COLUMNS, assignment_values
from aonode.engine.store.sqlite_db import DB_NAME
from tests.helpers.store_rows import OWNER, assignment, msg


def sql(spec: str, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """`statement` (with `?` marks) run on the store's database itself, committed; its rows."""
    if is_postgres_url(spec):
        with psycopg.connect(spec) as conn:
            cur = conn.execute(statement.replace("?", "%s"), args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
    conn = sqlite3.connect(Path(spec) / DB_NAME, isolation_level=None)
    try:
        return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


def process() -> Message:
    return Message.create(owner=OWNER, tags=[("Type", "Process")], data="once")


def test_a_scheduled_message_is_stored_once_and_found_by_its_id(store_spec: str) -> None:
    store = open_store(store_spec)
    try:
        proc = process()
        store.append_assignment(assignment(proc.id, 0, proc))
        store.put_process(proc.id, proc)
        store.append_assignments([assignment(proc.id, n, msg(n)) for n in range(1, 4)])
        assert [r[0] for r in sql(store_spec, "SELECT id FROM messages")] == [proc.id]  # the definition only
        assert [store.get_message(msg(n).id) for n in range(1, 4)] == [msg(n) for n in range(1, 4)]
        assert store.get_message(proc.id) == proc and store.get_message(msg(9).id) is None
        assert [a.message for a in store.assignments(proc.id)] == [proc, msg(1), msg(2), msg(3)]
    finally:
        store.close()


def test_rows_an_older_aonode_wrote_read_as_before(store_spec: str) -> None:
    """Slots 0-2 written as before (each body also in `messages`, on PostgreSQL by a schema-5 node), then
    the store opened by this code: every row reads back, and slot 3 is appended after them (stored once)."""
    proc = process()
    if is_postgres_url(store_spec):
        with psycopg.connect(store_spec) as conn:
            assert migrate(conn, MIGRATIONS[:5]) == 5
    else:
        open_store(store_spec).close()  # the tables, as every version made them
    columns = ",".join("?" * len(ASSIGNMENT_COLUMNS.split(",")))
    for n, m in enumerate([proc, msg(1), msg(2)]):
        body = m.to_cbor()
        sql(store_spec, f"INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES ({columns})",
            assignment_values(assignment(proc.id, n, m), body))  # fmt: skip
        sql(store_spec, "INSERT INTO messages VALUES (?, ?)", (m.id, body))
    sql(store_spec, "INSERT INTO processes (pid, definition) VALUES (?, ?)", (proc.id, proc.to_cbor()))

    store = open_store(store_spec)
    try:
        assert [store.get_message(m.id) for m in (proc, msg(1), msg(2))] == [proc, msg(1), msg(2)]
        assert store.last_assignment(proc.id) == assignment(proc.id, 2, msg(2))
        store.append_assignment(assignment(proc.id, 3, msg(3)))
        assert store.assignments(proc.id) == [
            assignment(proc.id, n, m) for n, m in enumerate([proc, *map(msg, (1, 2, 3))])
        ]
        assert store.get_message(msg(3).id) == msg(3)
        assert sorted(r[0] for r in sql(store_spec, "SELECT id FROM messages")) == sorted(
            [proc.id, msg(1).id, msg(2).id]
        )
    finally:
        store.close()


def test_a_spawn_whose_listing_a_crash_cut_off_is_still_found_by_its_id(store_spec: str) -> None:
    """A crash between the spawn's slot 0 (durable) and the process's listing: the spawn message was
    assigned, so it is held (legacy `?assign=` finds it); retrying the spawn then lists it as before."""
    store = open_store(store_spec)
    try:
        proc = process()
        store.append_assignment(assignment(proc.id, 0, proc))  # and then the crash: no put_process
        assert store.list_processes() == []
        assert store.get_message(proc.id) == proc  # failed before: None (only listed processes' rows)
        assert store.get_message(msg(1).id) is None
        store.put_process(proc.id, proc)  # the retried spawn
        assert store.get_message(proc.id) == proc and store.list_processes() == [proc.id]
    finally:
        store.close()
