"""A token process's backlog with its awkward cases, run one slot at a time as the reference a backlog
computed with its wasm calls ahead (engine/devices/wasm_ahead.py) is compared with, slot by slot."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.wasm64 import loaded
from aonode.engine.message import Message
from aonode.engine.node import Node
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

TOKEN = """
Balances = Balances or { [ao.id] = 1000 }
Balances[Owner] = 500
Handlers.add('transfer', Handlers.utils.hasMatchingTag('Action', 'Transfer'), function(msg)
  local qty = tonumber(msg.Quantity)
  Balances[msg.From] = Balances[msg.From] - qty
  Balances[msg.Recipient] = (Balances[msg.Recipient] or 0) + qty
  Send({ device = 'patch@1.0', cache = { balances = Balances } })
  Send({ Target = msg.From, Action = 'Debit-Notice', Quantity = msg.Quantity })
  print('moved ' .. msg.Quantity)
end)
Handlers.add('boom', Handlers.utils.hasMatchingTag('Action', 'Boom'), function(msg) error('boom at ' .. msg.Nonce) end)
return 'token ready'
"""
EVERY_SLOT = definition(("Cache-Frequency", "1"), ("Memory-Limit", "192-mb"), ("Name", "ahead"))
EVERY_FOURTH = definition(("Cache-Frequency", "4"), ("Memory-Limit", "192-mb"), ("Name", "ahead-4"))
RECIPIENT = "R" * 43


def backlog(pid: str) -> list[Message]:
    """Transfers with a handler error, a failing Eval and a wasm trap (memory limit) in the middle."""
    messages = [
        action(pid, "Transfer", ("Recipient", RECIPIENT), ("Quantity", str(1 + i % 3)), nonce=str(i)) for i in range(14)
    ]
    messages.insert(4, action(pid, "Boom", nonce="boom"))
    messages.insert(7, eval_msg(pid, "return nil .. 1", nonce="bad eval"))
    messages.insert(10, eval_msg(pid, "local s = string.rep('x', 256 * 1024 * 1024) return #s", nonce="bomb"))
    return messages


@dataclass
class Recorded:
    """(slot, whole-memory sha256) of every snapshot a node stores (read back from the store as it is
    stored: a process keeps only its newest few), and the threads that ran first passes."""

    snapshots: list[tuple[int, str]] = field(default_factory=list)
    begun_on: list[str] = field(default_factory=list)


def recording(node: Node) -> Recorded:
    seen = Recorded()
    store, put, begin = node.store, node.store.put_snapshot, node.processes.begin

    def put_snapshot(pid, slot, name, blob, chunks) -> None:  # type: ignore[no-untyped-def]
        put(pid, slot, name, blob, chunks)
        seen.snapshots.append((slot, hashlib.sha256(loaded(blob, name, store.get_chunks).raw()).hexdigest()))

    def begin_here(state: ProcessState, ctx: SlotContext) -> Signal:
        seen.begun_on.append(threading.current_thread().name)
        return begin(state, ctx)

    store.put_snapshot = put_snapshot  # type: ignore[method-assign]
    node.processes.begin = begin_here  # type: ignore[method-assign]
    return seen


def live_memory(node: Node, pid: str) -> str:
    with node.live.lock(pid):
        instance = node.live.state(pid).instance
        assert instance is not None
        return instance.memory_sha256()


@dataclass
class Reference:
    """The process computed one slot at a time: its views, the live memory after every slot."""

    views: list[dict]
    memory_at: dict[int, str]
    begun_on: list[str]


def setup(node: Node, definition: Message = EVERY_SLOT) -> str:
    pid = node.spawn(definition)["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    node.now(pid)
    for message in backlog(pid):
        node.schedule(pid, message)
    return pid


def views(node: Node, pid: str) -> list[dict]:
    last = node.slot(pid)["current"]
    return [node.compute(pid, slot) for slot in range(last + 1)]


def one_at_a_time(data: Path, definition: Message) -> Reference:
    node = make_node(data)
    seen = recording(node)
    pid = node.spawn(definition)["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    memory_at = {}
    for slot in (0, 1):
        node.compute(pid, slot)
        memory_at[slot] = live_memory(node, pid)
    started = len(seen.begun_on)
    for message in backlog(pid):
        slot = node.schedule(pid, message)["slot"]
        node.compute(pid, slot)
        memory_at[slot] = live_memory(node, pid)
    run = Reference(views(node, pid), memory_at, seen.begun_on[started:])
    node.close()
    return run


def check_same(node: Node, pid: str, reference: Reference, *seen: Recorded) -> None:
    """Every view as in `reference`, every snapshot any of `seen` stored of the memory at its slot,
    the live memory as after the last slot; with Cache-Frequency 1, a snapshot at every slot."""
    run = views(node, pid)
    assert [v["results"] for v in run] == [v["results"] for v in reference.views]
    assert [v["cache"] for v in run] == [v["cache"] for v in reference.views]
    assert run == reference.views
    stored = [entry for recorded in seen for entry in recorded.snapshots]
    assert stored and all(sha == reference.memory_at[slot] for slot, sha in stored)
    if node.store.get_process(pid).tag("Cache-Frequency") == "1":  # type: ignore[union-attr]
        assert {slot for slot, _ in stored} >= set(reference.memory_at) - {0, 1}
    assert live_memory(node, pid) == reference.memory_at[max(reference.memory_at)]


@dataclass
class AtSlot:
    """A device after the stack (like push@1.0) that runs `act` once, while slot `slot` is finished."""

    slot: int
    act: Callable[[], None]
    name: str = "at-slot@1.0"
    done: bool = False
    raised: BaseException | None = None

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        if ctx.slot == self.slot and not self.done:
            self.done = True
            try:
                self.act()
            except BaseException as err:
                self.raised = err
                raise
        return Signal.OK


def fail(message: str) -> Callable[[], None]:
    def act() -> None:
        raise RuntimeError(message)

    return act
