"""The one contract every device implements, and the typed context devices exchange.

Modelled on HyperBEAM's `dev_*.erl`: a device says what it is with `info()` and handles any of the
four keys `init`, `compute`, `snapshot`, `normalize`, all called as `key(state, ctx) -> Signal`:

- `state` (`ProcessState`) is what a process keeps between slots: its definition, the slot it is
  at, the patched readable cache and the live wasm instance.
- `ctx` (`SlotContext`) is what one call carries and brings back: the message and its assignment,
  the pass number, the wasm input and output, the outcome (`results`), and what to snapshot and
  how. Devices hand each other data only through its named fields, so every hand-over is visible
  here rather than hidden in a dict of string keys.

A device lacking a key is skipped; control flow (stop the fold, run another pass) is the returned
`Signal`, not an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

from aonode.engine.devices.pace import Pace
from aonode.engine.jsondata import Json, JsonObject
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment
from aonode.engine.wasm import DriveStore, Instance

__all__ = [
    "KEYS",
    "Assignment",
    "Device",
    "DeviceInfo",
    "Json",
    "JsonObject",
    "Key",
    "MemoryImage",
    "PendingWrite",
    "ProcessConfig",
    "ProcessState",
    "Runner",
    "Signal",
    "SlotContext",
    "SnapshotMode",
    "WasmInput",
    "call_key",
]

KEYS = ("init", "compute", "snapshot", "normalize")

WasmInput: TypeAlias = tuple[str, str]  # (message JSON, environment JSON) as AOS `handle` reads them


class Signal(enum.Enum):
    OK = "ok"
    SKIP = "skip"  # stop this fold; the message's result is whatever is in ctx.results
    PASS = "pass"  # run the stack again from the first device with ctx.pass_ + 1


class SnapshotMode(enum.Enum):
    """How the `snapshot` key captures the state."""

    NAMED = "named"  # named by its memory's sha256 here; bytes in ctx.snapshot, to be stored
    BACKGROUND = "background"  # a copy here; named and handed to ctx.on_snapshot on another thread
    FORK = "fork"  # an unnamed copy for a throwaway instance (a dry-run); never stored


class MemoryImage(Protocol):
    """A captured memory as the execution device hands it back (engine.wasm's Snapshot)."""

    @property
    def memory_sha256(self) -> str: ...

    def to_bytes(self) -> bytes: ...

    @property
    def new_chunks(self) -> Mapping[str, bytes]: ...


class PendingWrite(Protocol):
    """A snapshot still being named and stored in the background."""

    def wait(self) -> None: ...


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself (`/~meta@1.0/info` lists these names).

    `keys` are the keys it handles; `stackable` says it may be named in an Execution-Stack.
    """

    name: str  # e.g. "json-iface@1.0"
    keys: tuple[str, ...]
    stackable: bool = True
    about: str = ""

    @property
    def version(self) -> str:
        return self.name.partition("@")[2]


@dataclass(frozen=True)
class ProcessConfig:
    """Node-wide settings the devices of every process read."""

    # WeaveDrive's Arweave data: the node's DriveStore (local dir + gateway), or a bare fixtures dir
    weavedrive_dir: Path | DriveStore | None = None
    push_max_depth: int = 32  # hops a chain of pushed messages may take
    push_max_per_slot: int = 64  # messages and spawns one slot may push (the rest are reported, not sent)
    self_push_rate: float = 5.0  # messages a process may push to itself per second, on average ...
    self_push_burst: int = 64  # ... and at once: a message that sends itself two more cannot double forever


@dataclass
class SlotContext:
    """Everything one call of a key carries between devices and back to its caller.

    compute: `message` and its `assignment` in, `results` out (the stored outcome of the slot);
    json-iface fills `wasm_input` on pass 1, wasm64 answers in `wasm_output`, json-iface decodes it
    on pass 2. snapshot: `snapshot_mode` says how; the bytes come back in `snapshot` (NAMED, FORK)
    or `pending` (BACKGROUND, stored by `on_snapshot`). normalize: `snapshot` is what to restore.
    """

    message: Message | None = None
    assignment: Assignment | None = None
    pass_: int = 1
    results: JsonObject = field(default_factory=dict)
    wasm_input: WasmInput | None = None
    wasm_output: str | None = None
    snapshot_mode: SnapshotMode = SnapshotMode.NAMED
    snapshot: bytes | None = None
    snapshot_name: str | None = None  # what the store indexed `snapshot` under: restore checks it
    chunks: Callable[[Iterable[str]], Mapping[str, bytes]] | None = None  # a chunked snapshot's chunks
    on_snapshot: Callable[[MemoryImage], None] | None = None
    pending: PendingWrite | None = None

    @property
    def slot(self) -> int | None:
        return None if self.assignment is None else self.assignment.slot


class Runner(Protocol):
    """Something that handles all four keys (a stack; the process device)."""

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal: ...
    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal: ...
    def snapshot(self, state: ProcessState, ctx: SlotContext) -> Signal: ...
    def normalize(self, state: ProcessState, ctx: SlotContext) -> Signal: ...


@dataclass
class ProcessState:
    """What the devices of one process keep between slots.

    `cache` is the patched, readable state (`/now/cache/...`); `instance` is the live wasm instance
    (owned by wasm64@1.0) and `memory_sha256` names the memory it holds after `at_slot`;
    `snapshot_slot` is the slot of the newest snapshot stored from this state. `stale`: the memory
    is past `at_slot` or its last slot's result (finishing a slot failed); it must be restored before use.
    """

    process_id: str
    process: Message
    at_slot: int = -1
    cache: JsonObject = field(default_factory=dict)
    instance: Instance | None = None
    memory_sha256: str | None = None
    snapshot_slot: int | None = None
    stale: bool = False
    config: ProcessConfig = field(default_factory=ProcessConfig)
    stack: Runner | None = None  # the execution stack the definition names
    pace: Pace | None = None  # how fast its backlogs went with wasm ahead and without (devices/pace.py)


class Device(Protocol):
    """Every device: `info()`, plus any of the KEYS with the `(state, ctx) -> Signal` signature."""

    def info(self) -> DeviceInfo: ...


Key: TypeAlias = Callable[[ProcessState, SlotContext], "Signal | None"]


def call_key(device: object, key: str, state: ProcessState, ctx: SlotContext) -> Signal | None:
    """Call `key` on `device` if it has it; None means the device has no such key."""
    fn: Key | None = getattr(device, key, None)
    if fn is None:
        return None
    signal = fn(state, ctx)
    return signal if isinstance(signal, Signal) else Signal.OK
