"""wasm64@1.0: owns the live wasm instance of a process and runs `handle` on pass 1.

Everything about linear memory stays behind `aonode.engine.wasm`; this device only decides when an
instance is created (init), restored (normalize), run (compute) and captured (snapshot), and turns a
failed message into an error result so the process keeps going with its state from before it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Mapping

import zstandard

from aonode.engine.devices.base import DeviceInfo, ProcessState, Signal, SlotContext, SnapshotMode
from aonode.engine.devices.json_iface import empty_results, module_id
from aonode.engine.errors import BadInput, DataUnavailable, WasmError
from aonode.engine.message import Message
from aonode.engine.wasm import Image, Instance, Limits, Runtime, Snapshot, parse_size
from aonode.engine.wasm.chunked import SnapshotDamaged, StoredSnapshot, is_manifest

INFO = DeviceInfo(
    "wasm64@1.0",
    ("init", "compute", "snapshot", "normalize"),
    about="the live wasm instance: runs `handle`, captures and restores memory",
)

DEFAULT_MEMORY_LIMIT = 4 * 1024**3
DEFAULT_COMPUTE_LIMIT = 9_000_000_000_000
# Node policy (issue 10 item 5): the most wasm instructions (fuel) one message may run on this node,
# whatever its process asks for: ~2e10 ends in a few seconds here, where the network's 9e12 default
# let one `while true do end` hold a compute worker for many minutes. AONODE_MAX_COMPUTE (or
# `aonode serve --max-compute`) sets it; a definition asking for more is refused at spawn.
MAX_COMPUTE_ENV = "AONODE_MAX_COMPUTE"
DEFAULT_MAX_COMPUTE = 20_000_000_000


def max_compute() -> int:
    """The node's cap on per-message compute (fuel), from AONODE_MAX_COMPUTE or the default."""
    raw = os.environ.get(MAX_COMPUTE_ENV, "").strip()
    return int(raw) if raw.isdecimal() and int(raw) > 0 else DEFAULT_MAX_COMPUTE


def limits_for(process: Message) -> Limits:
    """The process's limits, its compute capped by the node's policy (a process spawned before the
    cap was lowered keeps running, under the cap)."""
    memory = process.tag("Memory-Limit")
    compute = process.tag("Compute-Limit")
    try:
        return Limits(
            memory=parse_size(memory) if memory else DEFAULT_MEMORY_LIMIT,
            fuel=min(int(compute) if compute else DEFAULT_COMPUTE_LIMIT, max_compute()),
        )
    except ValueError as err:
        raise BadInput(f"bad Memory-Limit or Compute-Limit on the process: {err}") from err


def check_compute_limit(process: Message) -> None:
    """BadInput when a definition asks for more compute per message than this node allows."""
    compute = (process.tag("Compute-Limit") or "").strip()
    if compute.startswith("-") and compute[1:].isdecimal():  # (wasmtime would take -1 as 2**64 - 1)
        raise BadInput(f"Compute-Limit {compute} is negative; ask for at most {max_compute()} per message")
    if compute.isdecimal() and len(compute) <= 30 and int(compute) > max_compute():
        raise BadInput(
            f"Compute-Limit {compute} is above this node's cap of {max_compute()} per message "
            f"({MAX_COMPUTE_ENV}); ask for at most that"
        )


def loaded(
    blob: bytes, name: str | None, chunks: Callable[[Iterable[str]], Mapping[str, bytes]] | None
) -> Snapshot | StoredSnapshot:
    """A stored snapshot ready to restore, checked against the `name` it was stored under (a chunked
    one chunk by chunk as it is written into memory); SnapshotDamaged when it does not match."""
    if is_manifest(blob):
        if chunks is None or name is None:
            raise BadInput("a chunked snapshot needs its name and its store's chunks to restore")
        return StoredSnapshot.load(blob, name, chunks)
    try:
        snap = Snapshot.from_bytes(blob)
        if name is not None and hashlib.sha256(snap.raw()).hexdigest() != name:
            raise SnapshotDamaged(f"snapshot {name[:16]}… does not restore to memory of that sha256")
    except (ValueError, KeyError, struct.error, zstandard.ZstdError) as err:
        raise SnapshotDamaged(f"snapshot {(name or '')[:16]}… is damaged: {err}") from err
    return snap


