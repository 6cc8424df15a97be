"""Process definitions as HyperBEAM writes them, mapped onto this node's AOS stack.

aoconnect's mainnet spawn and HyperBEAM peers name the legacy AOS execution as
`execution-device: genesis-wasm@1.0`, or as `stack@1.0` with `device-stack: [genesis-wasm@1.0, patch@1.0]`.
Both mean "run the AOS image with the legacy JSON interface and apply patch messages", which is what
the default stack here (json-iface, wasm64, multipass, patch) does: where the node picks a process's
devices it reads the definition through `as_aos_definition`, which leaves those tags out. The stored
definition keeps every tag it was signed with (the process sees them, as a legacy CU behind
genesis-wasm does), so it checks against its signed item like any message. The other keys: `authority` (AOS trusts
messages from each comma-separated address), `variant` and `data-protocol` (the process sees them in
`ao.env.Process.Tags`), `patch-from` (patch@1.0 reads it). `scheduler` names the node that orders the
process: a definition naming another scheduler is not this node's to spawn (`check_scheduler`).
"""

from __future__ import annotations

import json

from aonode.engine.errors import BadInput
from aonode.engine.message import Message

GENESIS_WASM = "genesis-wasm@1.0"
_STACK_PARTS = {GENESIS_WASM, "patch@1.0"}


def _names(raw: str) -> list[str]:
    text = raw.strip()
    if text.startswith("["):
        try:
            return [str(n).strip().lower() for n in json.loads(text)]
        except json.JSONDecodeError:
            pass
    return [n.strip().strip('"').lower() for n in text.strip("[]").split(",") if n.strip()]


def as_aos_definition(msg: Message) -> Message:
    """`msg` as far as its devices go: genesis-wasm execution tags removed (they name the AOS stack
    this node runs). Only read through it; never store it (it no longer matches the signed tags)."""
    execution = (msg.tag("Execution-Device") or "").strip().lower()
    stack = _names(msg.tag("Device-Stack") or msg.tag("Execution-Stack") or "")
    genesis_stack = bool(stack) and GENESIS_WASM in stack and set(stack) <= _STACK_PARTS
    drop: set[str] = set()
    if execution == GENESIS_WASM or (execution == "stack@1.0" and genesis_stack):
        drop.add("execution-device")
    if genesis_stack:
        drop |= {"device-stack", "execution-stack"}
    if not drop:
        return msg
    return msg.replace(tags=[(k, v) for k, v in msg.tags if k.lower() not in drop])


def check_scheduler(msg: Message, address: str) -> None:
    """Refuse a definition whose `scheduler` names another node: its messages belong there."""
    named = [v.strip() for v in (msg.tag("Scheduler") or "").split(",") if v.strip()]
    if named and address not in named:
        raise BadInput(
            f"the process names scheduler {', '.join(named)}; this node schedules as {address}: "
            f"spawn it there, or name this node's address"
        )
