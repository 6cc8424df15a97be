"""PostgreSQL's group commit when the writer's connection dies inside a group (the server restarted,
the backend killed, the network gone): no request of that group is answered as committed, none is
left unanswered, and the writer goes on with a fresh connection; the slots stay contiguous.

Before: psycopg leaves a transaction block on a broken connection without committing and without
raising, so the requests run before the break were answered as committed though nothing was, and a
request whose savepoint could not even open had no answer at all (the writer thread died on it and
every later schedule waited forever)."""

from __future__ import annotations

import threading
from concurrent.futures import Future, wait

import psycopg

from aonode.engine.store import open_store
from aonode.engine.store.base import Assignment
from aonode.engine.store.pg_sequence import View
from tests.helpers.store_rows import assignment, msg

PID = "P" * 43


def test_a_connection_lost_inside_a_group_answers_nothing_as_committed(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    try:
        store.append_assignment(assignment(PID, 0, msg(0)))
        release = threading.Event()

        def held(view: object) -> tuple[list[Assignment], None]:
            release.wait(30)  # the writer is busy: the next three arrive together (maybe with this one)
            return [], None

        def next_slot(view: View, n: int) -> list[Assignment]:
            last = view.last()
            assert last is not None
            return [assignment(PID, last.slot + 1, msg(n))]

        def killing(view: View) -> tuple[list[Assignment], None]:
            with psycopg.connect(pg_dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (view.conn.info.backend_pid,))
            return next_slot(view, 2), None

        first = store.sequence_later(PID, held)
        group: list[Future[None]] = [
            store.sequence_later(PID, lambda view: (next_slot(view, 1), None)),  # type: ignore[arg-type]
            store.sequence_later(PID, killing),  # type: ignore[arg-type]
            store.sequence_later(PID, lambda view: (next_slot(view, 3), None)),  # type: ignore[arg-type]
        ]
        release.set()
        _, waiting = wait([first, *group], timeout=30)
        assert not waiting, "a request of the broken group was never answered"
        stored = {a.message_id for a in store.assignments(PID)}
        for n, future in zip((1, 2, 3), group, strict=True):
            if future.exception() is None:
                assert msg(n).id in stored, f"request {n} was answered as committed but is not stored"
        after = store.sequence_later(PID, lambda view: (next_slot(view, 4), None))  # type: ignore[arg-type]
        after.result(30)  # the writer goes on with a fresh connection
        chain = store.assignments(PID)
        assert [a.slot for a in chain] == list(range(len(chain))) and chain[-1].message_id == msg(4).id
    finally:
        store.close()
