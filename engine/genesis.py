"""Process definitions as HyperBEAM writes them, mapped onto this node's AOS stack.

aoconnect's mainnet spawn and HyperBEAM peers name the legacy AOS execution as
`execution-device: genesis-wasm@1.0`, or as `stack@1.0` with `device-stack: [genesis-wasm@1.0, patch@1.0]`.
Both mean "run the AOS image with the legacy JSON interface and apply patch messages", which is what
the default stack here (json-iface, wasm64, multipass, patch) does, so those tags are dropped and the
definition keeps its id and signature. The other keys (`module`, `scheduler`, `authority`,
`variant`, `data-protocol`, `patch-from`) stay as tags the devices read.
"""
from __future__ import annotations

import json

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
    """`msg` with genesis-wasm execution tags removed (they name the AOS stack this node runs)."""
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
