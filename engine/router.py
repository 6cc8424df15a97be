"""Router: the one way messages enter a schedule on this node, from clients and from processes.

`spawn` completes and checks a definition before slot 0 is stored; `schedule` appends a message
to an existing process; `deliver` is how push@1.0 hands over what a process sent (a PoDA target
that lists this node gets the node's commitment). It only schedules, never computes, so push can
call it while the sender's lock is held.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import cast

from aonode.engine import definitions, metrics
from aonode.engine.answers import AssignmentJSON
from aonode.engine.crypto import Wallet
from aonode.engine.devices import poda
from aonode.engine.devices.process import has_poda
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.scheduler import Assignment, Scheduler
from aonode.engine.images import Images
from aonode.engine.later import then
from aonode.engine.message import Message
from aonode.engine.views import Views

NOT_LOCAL_MAX = 65536  # remembered non-process ids (then forgotten all at once)


class Router:
    def __init__(self, scheduler: Scheduler, views: Views, registry: Registry, images: Images, wallet: Wallet) -> None:
        self.scheduler = scheduler
        self.views = views
        self.registry = registry
        self.images = images
        self.wallet = wallet
        self.address = wallet.address  # who vouches for pushed messages
        self._local: set[str] = set()  # process ids known to be on this node
        # Ids found not to be processes here (a token's notices go to wallets), with the count of
        # spawns at the time: any spawn since makes the answer stale. Not kept on a shared store,
        # where another node may spawn.
        self._not_local: dict[str, int] = {}
        self._spawns = 0
        self._spawns_guard = threading.Lock()  # no increment lost: the count only ever grows

    def spawn(self, msg: Message) -> AssignmentJSON:
        """Schedule a process definition as slot 0 of a new process whose id is the message id."""
        msg = definitions.complete(msg, self.images.catalogue, self.address)
        definitions.check(msg, self.registry, self.images.load)  # refused before anything is stored
        pid = msg.id
        try:
            assignment = self.scheduler.spawn(pid, msg)
        finally:
            with self._spawns_guard:  # after the process is stored: a lookup that missed it is stale now
                self._spawns += 1
        metrics.scheduled()
        self.views.scheduled(pid, assignment.slot)
        return cast(AssignmentJSON, {**assignment.to_json(), "process": pid})

    def schedule(self, pid: str, msg: Message) -> AssignmentJSON:
        return self.schedule_later(pid, msg).result()

    def schedule_later(self, pid: str, msg: Message) -> Future[AssignmentJSON]:
        """`schedule` without waiting: the Future is settled (by the committing thread) once durable."""
        self.views.definition(pid)
        return then(self.scheduler.schedule_later(pid, msg), lambda assignment: self._scheduled(pid, assignment))

    def schedule_many_later(self, pid: str, msgs: list[Message]) -> Future[list[Assignment]]:
        """`schedule_later` of each of `msgs`, in order, with one Future for all (one request to the
        store's group commit; a failure is every message's answer). The assignments themselves: the
        caller renders what it answers (Assignment.to_json), off the committing thread."""
        self.views.definition(pid)
        return then(self.scheduler.schedule_many_later(pid, msgs), lambda placed: self._scheduled_many(pid, placed))

    def _scheduled_many(self, pid: str, placed: list[Assignment]) -> list[Assignment]:
        if placed:  # the bookkeeping once per batch
            metrics.scheduled(len(placed))
            self.views.scheduled(pid, max(a.slot for a in placed))
        return placed

    def _scheduled(self, pid: str, assignment: Assignment) -> AssignmentJSON:
        metrics.scheduled()
        self.views.scheduled(pid, assignment.slot)
        return cast(AssignmentJSON, assignment.to_json())

    def is_local(self, pid: str | None) -> bool:
        if not pid:
            return False
        if pid in self._local:  # a process never goes away: one lookup per target, not per message
            return True
        spawns = self._spawns
        if self._not_local.get(pid) == spawns:
            return False
        found = self.scheduler.store.get_process(pid) is not None
        if found:
            self._local.add(pid)
        elif not self.views.shared:
            if len(self._not_local) >= NOT_LOCAL_MAX:
                self._not_local.clear()
            self._not_local[pid] = spawns
        return found

    def message(self, mid: str) -> Message | None:
        return self.scheduler.store.get_message(mid)

    def deliver(self, target: str, msg: Message) -> AssignmentJSON:
        """Schedule a pushed message; a PoDA target that lists this node gets the node's commitment."""
        definition = self.views.definition(target)
        if has_poda(definition) and self.address in poda.config(definition).authorities:
            msg = poda.with_commitments(msg, [poda.commit(msg.id, self.wallet)])
        return self.schedule(target, msg)