def whole(
    blob: bytes, name: str, chunks: Callable[[Iterable[str]], Mapping[str, bytes]], memory_sha256: str | None = None
) -> bytes:
    """A stored snapshot in the portable whole-memory form (AOSNAP1) that another node or `aonode eval
    --snapshot-in` restores; a chunked one is verified and assembled from its chunks."""
    if not is_manifest(blob):
        return blob
    snap = loaded(blob, name, chunks)
    return Snapshot.from_memory(snap.raw(), snap.host_state, sha256=memory_sha256).to_bytes()


class WasmDevice:
    name = INFO.name

    def __init__(self, runtime: Runtime, load_image: Callable[[str], Image]) -> None:
        self.runtime = runtime
        self.load_image = load_image  # module ref (name or id) -> compiled Image

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def _image(self, state: ProcessState) -> Image:
        ref = module_id(state.process)
        if not ref:
            raise BadInput("the process names no image: set a Module tag (e.g. aos2_0_6)")
        return self.load_image(ref)

    @staticmethod
    def _instance(state: ProcessState) -> Instance:
        if state.instance is None:
            raise BadInput(f"{state.process_id} has no live instance (init or normalize it first)")
        return state.instance

    def init(self, state: ProcessState, ctx: SlotContext) -> Signal:
        state.instance = Instance(
            self.runtime,
            self._image(state),
            limits=limits_for(state.process),
            weavedrive_dir=state.config.weavedrive_dir,
        )
        return Signal.OK

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        if ctx.pass_ != 1:
            return Signal.OK
        if ctx.wasm_input is None:
            raise BadInput("wasm64@1.0 needs an interface device (json-iface@1.0) before it in the stack")
        (msg_json, env_json), ctx.wasm_input = ctx.wasm_input, None
        try:
            ctx.wasm_output = self._instance(state).handle(msg_json, env_json)
        except DataUnavailable:
            raise  # not an answer: the slot stays uncomputed and is retried (the state is as before it)
        except WasmError as err:
            ctx.results = empty_results(f"{type(err).__name__}: {err}")
            return Signal.SKIP
        state.memory_sha256 = None  # known again at the next snapshot
        return Signal.OK

    def snapshot(self, state: ProcessState, ctx: SlotContext) -> Signal:
        instance = self._instance(state)
        if ctx.snapshot_mode is SnapshotMode.FORK:
            ctx.snapshot = instance.fork().to_bytes()
        elif ctx.snapshot_mode is SnapshotMode.BACKGROUND:
            ctx.pending = instance.snapshot_chunks(ctx.on_snapshot)
            state.memory_sha256 = None  # named when the background thread is done
        else:
            taken = instance.snapshot_chunks(ctx.on_snapshot).result()  # stored when this returns
            state.memory_sha256 = taken.memory_sha256
            ctx.snapshot = taken.to_bytes()
        return Signal.OK

    def normalize(self, state: ProcessState, ctx: SlotContext) -> Signal:
        if ctx.snapshot is None:
            raise BadInput("wasm64@1.0 normalize needs a snapshot to restore")
        snap = loaded(ctx.snapshot, ctx.snapshot_name, ctx.chunks)
        ctx.snapshot = None
        state.instance = Instance.restore(
            self.runtime,
            self._image(state),
            snap,
            limits=limits_for(state.process),
            weavedrive_dir=state.config.weavedrive_dir,
        )
        state.memory_sha256 = ctx.snapshot_name
        return Signal.OK
