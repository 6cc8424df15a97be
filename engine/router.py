"""Router: the one way messages enter a schedule on this node, from clients and from processes.

`spawn` completes and checks a definition before slot 0 is stored; `schedule` appends a message
to an existing process; `deliver` is how push@1.0 hands over what a process sent (a PoDA target
that lists this node gets the node's commitment). It only schedules, never computes, so push can
call it while the sender's lock is held.
"""
from __future__ import annotations

from typing import cast

from aonode.engine import definitions
from aonode.engine import metrics
from aonode.engine.answers import AssignmentJSON
from aonode.engine.crypto import Wallet
from aonode.engine.devices import poda
from aonode.engine.devices.process import has_poda
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.images import Images
from aonode.engine.message import Message
from aonode.engine.views import Views


class Router:
    def __init__(self, scheduler: Scheduler, views: Views, registry: Registry, images: Images,
                 wallet: Wallet) -> None:
        self.scheduler = scheduler
        self.views = views
        self.registry = registry
        self.images = images
        self.wallet = wallet
        self.address = wallet.address  # who vouches for pushed messages
        self._local: set[str] = set()  # process ids known to be on this node

    def spawn(self, msg: Message) -> AssignmentJSON:
        """Schedule a process definition as slot 0 of a new process whose id is the message id."""
        msg = definitions.complete(msg, self.images.catalogue, self.address)
        definitions.check(msg, self.registry, self.images.load)  # refused before anything is stored
        pid = msg.id
        assignment = self.scheduler.spawn(pid, msg)
        metrics.scheduled()
        self.views.scheduled(pid, assignment.slot)
        return cast(AssignmentJSON, {**assignment.to_json(), "process": pid})

    def schedule(self, pid: str, msg: Message) -> AssignmentJSON:
        self.views.definition(pid)
        assignment = self.scheduler.schedule(pid, msg)
        metrics.scheduled()
        self.views.scheduled(pid, assignment.slot)
        return cast(AssignmentJSON, assignment.to_json())

    def is_local(self, pid: str | None) -> bool:
        if not pid:
            return False
        if pid in self._local:  # a process never goes away: one lookup per target, not per message
            return True
        found = self.scheduler.store.get_process(pid) is not None
        if found:
            self._local.add(pid)
        return found

    def message(self, mid: str) -> Message | None:
        return self.scheduler.store.get_message(mid)

    def deliver(self, target: str, msg: Message) -> AssignmentJSON:
        """Schedule a pushed message; a PoDA target that lists this node gets the node's commitment."""
        definition = self.views.definition(target)
        if has_poda(definition) and self.address in poda.config(definition).authorities:
            msg = poda.with_commitments(msg, [poda.commit(msg.id, self.wallet)])
        return self.schedule(target, msg)
