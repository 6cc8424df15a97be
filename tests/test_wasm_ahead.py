"""A backlog computed with each wasm call ahead of the previous slot's post-processing (engine/devices/
wasm_ahead.py) gives what computing one slot at a time gives: the same views (results, cache), the same
snapshots and the same memory sha256 at every slot, through handler errors, a wasm trap, a failure while
finishing a slot and a restart mid-backlog."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.wasm64 import loaded
from aonode.engine.devices.wasm_ahead import AHEAD
from aonode.engine.errors import Busy
from aonode.engine.message import Message
from aonode.engine.node import Node
from tests.helpers.nodeutil import action, definition, eval_msg, make_node

pytestmark = pytest.mark.slow  # several backlogs on the real aos2_0_6 image, twice each

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


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return one_at_a_time(tmp_path_factory.mktemp("one") / "node", EVERY_SLOT)


@pytest.fixture(scope="module")
def sparse_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return one_at_a_time(tmp_path_factory.mktemp("sparse") / "node", EVERY_FOURTH)


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


def test_the_one_at_a_time_run_has_the_cases_it_claims(reference: Reference) -> None:
    errors = [v["results"]["Error"] for v in reference.views if v["results"].get("Error")]
    assert any("boom at" in e for e in errors) and any("MemoryLimitExceeded" in e for e in errors), errors
    assert reference.views[-1]["cache"]["balances"][RECIPIENT] > 0
    assert len(reference.begun_on) == len(backlog("p"))
    assert all(name == threading.main_thread().name for name in reference.begun_on)  # nothing ran ahead there


def test_backlog_run_ahead_is_the_same_at_every_slot(tmp_path: Path, reference: Reference) -> None:
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = setup(node)
    started = len(seen.begun_on)
    node.now(pid)
    ahead = seen.begun_on[started:]
    assert sum(name.startswith("aonode-wasm-ahead") for name in ahead) == len(ahead) == len(backlog(pid))
    check_same(node, pid, reference, seen)
    node.close()


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


def stored_results(node: Node, pid: str) -> list[int]:
    return sorted(slot for slot, _ in node.store.results(pid, 0, 10_000))


@pytest.mark.parametrize("failing_slot", [9, -1])  # -1: the backlog's last slot, nothing begun past it
def test_a_failure_finishing_a_slot_surfaces_and_the_next_read_recomputes(
    tmp_path: Path, reference: Reference, failing_slot: int
) -> None:
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = setup(node)
    failing_slot = failing_slot if failing_slot >= 0 else node.slot(pid)["current"]
    node.processes.after = [*node.processes.after, AtSlot(failing_slot, fail("disk on fire"))]
    with pytest.raises(RuntimeError, match="disk on fire"):
        node.now(pid)
    assert stored_results(node, pid) == list(range(failing_slot))  # nothing at or past the failed slot
    node.now(pid)  # its memory had run past the failed slot: restored from the snapshot before it, recomputed
    check_same(node, pid, reference, seen)
    node.close()


def test_a_failure_finishing_a_slot_computed_alone_is_computed_again(tmp_path: Path, reference: Reference) -> None:
    """One slot at a time (no worker): the failed slot's result is stored by the next read, not skipped."""
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = node.spawn(EVERY_SLOT)["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    node.now(pid)
    for message in backlog(pid):
        slot = node.schedule(pid, message)["slot"]
        if slot == 9:
            node.processes.after = [*node.processes.after, AtSlot(slot, fail("disk on fire"))]
            with pytest.raises(RuntimeError, match="disk on fire"):
                node.now(pid)
        assert node.now(pid)["at-slot"] == slot
    check_same(node, pid, reference, seen)
    node.close()


def interrupted_then_restarted(
    data: Path, definition: Message, interrupt: Callable[[Node], AtSlot], error: type[Exception]
) -> tuple[Node, str, Recorded, Recorded]:
    """A backlog interrupted with `error` by the device `interrupt` gives, the node closed, restarted
    and the rest computed: (the restarted node, the process, what each node stored)."""
    node = make_node(data)
    before = recording(node)
    pid = setup(node, definition)
    device = interrupt(node)
    node.processes.after = [*node.processes.after, device]
    with pytest.raises(error) as raised:
        node.now(pid)
    assert device.raised is None or raised.value is device.raised  # the error that ended it, not a later one
    stored = stored_results(node, pid)
    assert stored == list(range(len(stored)))  # stored in order, nothing past a gap
    node.close()
    restarted = make_node(data)
    after = recording(restarted)
    restarted.now(pid)
    return restarted, pid, before, after


@pytest.mark.parametrize("failing_slot", [6, 7])
def test_a_restart_after_a_failure_mid_backlog_recomputes_the_same(
    tmp_path: Path, sparse_reference: Reference, failing_slot: int
) -> None:
    """Cache-Frequency 4: the live state failed at a slot with no snapshot of its own, its memory
    ahead of it; closing the node must not snapshot that memory as the slot it failed at."""
    node, pid, before, after = interrupted_then_restarted(
        tmp_path / "node", EVERY_FOURTH, lambda _: AtSlot(failing_slot, fail("power cut")), RuntimeError
    )
    check_same(node, pid, sparse_reference, before, after)
    node.close()


def test_a_stopping_node_finishes_the_slot_ahead_and_stops(tmp_path: Path, reference: Reference) -> None:
    node, pid, before, after = interrupted_then_restarted(
        tmp_path / "node", EVERY_SLOT, lambda n: AtSlot(7, n.processes.stopping.set), Busy
    )
    # The slots begun when it stopped (AHEAD of slot 7) were finished, then the stop.
    assert max(slot for slot, _ in before.snapshots) == 7 + AHEAD
    check_same(node, pid, reference, before, after)
    node.close()
