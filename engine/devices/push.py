"""push@1.0: hands a computed message's outbox and spawns to the processes they are for.

After a slot is computed, every outbox message whose Target lives on this node is scheduled on
that process, every spawn becomes a new process, and every `ao.assign` puts an existing message on
the named local processes. What happened to each is recorded in `ctx.results["Pushed"]` (and
`["Assigned"]`). process@1.0 runs this device after its execution stack on every slot.

Decisions:
- The node, not the image, says who sent a pushed message: any `From-Process`, `Pushed-For` or
  `Push-Depth` the image wrote is dropped and set here. `From` is the sending process; the owner
  is the router's `address` when it has one (the node vouches, as the legacy MU signs pushed
  messages; AOS trusts them when that address is an `Authority` of the target), else the sender.
- Ids are content ids with a nonce of (sending slot, outbox position), so a replayed slot
  produces the same ids and the scheduler's idempotency turns a second push into a no-op.
- Loops are bounded: each hop carries `Push-Depth` = incoming depth + 1; above
  `state.config.push_max_depth` (default 32) the message is reported, not delivered.
- Fan-out is bounded (issue 10 item 8): one slot pushes at most `push_max_per_slot` messages and
  spawns, and a process pushes to itself at most `self_push_rate` per second of assignment time (a
  token bucket of `self_push_burst`), so `Send` twice to yourself per message cannot double the
  schedule on every read. What a bound cut is reported per row (`budget-exceeded`, `self-rate-exceeded`) and in the
  result's `Push-Cut`.
- Lock choice: pushing only schedules (appends to the target's schedule); it never computes the
  target. So it can run while the sender's compute lock is held without a lock-order cycle
  (A's lock -> scheduler, B's lock -> scheduler).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aonode.engine.devices.base import DeviceInfo, JsonObject, ProcessState, Signal, SlotContext
from aonode.engine.errors import AONodeError
from aonode.engine.message import Message

NAME = "push@1.0"
INFO = DeviceInfo(
    NAME,
    ("compute",),
    stackable=False,
    about="delivers a slot's outbox, spawns and assigns to the processes of this node",
)
DEPTH_TAG = "Push-Depth"
# Tags only the node may set on a pushed message (compared lowercased).
NODE_TAGS = frozenset({"from-process", "pushed-for", "push-depth"})


class Router(Protocol):
    """Where pushed messages go. Optional: `address` (who vouches for pushed messages), `spawn`
    (a router without it reports spawns as unsupported), `message` + `schedule` (for ao.assign)."""

    def is_local(self, pid: str | None) -> bool: ...
    def deliver(self, target: str, msg: Message) -> Mapping[str, object]: ...


@dataclass
class SelfPushRate:
    """A token bucket per process for the messages it pushes to itself (shared by every Push)."""

    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # pid -> (tokens, at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, pid: str, rate: float, burst: int, now: float) -> bool:
        """`now` is the pushing slot's assignment time in seconds: the clock recorded in the schedule,
        so how fast this machine computes never changes what is cut."""
        with self._lock:
            tokens, at = self._buckets.get(pid, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            allowed = tokens >= 1.0
            self._buckets[pid] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


SELF_PUSHES = SelfPushRate()


def _text(value: Any) -> str:
    """A tag value or Data as text: AOS may put numbers, booleans or tables there."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _image_tags(entry: dict[str, Any]) -> list[tuple[str, str]]:
    tags = entry.get("Tags") or []
    pairs = (
        tags.items()
        if isinstance(tags, dict)
        else ((t.get("name"), t.get("value")) for t in tags if isinstance(t, dict))
    )
    return [
        (str(name), _text(value))
        for name, value in pairs
        if name and value is not None and str(name).lower() not in NODE_TAGS
    ]


def _depth(tags: Any) -> int:
    for name, value in tags:
        if str(name).lower() == DEPTH_TAG.lower():
            try:
                return max(0, int(str(value)))
            except ValueError:
                return 0
    return 0


def _source(ctx: SlotContext) -> tuple[str | None, int]:
    """Id and push depth of the message whose outbox this is."""
    source = ctx.message or (ctx.assignment.message if ctx.assignment is not None else None)
    if source is None:
        return None, 0
    return source.id, _depth(source.tags)


def _build(
    state: ProcessState,
    router: Router,
    entry: dict[str, Any],
    nonce: str,
    target: str | None,
    pushed_for: str | None,
    depth: int,
) -> Message:
    node_tags = [("From-Process", state.process_id), (DEPTH_TAG, str(depth))]
    if pushed_for:
        node_tags.append(("Pushed-For", pushed_for))
    anchor = entry.get("Anchor")
    return Message.create(
        owner=getattr(router, "address", None) or state.process_id,
        from_=state.process_id,
        target=target,
        anchor=anchor if isinstance(anchor, str) else None,
        tags=tuple(_image_tags(entry)) + tuple(node_tags),
        data=_text(entry.get("Data")),
        nonce=nonce,
    )


