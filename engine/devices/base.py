"""The one interface every device implements, and the state they pass along.

A device is a small object with a `name` and any of the four keys `init`, `compute`, `snapshot`,
`normalize`. The stack calls the same key on each device in order; a device that lacks the key is
skipped. Devices mutate the `ProcessState` they are handed and return a `Signal` so control flow
(skip the rest, run another pass) is explicit instead of hidden in exceptions.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from aonode.engine.message import Message

KEYS = ("init", "compute", "snapshot", "normalize")


class Signal(enum.Enum):
    OK = "ok"
    SKIP = "skip"  # stop this fold; the message's result is whatever is in state.results
    PASS = "pass"  # run the stack again from the first device with state.pass_ + 1


@dataclass
class ProcessState:
    """What the devices of one process share between slots.

    `cache` is the patched, readable state (`/now/cache/...`); `results` is the outcome of the last
    message; `instance` is the live wasm instance (owned by wasm64@1.0) and `memory_sha256` names
    the memory it holds after `at_slot`.
    """

    process_id: str
    process: Message
    at_slot: int = -1
    pass_: int = 1
    results: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    instance: Any = None
    memory_sha256: str | None = None
    scratch: dict[str, Any] = field(default_factory=dict)  # per-message values between devices
    config: dict[str, Any] = field(default_factory=dict)  # node-wide settings (data dir, limits)


class Device(Protocol):
    name: str


def call_key(device: object, key: str, state: ProcessState, msg: Message | None) -> Signal | None:
    """Call `key` on `device` if it has it; None means the device has no such key."""
    fn = getattr(device, key, None)
    if fn is None:
        return None
    signal = fn(state, msg)
    return signal if isinstance(signal, Signal) else Signal.OK
