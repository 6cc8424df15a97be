"""Scheduling several messages as one plan (Scheduler.schedule_many_later, what the sequencer socket does
with the requests of one read): the same schedule, byte for byte, as one call per message; one answer for
the batch, given only once its commit is done; a batch that fails stores none of its messages."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from pathlib import Path

import cbor2
import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.scheduler import Scheduler, verify_chain
from aonode.engine.errors import NotFound
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.engine.store import Store, open_store
from aonode.engine.store.rows import assignment_values
from aonode.engine.store.sqlite_db import DB_NAME
from aonode.server import codec
from aonode.server.sequencer_socket import Frames, SequencerSocket, frame, rendered
from tests.helpers.ingest import node, ping, spawned  # noqa: F401 - node: the fixture

OWNER = Wallet.generate("ed25519").address


class Ticking:
    """A clock that moves 70 ms at each reading: cron ticks (every 100 ms) fall between messages."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 70
        return self.now


def definition() -> Message:
    return Message.create(owner=OWNER, tags=[("Type", "Process"), ("Cron-Frequency", "100-Milliseconds")], data="b")


def messages(count: int, label: str = "") -> list[Message]:
    return [Message.create(owner=OWNER, tags=[("Action", "Ping")], data=f"{label}{n}") for n in range(count)]


def rows(store: Store, pid: str) -> list[tuple[object, ...]]:
    return [assignment_values(a, a.message.to_cbor()) for a in store.assignments(pid)]


def test_a_batch_stores_what_one_call_per_message_stores(tmp_path: Path) -> None:
    """Two stores, the same clock readings: one schedules each message alone, the other in batches (a
    repeated message and one scheduled before among them); rows, chain and answers are identical."""
    proc, msgs = definition(), messages(12)
    alone, batched = open_store(str(tmp_path / "alone")), open_store(str(tmp_path / "batched"))
    try:
        one, many = Scheduler(alone, clock=Ticking()), Scheduler(batched, clock=Ticking())
        one.spawn(proc.id, proc)
        many.spawn(proc.id, proc)
        order = [msgs[0], *msgs[:5], msgs[2], *msgs[5:]]  # msgs[0] again at once, msgs[2] inside the batch
        answers_one = [one.schedule(proc.id, m) for m in order]
        answers_many = many.schedule_many_later(proc.id, order[:1]).result(30)
        answers_many += many.schedule_many_later(proc.id, order[1:8]).result(30)
        answers_many += many.schedule_many_later(proc.id, order[8:]).result(30)
        assert answers_many == answers_one
        assert answers_many[1] == answers_many[0] and answers_many[6].message_id == msgs[2].id
        assert rows(batched, proc.id) == rows(alone, proc.id)
        chain = batched.assignments(proc.id)
        assert verify_chain(chain) and [a.slot for a in chain] == list(range(len(chain)))
        assert sum(a.message.tag("Action") == "Cron" for a in chain) >= 5  # ticks between a batch's messages
        assert len(many.recent) == len(one.recent) == len(chain)  # each kept for the compute once committed
    finally:
        alone.close()
        batched.close()


def test_a_batch_on_either_store_takes_consecutive_slots_and_fails_whole(store_spec: str) -> None:
    store = open_store(store_spec)
    try:
        sched = Scheduler(store)
        proc = Message.create(owner=OWNER, tags=[("Type", "Process")], data=secrets.token_hex(4))
        sched.spawn(proc.id, proc)
        msgs = messages(6)
        placed = sched.schedule_many_later(proc.id, [*msgs, msgs[3]]).result(30)
        assert [a.slot for a in placed] == [1, 2, 3, 4, 5, 6, 4]
        again = sched.schedule_many_later(proc.id, [msgs[1], *messages(1, "new "), msgs[5]]).result(30)
        assert [a.slot for a in again] == [2, 7, 6]  # the stored ones found in one query, the new one next
        assert [a.slot for a in store.assignments(proc.id)] == list(range(8)) and verify_chain(
            store.assignments(proc.id)
        )
        with pytest.raises(NotFound):  # no schedule for this process: the batch fails, nothing is stored
            sched.schedule_many_later("n" * 43, msgs)
        unknown = Message.create(owner=OWNER, tags=[("Type", "Process")], data="never spawned")
        store.put_process(unknown.id, unknown)  # listed but without slot 0: the plan itself fails
        refused = messages(3, "refused ")
        with pytest.raises(NotFound):
            sched.schedule_many_later(unknown.id, refused).result(30)
        assert store.assignments(unknown.id) == [] and all(store.get_message(m.id) is None for m in refused)
    finally:
        store.close()


