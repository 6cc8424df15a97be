"""push@1.0: hands a computed message's outbox and spawns to the processes they are for.

After a slot is computed, every outbox message whose Target lives on this node is scheduled on
that process, and every spawn becomes a new process. What happened to each is recorded in
`state.results["Pushed"]`.

Decisions:
- The node, not the image, says who sent a pushed message: any `From-Process`, `Pushed-For` or
  `Push-Depth` the image wrote is dropped and set here. `From` is the sending process; the owner
  is the router's `address` when it has one (the node vouches, as the legacy MU signs pushed
  messages; AOS trusts them when that address is an `Authority` of the target), else the sender.
- Ids are content ids with a nonce of (sending slot, outbox position), so a replayed slot
  produces the same ids and the scheduler's idempotency turns a second push into a no-op.
- Loops are bounded: each hop carries `Push-Depth` = incoming depth + 1; above
  `config["push_max_depth"]` (default 32) the message is reported, not delivered.
- Lock choice: pushing only schedules (appends to the target's schedule); it never computes the
  target. So it can run while the sender's compute lock is held without a lock-order cycle
  (A's lock -> scheduler, B's lock -> scheduler). `push_outbox` is a plain function so a node
  may equally call it after releasing the lock.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from aonode.engine.devices.base import ProcessState, Signal
from aonode.engine.errors import AONodeError
from aonode.engine.message import Message

NAME = "push@1.0"
DEPTH_TAG = "Push-Depth"
DEFAULT_MAX_DEPTH = 32
# Tags only the node may set on a pushed message (compared lowercased).
NODE_TAGS = frozenset({"from-process", "pushed-for", "push-depth"})


class Router(Protocol):
    def is_local(self, pid: str | None) -> bool: ...
    def deliver(self, target: str, msg: Message) -> dict[str, Any]: ...
    def spawn(self, msg: Message) -> dict[str, Any]: ...


def _text(value: Any) -> str:
    """A tag value or Data as text: AOS may put numbers, booleans or tables there."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _image_tags(entry: dict[str, Any]) -> list[tuple[str, str]]:
    tags = entry.get("Tags") or []
    pairs = tags.items() if isinstance(tags, dict) else (
        (t.get("name"), t.get("value")) for t in tags if isinstance(t, dict))
    return [(str(name), _text(value)) for name, value in pairs
            if name and value is not None and str(name).lower() not in NODE_TAGS]


def _depth(tags: Any) -> int:
    for name, value in tags:
        if str(name).lower() == DEPTH_TAG.lower():
            try:
                return max(0, int(str(value)))
            except ValueError:
                return 0
    return 0


def _source(state: ProcessState, source: Message | None) -> tuple[str | None, int]:
    """Id and push depth of the message whose outbox this is."""
    if source is not None:
        return source.id, _depth(source.tags)
    assignment = state.scratch.get("assignment") or {}
    body = assignment.get("body") or {}
    tags = [(t.get("name"), t.get("value")) for t in body.get("Tags") or [] if isinstance(t, dict)]
    return assignment.get("message") or body.get("Id"), _depth(tags)


def _build(state: ProcessState, router: Router, entry: dict[str, Any], nonce: str,
           target: str | None, pushed_for: str | None, depth: int) -> Message:
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


def _deliver(router: Router, target: str, msg: Message) -> dict[str, Any]:
    try:
        assignment = router.deliver(target, msg)
    except AONodeError as err:
        return {"status": "error", "error": str(err)}
    return {"slot": assignment.get("slot"), "message": msg.id}


def _spawn(router: Router, msg: Message) -> dict[str, Any]:
    spawn = getattr(router, "spawn", None)
    if spawn is None:
        return {"status": "unsupported"}
    try:
        assignment = spawn(msg)
    except AONodeError as err:
        return {"status": "error", "error": str(err)}
    return {"process": assignment.get("process", msg.id), "slot": assignment.get("slot")}


def push_outbox(state: ProcessState, router: Router, source: Message | None = None) -> list[dict[str, Any]]:
    """Deliver `state.results`' Messages and Spawns through `router`; return (and record) where each went."""
    pushed_for, incoming = _source(state, source)
    depth = incoming + 1
    too_deep = depth > int(state.config.get("push_max_depth", DEFAULT_MAX_DEPTH))
    # Inside the fold at_slot is still the previous slot; the assignment names the one computed.
    slot = (state.scratch.get("assignment") or {}).get("slot", state.at_slot)
    report: list[dict[str, Any]] = []
    for index, entry in enumerate(state.results.get("Messages") or []):
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
        else:
            msg = _build(state, router, entry, f"{slot}:message:{index}", target, pushed_for, depth)
            row.update(_deliver(router, target, msg))
        report.append(row)
    for index, entry in enumerate(state.results.get("Spawns") or []):
        if not isinstance(entry, dict):
            continue
        row = {"kind": "spawn", "index": index}
        if too_deep:
            row["status"] = "depth-exceeded"
        else:
            msg = _build(state, router, entry, f"{slot}:spawn:{index}", None, pushed_for, depth)
            row.update(_spawn(router, msg))
        report.append(row)
    state.results["Pushed"] = report
    return report


@dataclass
class Push:
    """The stack form: delivers inside the fold, with `state.config["router"]` as the router."""

    name: str = NAME

    def compute(self, state: ProcessState, msg: Message | None) -> Signal:
        router = state.config.get("router")
        decoded = "Messages" in state.results or "Spawns" in state.results
        # Once per message: a later pass finds "Pushed" already in this message's results.
        if router is not None and decoded and "Pushed" not in state.results:
            push_outbox(state, router, msg)
        return Signal.OK
