"""push@1.0 delivers outboxes and spawns to local processes; multipass@1.0 drives the stack's passes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.base import ProcessConfig, ProcessState, Signal, SlotContext
from aonode.engine.devices.multipass import Multipass
from aonode.engine.devices.patch import Patch
from aonode.engine.devices.push import Push
from aonode.engine.devices.push import push_outbox as push_slot
from aonode.engine.devices.stack import Stack
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment

USER = "U" * 43
A, B, FAR = "A" * 43, "B" * 43, "F" * 43
NODE = "N" * 43


@dataclass
class Router:
    """A tiny in-memory node: numbered schedules per local process, spawns become processes."""

    local: set[str]
    address: str | None = NODE
    schedules: dict[str, list[Message]] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)

    def is_local(self, pid: str | None) -> bool:
        return pid in self.local

    def deliver(self, target: str, msg: Message) -> dict[str, Any]:
        if target in self.refuse:
            raise NotFound(f"{target} refuses mail")
        schedule = self.schedules.setdefault(target, [])
        for slot, known in enumerate(schedule, start=1):
            if known.id == msg.id:  # idempotent, like the real scheduler
                return {"process": target, "slot": slot, "message": msg.id}
        schedule.append(msg)
        return {"process": target, "slot": len(schedule), "message": msg.id}

    def spawn(self, msg: Message) -> dict[str, Any]:
        if msg.tag("Module") == "missing":
            raise BadInput("unknown image")
        self.local.add(msg.id)
        self.schedules[msg.id] = [msg]
        return {"process": msg.id, "slot": 0, "message": msg.id}


def _outbox_entry(target: str | None, ref: int, *extra: tuple[str, Any], data: Any = "hi") -> dict[str, Any]:
    """An AOS 2.0.x outbox message, as its JSON result decodes."""
    tags = [{"name": "Data-Protocol", "value": "ao"}, {"name": "Variant", "value": "ao.TN.1"},
            {"name": "Type", "value": "Message"}, {"name": "Reference", "value": str(ref)}]
    tags += [{"name": n, "value": v} for n, v in extra]
    entry: dict[str, Any] = {"Anchor": f"{ref:032d}", "Tags": tags, "Data": data}
    if target is not None:
        entry["Target"] = target
    return json.loads(json.dumps(entry))


@dataclass
class Slot:
    """A process state and the context of one computed slot whose results hold an outbox."""

    state: ProcessState
    ctx: SlotContext

    @property
    def results(self) -> dict[str, Any]:
        return self.ctx.results


def _state(pid: str, messages: list[dict[str, Any]], spawns: list[dict[str, Any]] | None = None,
           source: Message | None = None, slot: int = 4, **config: Any) -> Slot:
    process = Message.create(owner=USER, tags=(("Type", "Process"),))
    state = ProcessState(process_id=pid, process=process, at_slot=slot, config=ProcessConfig(**config))
    source = source or Message.create(owner=USER, target=pid, tags=(("Action", "Eval"),), data="x")
    assignment = Assignment(process=pid, slot=slot, message_id=source.id, timestamp=0, block_height=0,
                            block_hash=None, epoch=0, hash_chain="", message=source)
    results = {"Output": {"data": ""}, "Messages": messages, "Spawns": spawns or [],
               "Assignments": [], "Error": None}
    return Slot(state, SlotContext(assignment=assignment, results=results))


def push_outbox(slot: Slot, router: Any) -> list[dict[str, Any]]:
    return push_slot(slot.state, slot.ctx, router)


def test_local_message_is_scheduled_with_node_set_sender_tags() -> None:
    router = Router(local={A, B})
    forged = _outbox_entry(B, 1, ("Action", "Ping"), ("From-Process", FAR), ("Push-Depth", "-9"),
                           ("Pushed-For", "x"), ("Count", 3), ("Table", {"k": [1, True]}))
    state = _state(A, [forged])
    source_id = state.ctx.assignment.message_id

    report = push_outbox(state, router)

    [msg] = router.schedules[B]
    assert report == [{"kind": "message", "index": 0, "target": B, "slot": 1, "message": msg.id}]
    assert state.results["Pushed"] == report
    assert msg.owner == NODE and msg.from_ == A and msg.target == B
    assert msg.anchor == "0" * 31 + "1" and msg.data == "hi"
    assert [v for n, v in msg.tags if n.lower() == "from-process"] == [A]
    assert msg.tag("Push-Depth") == "1" and msg.tag("Pushed-For") == source_id
    assert msg.tag("Count") == "3" and json.loads(msg.tag("Table")) == {"k": [1, True]}
    assert msg.tag("Action") == "Ping" and msg.tag("Reference") == "1"


def test_sender_is_owner_when_router_has_no_address() -> None:
    router = Router(local={B}, address=None)
    push_outbox(_state(A, [_outbox_entry(B, 1)]), router)
    assert router.schedules[B][0].owner == A


def test_remote_and_missing_targets_are_reported_not_delivered() -> None:
    router = Router(local={A, B})
    state = _state(A, [_outbox_entry(FAR, 1), _outbox_entry(None, 2), _outbox_entry(B, 3)])
    report = push_outbox(state, router)
    assert [r.get("status") for r in report] == ["remote", "no-target", None]
    assert report[0] == {"kind": "message", "index": 0, "target": FAR, "status": "remote"}
    assert list(router.schedules) == [B]


def test_data_tables_become_json_text() -> None:
    router = Router(local={B})
    push_outbox(_state(A, [_outbox_entry(B, 1, data={"a": 1}), _outbox_entry(B, 2, data=None)]), router)
    assert [m.data for m in router.schedules[B]] == ['{"a":1}', ""]


def test_ids_are_deterministic_and_distinct_per_position() -> None:
    twin = [_outbox_entry(B, 1), _outbox_entry(B, 1)]  # same content twice in one outbox
    first, again = Router(local={B}), Router(local={B})
    push_outbox(_state(A, copy_entries(twin)), first)
    push_outbox(_state(A, copy_entries(twin)), again)
    assert [m.id for m in first.schedules[B]] == [m.id for m in again.schedules[B]]
    assert len({m.id for m in first.schedules[B]}) == 2
    # Replaying the same slot into the same router schedules nothing new.
    report = push_outbox(_state(A, copy_entries(twin)), first)
    assert [r["slot"] for r in report] == [1, 2] and len(first.schedules[B]) == 2
    # The same outbox at another slot is new mail.
    push_outbox(_state(A, copy_entries(twin), slot=5), first)
    assert len(first.schedules[B]) == 4


def copy_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(entries))


def test_delivery_error_is_reported_and_others_continue() -> None:
    router = Router(local={A, B}, refuse={A})
    report = push_outbox(_state(B, [_outbox_entry(A, 1), _outbox_entry(B, 2)]), router)
    assert report[0]["status"] == "error" and "refuses" in report[0]["error"]
    assert report[1]["slot"] == 1


def test_spawns_become_processes() -> None:
    router = Router(local={A})
    spawn = {"Anchor": f"{2:032d}", "Data": "NODATA", "Tags": [
        {"name": "Type", "value": "Process"}, {"name": "From-Process", "value": A},
        {"name": "Module", "value": "aos2_0_6"}, {"name": "Name", "value": "child"}]}
    bad = {"Anchor": f"{3:032d}", "Data": "", "Tags": [{"name": "Module", "value": "missing"}]}
    report = push_outbox(_state(A, [], spawns=[spawn, bad]), router)
    child = report[0]["process"]
    assert report[0] == {"kind": "spawn", "index": 0, "process": child, "slot": 0}
    assert report[1]["status"] == "error"
    definition = router.schedules[child][0]
    assert definition.tag("Name") == "child" and definition.from_ == A and definition.target is None
    assert [v for n, v in definition.tags if n == "From-Process"] == [A]


def test_router_without_spawn_reports_unsupported() -> None:
    class MailOnly:
        def is_local(self, pid: str | None) -> bool:
            return False

        def deliver(self, target: str, msg: Message) -> dict[str, Any]:
            raise AssertionError("nothing is local")

    report = push_outbox(_state(A, [], spawns=[{"Tags": [], "Data": ""}]), MailOnly())
    assert report == [{"kind": "spawn", "index": 0, "status": "unsupported"}]


def _incoming(depth: int) -> Message:
    return Message.create(owner=NODE, from_=B, target=A,
                          tags=(("From-Process", B), ("Push-Depth", str(depth))))


@pytest.mark.parametrize(("incoming", "delivered"), [(31, True), (32, False)])
def test_depth_limit(incoming: int, delivered: bool) -> None:
    router = Router(local={A, B})
    state = _state(A, [_outbox_entry(B, 1)], spawns=[{"Tags": [], "Data": ""}], source=_incoming(incoming))
    report = push_outbox(state, router)
    if delivered:
        assert router.schedules[B][0].tag("Push-Depth") == "32"
    else:
        assert router.schedules == {}
        assert [r["status"] for r in report] == ["depth-exceeded", "depth-exceeded"]


def test_ping_pong_loop_stops_at_configured_depth() -> None:
    """Two processes that always answer each other: the chain ends at push_max_depth hops."""
    router = Router(local={A, B})
    pending = [(A, Message.create(owner=USER, target=A, tags=(("Action", "Ping"),)))]
    hops = 0
    while pending:
        pid, msg = pending.pop()
        other = B if pid == A else A
        state = _state(pid, [_outbox_entry(other, hops + 1, ("Action", "Ping"))], source=msg,
                       slot=hops, push_max_depth=5)
        [row] = push_outbox(state, router)
        if "slot" in row:
            hops += 1
            pending.append((other, router.schedules[other][row["slot"] - 1]))
        else:
            assert row["status"] == "depth-exceeded"
    assert hops == 5


def test_device_form_pushes_once_after_results_are_decoded() -> None:
    """In an AOS-like stack the outbox only exists on pass 2; push must run then, and only once."""
    router = Router(local={B})
    outbox = [_outbox_entry(B, 1), {"device": "patch@1.0", "cache": {"x": 1}}]

    class Decoder:  # stands in for json-iface: results appear on pass 2
        name = "decoder"

        def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
            if ctx.pass_ == 2:
                ctx.results = {"Messages": copy_entries(outbox), "Spawns": []}
            return Signal.OK

    slot = _state(A, [], slot=6)
    state, ctx = slot.state, slot.ctx
    ctx.results = {}
    ctx.message = Message.create(owner=USER, target=A)
    stack = Stack([Decoder(), Multipass(), Patch(), Push(router), Push(router)])
    assert stack.compute(state, ctx) is Signal.OK
    assert len(router.schedules[B]) == 1
    assert ctx.results["Pushed"] == [{"kind": "message", "index": 0, "target": B, "slot": 1,
                                      "message": router.schedules[B][0].id}]
    assert state.cache == {"x": 1}


def test_node_router_schedules_on_the_target(tmp_path: Any) -> None:
    from aonode.server.compose import make_node

    node = make_node(tmp_path, wallet=Wallet.generate("ed25519"))
    try:
        a = node.spawn(Message.create(owner=USER, tags=(("Name", "a"),)))["process"]
        b = node.spawn(Message.create(owner=USER, tags=(("Name", "b"),)))["process"]
        report = push_outbox(_state(a, [_outbox_entry(b, 1, ("Action", "Ping")),
                                        _outbox_entry(FAR, 2)]), node.router)
        assert report[0]["slot"] == 1 and report[1]["status"] == "remote"
        stored = node.store.get_assignment(b, 1).message
        assert stored.tag("From-Process") == a and stored.from_ == a and stored.owner == node.address
        assert stored.tag("Action") == "Ping"
    finally:
        node.close()


# --- multipass@1.0 ----------------------------------------------------------------------------------

def _definition(*tags: tuple[str, str]) -> ProcessState:
    return ProcessState(process_id=A, process=Message.create(owner=USER, tags=tags))


@pytest.mark.parametrize(("tags", "passes"), [((), 2), ((("Passes", "3"),), 3), ((("passes", "1"),), 1)])
def test_multipass_passes_until_the_count(tags: tuple, passes: int) -> None:
    state = _definition(*tags)
    signals = []
    for pass_ in range(1, passes + 1):
        signals.append(Multipass().compute(state, SlotContext(pass_=pass_)))
    assert signals == [Signal.PASS] * (passes - 1) + [Signal.OK]


def test_multipass_drives_the_stack() -> None:
    calls: list[int] = []

    class Recorder:
        name = "recorder"

        def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
            calls.append(ctx.pass_)
            return Signal.OK

    state = _definition(("Passes", "3"))
    Stack([Recorder(), Multipass(), Recorder()]).compute(state, SlotContext(message=state.process))
    assert calls == [1, 2, 3, 3]


@pytest.mark.parametrize("raw", ["0", "two", "-1"])
def test_multipass_refuses_bad_passes(raw: str) -> None:
    state = _definition(("Passes", raw))
    with pytest.raises(BadInput):
        Multipass().init(state, SlotContext(message=state.process))
