"""Appending to schedules on PostgreSQL: each plan under its process's sequencer row lock, and plans
that arrive together sharing one commit.

Why: an assignment commits with `synchronous_commit=on` (the server flushes its WAL before the commit
returns), and that flush costs more than the rows it covers. As on SQLite (group_commit.py), one
writer thread runs every plan queued while the previous commit ran, each in its own savepoint (a
refused one fails alone), then commits once. A group locks its processes' sequencer rows in process
id order, so two nodes' groups never wait on each other in a cycle; each plan still sees every
commit before its own (the row lock), so nodes sharing a database never fork a chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from aonode.engine import metrics
from aonode.engine.errors import AONodeError, BadInput
from aonode.engine.later import settled
from aonode.engine.store.base import Assignment, Plan, T
from aonode.engine.store.group_commit import group_committer
from aonode.engine.store.rows import ASSIGNMENT_COLUMNS, already_assigned, assignment_values, row_to_assignment

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]


def insert_assignments(conn: psycopg.Connection, batch: Sequence[Assignment]) -> None:
    """A plan's rows, one statement however many, the body only there (as SQLiteStore._append; rows.py)."""
    if not batch:
        return
    rows = [assignment_values(a, a.message.to_cbor()) for a in batch]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)


def committed(block: psycopg.Transaction) -> None:
    """Raise unless `block` committed: psycopg leaves a transaction block on a broken connection
    without committing and without raising, and what ran in it must not be answered as durable."""
    if block.status is not block.Status.COMMITTED:
        raise psycopg.OperationalError("the connection broke before the commit")


@dataclass(frozen=True)
class View:
    """Schedule reads on the connection that holds the process's sequencer row lock."""

    conn: psycopg.Connection
    pid: str

    def _one(self, where: str, args: tuple[Any, ...]) -> Assignment | None:
        row = self.conn.execute(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s {where}", (self.pid, *args)
        ).fetchone()
        return row_to_assignment(row) if row else None

    def last(self) -> Assignment | None:
        return self._one("ORDER BY slot DESC LIMIT 1", ())

    def get(self, slot: int) -> Assignment | None:
        return self._one("AND slot = %s", (slot,))

    def for_message(self, mid: str) -> Assignment | None:
        return self._one("AND message_id = %s", (mid,))

    def for_messages(self, mids: Sequence[str]) -> dict[str, Assignment]:
        rows = self.conn.execute(
            f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE process = %s AND message_id = ANY(%s)",
            (self.pid, list(mids)),
        )
        return {a.message_id: a for a in map(row_to_assignment, rows)}


def run_plan(conn: psycopg.Connection, pid: str, plan: Plan[T]) -> T:
    """Inside an open transaction: lock the process's sequencer row (created on first use), let
    `plan` read the schedule and say what to append, insert it. A taken slot or an already assigned
    message is BadInput."""
    batch: Sequence[Assignment] = ()
    try:
        conn.execute("INSERT INTO sequencers VALUES (%s) ON CONFLICT DO NOTHING", (pid,))
        conn.execute("SELECT 1 FROM sequencers WHERE process = %s FOR UPDATE", (pid,))
        batch, answer = plan(View(conn, pid))
        insert_assignments(conn, batch)
    except psycopg.errors.UniqueViolation as err:
        raise BadInput(already_assigned(batch)) from err
    return answer


class Sequencer:
    """`sequence(pid, plan)` returns once the plan's assignments are committed (AONODE_GROUP_COMMIT=0:
    one transaction per call, to compare)."""

    def __init__(self, connect: Connect, name: str) -> None:
        self._connect = connect
        self._conn: psycopg.Connection | None = None  # the group's, on the writer thread only
        self._group = group_committer(self._transaction, name)

    def sequence(self, pid: str, plan: Plan[T]) -> T:
        return self.sequence_later(pid, plan).result()

    def sequence_later(self, pid: str, plan: Plan[T], size: int = 1) -> Future[T]:
        """`sequence` without waiting for the commit (the Future is settled when it is durable)."""
        if self._group is None:
            return settled(lambda: self._alone(pid, plan))
        if self._group.on_writer():
            raise AONodeError("a schedule plan may not schedule again")
        return self._group.submit_later(lambda: run_plan(self._writer_conn(), pid, plan), key=pid, size=size)

    def _alone(self, pid: str, plan: Plan[T]) -> T:
        with self._connect() as conn:
            with conn.transaction() as alone:
                answer = run_plan(conn, pid, plan)
            committed(alone)
            metrics.schedule_committed()  # counted as the group's are
            return answer

    def _writer_conn(self) -> psycopg.Connection:
        assert self._conn is not None  # set by _transaction around the group's steps
        return self._conn

    def _transaction(self, steps: Sequence[Callable[[], None]]) -> None:
        with self._connect() as conn:
            with conn.transaction() as group:
                self._conn = conn
                try:
                    _run_steps(conn, steps)
                finally:
                    self._conn = None
            committed(group)

    def close(self) -> None:
        if self._group is not None:
            self._group.close()


def _run_steps(conn: psycopg.Connection, steps: Sequence[Callable[[], None]]) -> None:
    """Each step in its own savepoint, so a refused plan leaves the others; a group of one runs without
    (its failure rolls back a transaction that held nothing else: the same answer, no savepoint's round trips)."""
    if len(steps) == 1:
        steps[0]()
        return
    for step in steps:
        try:
            with conn.transaction():
                step()
        except Exception:  # noqa: BLE001 - that request's answer; the others go on
            if conn.broken:
                raise  # the connection is gone: so is the whole group