def _deliver(router: Router, target: str, msg: Message) -> JsonObject:
    try:
        assignment = router.deliver(target, msg)
    except AONodeError as err:
        return {"status": "error", "error": str(err)}
    slot = assignment.get("slot")
    return {"slot": slot if isinstance(slot, int) else None, "message": msg.id}


def _spawn(router: Router, msg: Message) -> JsonObject:
    spawn = getattr(router, "spawn", None)
    if spawn is None:
        return {"status": "unsupported"}
    try:
        assignment = spawn(msg)
    except AONodeError as err:
        return {"status": "error", "error": str(err)}
    return {"process": assignment.get("process", msg.id), "slot": assignment.get("slot")}


def push_outbox(state: ProcessState, ctx: SlotContext, router: Router) -> list[dict[str, Any]]:
    """Deliver `ctx.results`' Messages and Spawns through `router`; return (and record) where each went."""
    results: dict[str, Any] = ctx.results
    pushed_for, incoming = _source(ctx)
    depth = incoming + 1
    too_deep = depth > state.config.push_max_depth
    # Inside the fold at_slot is still the previous slot; the assignment names the one computed.
    slot = ctx.slot if ctx.slot is not None else state.at_slot
    config = state.config
    budget = config.push_max_per_slot
    slot_time = ctx.assignment.timestamp / 1000 if ctx.assignment is not None else 0.0
    report: list[dict[str, Any]] = []
    for index, entry in enumerate(results.get("Messages") or []):
        if not isinstance(entry, dict):
            continue
        target = entry.get("Target")
        row: dict[str, Any] = {"kind": "message", "index": index, "target": target}
        if not isinstance(target, str) or not target:
            row["status"] = "no-target"
        elif too_deep:
            row["status"] = "depth-exceeded"
        elif not router.is_local(target):
            row["status"] = "remote"
        elif budget <= 0:
            row["status"] = "budget-exceeded"
        elif target == state.process_id and not SELF_PUSHES.take(
            target, config.self_push_rate, config.self_push_burst, slot_time
        ):
            row["status"] = "self-rate-exceeded"
        else:
            budget -= 1
            msg = _build(state, router, entry, f"{slot}:message:{index}", target, pushed_for, depth)
            row.update(_deliver(router, target, msg))
        report.append(row)
    for index, entry in enumerate(results.get("Spawns") or []):
        if not isinstance(entry, dict):
            continue
        row = {"kind": "spawn", "index": index}
        if too_deep:
            row["status"] = "depth-exceeded"
        elif budget <= 0:
            row["status"] = "budget-exceeded"
        else:
            budget -= 1
            msg = _build(state, router, entry, f"{slot}:spawn:{index}", None, pushed_for, depth)
            row.update(_spawn(router, msg))
        report.append(row)
    results["Pushed"] = report
    cut = [row for row in report if row.get("status") in ("budget-exceeded", "self-rate-exceeded")]
    if cut:
        results["Push-Cut"] = {
            "count": len(cut),
            "reasons": sorted({row["status"] for row in cut}),
            "per-slot": config.push_max_per_slot,
            "self-rate": config.self_push_rate,
        }
    return report


def assign_outbox(ctx: SlotContext, router: Router) -> list[dict[str, Any]]:
    """`ao.assign`: schedule an existing message onto other processes of this node, as a scheduler
    would; where each went is recorded in the result's `Assigned` (absent when there was none)."""
    results: dict[str, Any] = ctx.results
    find, schedule = getattr(router, "message", None), getattr(router, "schedule", None)
    done: list[dict[str, Any]] = []
    for entry in results.get("Assignments") or []:
        if not isinstance(entry, dict):
            continue
        message = find(str(entry.get("Message", ""))) if find is not None else None
        for target in entry.get("Processes") or []:
            if message is None or schedule is None or not router.is_local(target):
                done.append({"process": target, "message": entry.get("Message"), "status": "not-local-or-unknown"})
                continue
            assignment = schedule(target, message)
            done.append({"process": target, "message": message.id, "slot": assignment["slot"]})
    if done:
        results["Assigned"] = done
    return done


class Push:
    """Delivers once per message: a later pass (or a second push device) finds "Pushed" already in
    this message's results. In an execution stack it waits for decoded results (pass 2 of AOS)."""

    name = NAME

    def __init__(self, router: Router) -> None:
        self.router = router

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        decoded = "Messages" in ctx.results or "Spawns" in ctx.results
        if decoded and "Pushed" not in ctx.results:
            push_outbox(state, ctx, self.router)
            assign_outbox(ctx, self.router)
        return Signal.OK
