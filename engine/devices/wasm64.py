"""wasm64@1.0: owns the live wasm instance of a process and runs `handle` on pass 1.

Everything about linear memory stays behind `aonode.engine.wasm`; this device only decides when an
instance is created (init), restored (normalize), run (compute) and captured (snapshot), and turns a
failed message into an error result so the process keeps going with its state from before it.
"""
from __future__ import annotations

from typing import Any, Callable

from aonode.engine.devices.base import ProcessState, Signal
from aonode.engine.devices.json_iface import empty_results, module_id
from aonode.engine.errors import BadInput, WasmError
from aonode.engine.message import Message
from aonode.engine.wasm.instance import Instance, Limits, parse_size
from aonode.engine.wasm.runtime import Runtime
from aonode.engine.wasm.snapshot import Snapshot

DEFAULT_MEMORY_LIMIT = 4 * 1024**3
DEFAULT_COMPUTE_LIMIT = 9_000_000_000_000


def limits_for(process: Message) -> Limits:
    memory = process.tag("Memory-Limit")
    compute = process.tag("Compute-Limit")
    try:
        return Limits(
            memory=parse_size(memory) if memory else DEFAULT_MEMORY_LIMIT,
            fuel=int(compute) if compute else DEFAULT_COMPUTE_LIMIT,
        )
    except ValueError as err:
        raise BadInput(f"bad Memory-Limit or Compute-Limit on the process: {err}") from err


class WasmDevice:
    name = "wasm64@1.0"

    def __init__(self, runtime: Runtime, load_image: Callable[[str], Any]) -> None:
        self.runtime = runtime
        self.load_image = load_image  # module ref (name or id) -> compiled Image

    def _image(self, state: ProcessState) -> Any:
        ref = module_id(state.process)
        if not ref:
            raise BadInput("the process names no image: set a Module tag (e.g. aos2_0_6)")
        return self.load_image(ref)

    def init(self, state: ProcessState, msg: Message | None) -> Signal:
        state.instance = Instance(self.runtime, self._image(state), limits=limits_for(state.process),
                                  weavedrive_dir=state.config.get("weavedrive_dir"))
        return Signal.OK

    def compute(self, state: ProcessState, msg: Message) -> Signal:
        if state.pass_ != 1:
            return Signal.OK
        msg_json, env_json = state.scratch.pop("wasm-input")
        state.scratch["wasm-calls"] = state.scratch.get("wasm-calls", 0) + 1
        try:
            state.scratch["wasm-output"] = state.instance.handle(msg_json, env_json)
        except WasmError as err:
            state.results = empty_results(f"{type(err).__name__}: {err}")
            return Signal.SKIP
        state.memory_sha256 = None  # known again at the next snapshot
        return Signal.OK

    def snapshot(self, state: ProcessState, msg: Message | None) -> Signal:
        if state.scratch.pop("snapshot-for-fork", False):
            state.scratch["snapshot"] = state.instance.fork().to_bytes()
            return Signal.OK
        store = state.scratch.pop("snapshot-in-background", None)
        if store is not None:
            state.scratch["snapshot-pending"] = state.instance.snapshot_in_background(store)
            state.memory_sha256 = None  # named when the background hash is done
            return Signal.OK
        snap = state.instance.snapshot()
        state.memory_sha256 = snap.memory_sha256
        state.scratch["snapshot"] = snap.to_bytes()
        return Signal.OK

    def normalize(self, state: ProcessState, msg: Message | None) -> Signal:
        snap = Snapshot.from_bytes(state.scratch.pop("snapshot"))
        state.instance = Instance.restore(self.runtime, self._image(state), snap, limits=limits_for(state.process),
                                          weavedrive_dir=state.config.get("weavedrive_dir"))
        state.memory_sha256 = snap.memory_sha256
        return Signal.OK