def test_a_repeat_alone_in_its_batch_gets_its_assignment(store_spec: str) -> None:
    """A message sent again, alone in its read (a client's retry through a worker), is answered with
    the slot it has, as schedule() answers it: not refused as already assigned (it was, on both stores)."""
    store = open_store(store_spec)
    try:
        sched = Scheduler(store)
        proc = Message.create(owner=OWNER, tags=[("Type", "Process")], data=secrets.token_hex(4))
        sched.spawn(proc.id, proc)
        first, second = messages(2, "retried ")
        placed = sched.schedule_many_later(proc.id, [first]).result(30)
        sched.schedule(proc.id, second)
        assert sched.schedule_many_later(proc.id, [first]).result(30) == placed
        assert sched.schedule_many_later(proc.id, [second]).result(30)[0].slot == 2
        assert [a.slot for a in store.assignments(proc.id)] == [0, 1, 2]
    finally:
        store.close()


def test_a_batch_is_answered_only_once_its_commit_is_done(node: Node) -> None:  # noqa: F811
    """Another connection holds SQLite's write lock: the batch cannot commit, so its Future stays open;
    once the lock goes, it is answered, and a fresh connection reads every message of it."""
    pid = spawned(node)
    blocker = sqlite3.connect(Path(node.router.scheduler.store.data_dir) / DB_NAME, isolation_level=None)  # type: ignore[attr-defined]
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answer = node.schedule_many_later(pid, [ping(node, n) for n in range(5)])
        time.sleep(0.5)
        assert not answer.done()
    finally:
        blocker.execute("ROLLBACK")
    slots = [a.slot for a in answer.result(30)]
    assert slots == [1, 2, 3, 4, 5]
    fresh = sqlite3.connect(Path(node.router.scheduler.store.data_dir) / DB_NAME)  # type: ignore[attr-defined]
    assert fresh.execute("SELECT COUNT(*) FROM assignments WHERE process = ?", (pid,)).fetchone() == (6,)
    fresh.close()
    blocker.close()


def test_one_read_of_frames_for_two_processes_is_answered_per_frame(node: Node) -> None:  # noqa: F811
    """A worker's frames for a process, for one that does not exist, and a repeat arrive in one read:
    each frame gets its own reply, the known process's messages consecutive slots in arrival order, each
    answer (rendered by the worker or sent whole) the JSON the node serves for that slot, byte for byte."""
    pid = spawned(node)
    name = f"aonode-test-{secrets.token_hex(6)}"
    sequencer = SequencerSocket(node, name, lambda: {os.getpid()})
    worker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        worker.connect("\0" + name)
        sent = [(pid, ping(node, 0)), ("n" * 43, ping(node, 1)), (pid, ping(node, 2)), (pid, ping(node, 0))]
        worker.sendall(b"".join(frame([rid, p, m.to_cbor(), "/", 0.0]) for rid, (p, m) in enumerate(sent)))
        frames, replies = Frames(worker), {}
        while len(replies) < len(sent):
            raw = frames.next()
            assert raw is not None
            rid, status, body = cbor2.loads(raw)
            replies[rid] = (status, body)
        assert {rid: status for rid, (status, _) in replies.items()} == {0: 200, 1: 404, 2: 200, 3: 200}
        # A message placed now comes back as its assignment's fields, which the worker renders with the
        # message it sent into the very JSON the node serves; the repeat (another message object: the
        # first one's assignment) comes back as that JSON.
        answers = {}
        for rid, (status, body) in replies.items():
            if status == 200:
                answers[rid] = rendered(sent[rid][0], sent[rid][1], body) if rid in (0, 2) else body
        assert {rid: json.loads(body)["slot"] for rid, body in answers.items()} == {0: 1, 2: 2, 3: 1}
        for rid, body in answers.items():
            stored = node.assignment(pid, json.loads(body)["slot"])
            assert stored is not None and body == codec.dump_json(stored.to_json())
    finally:
        worker.close()
        sequencer.close()
