"""A wasmtime instance of an image in one flavour: its store, its host, the helper module and every
import linked, then its memory either started fresh or filled from a snapshot."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import wasmtime

from aonode.engine.errors import MemoryLimitExceeded, ModuleError
from aonode.engine.wasm.aos_abi import AosAbi
from aonode.engine.wasm.budget import Budget
from aonode.engine.wasm.chunked import Restorable
from aonode.engine.wasm.drive_store import DriveStore
from aonode.engine.wasm.fastcall import RawFunc, define_raw
from aonode.engine.wasm.flavors import Flavor
from aonode.engine.wasm.helper import Helper, HelperPlan, plan_helper
from aonode.engine.wasm.host import Host, HostState, check_imports, missing_imports
from aonode.engine.wasm.limits import Limits
from aonode.engine.wasm.runtime import Image, Runtime
from aonode.engine.wasm.snapshot import zero_from
from aonode.engine.wasm.transform import INTERRUPT_EXPORT

# Host functions given to wasm as they are: {import module: {name: function}}.
ExtraImports = dict[str, dict[str, Callable[..., object]]]
Export: TypeAlias = (
    wasmtime.Func | wasmtime.Table | wasmtime.Memory | wasmtime.SharedMemory | wasmtime.Global | wasmtime.Tag
)


@dataclass(frozen=True)
class Setup:
    """What every instantiation of one Instance shares."""

    runtime: Runtime
    image: Image
    limits: Limits
    weavedrive_dir: Path | DriveStore | None = None  # WeaveDrive's data (a bare directory: fixtures)
    extra_imports: ExtraImports = field(default_factory=dict)
    fast_imports: bool = True  # serve the hot emscripten imports from the helper module


@dataclass
class Linked:
    store: wasmtime.Store
    host: Host
    instance: wasmtime.Instance
    exports: dict[str, Export]
    budget: Budget
    abi: AosAbi
    callbacks: list[object]  # the raw host callbacks must outlive the instance

    @property
    def memory(self) -> wasmtime.Memory | None:
        return self.host.memory


def link(setup: Setup, flavor: Flavor) -> Linked:
    """Instantiate the image's build for `flavor` (memory as the image declares it; nothing run yet)."""
    runtime, image = setup.runtime, setup.image
    engine = runtime.engine_for(flavor)
    module = runtime.module_for(image, flavor)
    store = wasmtime.Store(engine)
    if setup.limits.memory is not None:
        store.set_limits(memory_size=setup.limits.memory)
    budget = Budget(store, flavor)
    if flavor != Flavor.VARIANT:
        budget.set(None)
    host = Host(store, image.memory64, setup.weavedrive_dir, setup.limits.memory)
    host.can_suspend = flavor != Flavor.VARIANT
    check_imports(module, host, setup.extra_imports)
    linker = wasmtime.Linker(engine)
    callbacks: list[object] = []
    plan = _helper_plan(image) if setup.fast_imports else None
    helper = Helper(runtime, store, plan, image.memory64, flavor, image.memory_index64(flavor)) if plan else None
    if helper:
        helper.define(linker, store)
    for imp in module.imports:
        extra = setup.extra_imports.get(imp.module, {}).get(imp.name)
        if helper and imp.module == "env" and imp.name in helper.plan.serves:
            continue
        if extra is not None:
            linker.define_func(imp.module, imp.name, imp.type, extra)
        else:
            fn = host.resolve(imp.module, imp.name, imp.type)
            if fn is None:  # check_imports above has refused such an image already
                raise ModuleError(f"no host function for import {imp.module}.{imp.name}")
            define_raw(linker, imp.module, imp.name, imp.type, fn, callbacks)
    try:
        instance = linker.instantiate(store, module)
    except wasmtime.WasmtimeError as err:
        if setup.limits.memory is not None and "memory" in str(err).lower():
            raise MemoryLimitExceeded(f"image needs more memory than the limit: {err}") from err
        raise ModuleError(f"cannot instantiate image: {err}") from err
    exports = dict(instance.exports(store).items())
    if flavor == Flavor.VARIANT:  # the variant's loops stop when byte 0 of this memory is set
        flag_memory = exports[INTERRUPT_EXPORT]
        assert isinstance(flag_memory, wasmtime.Memory)
        budget.interrupt = (ctypes.c_ubyte * 1).from_address(ctypes.addressof(flag_memory.data_ptr(store).contents))
    if helper:
        helper.fill(store, exports)
    # One boundary crossing per message where nothing can suspend (see AosAbi._run_direct).
    call_handle = (
        RawFunc(store, helper.exports["call_handle"])
        if helper and helper.plan.call_handle and flavor == Flavor.VARIANT
        else None
    )
    host.bind(exports)
    return Linked(store, host, instance, exports, budget, AosAbi(host, call_handle), callbacks)


def load_snapshot(
    linked: Linked, image: Image, flavor: Flavor, snapshot: Restorable, view: Callable[[], memoryview]
) -> None:
    """Grow the fresh memory to the snapshot's size and write it in (`view`: the live memory)."""
    memory = linked.memory
    assert memory is not None
    current = memory.data_len(linked.store)
    if snapshot.memory_size > current:
        pages = (snapshot.memory_size - current) // 65536
        try:
            memory.grow(linked.store, pages)
        except wasmtime.WasmtimeError as err:
            raise MemoryLimitExceeded(f"snapshot needs {snapshot.memory_size} bytes: {err}") from err
    elif snapshot.memory_size < current:
        raise ModuleError("snapshot is smaller than the image's initial memory")
    key = (image.sha256, flavor)
    if key not in _FRESH_ZERO_FROM:  # where a just-instantiated memory turns all zero (read once)
        _FRESH_ZERO_FROM[key] = zero_from(linked.host.base(), memory.data_len(linked.store))
    snapshot.write_into(view(), _FRESH_ZERO_FROM[key])
    linked.host.state = HostState.from_dict(snapshot.host_state)


_PLANS: dict[str, HelperPlan | None] = {}
_FRESH_ZERO_FROM: dict[tuple[str, Flavor], int] = {}


def _helper_plan(image: Image) -> HelperPlan | None:
    if image.sha256 not in _PLANS:
        _PLANS[image.sha256] = plan_helper(image.module, image.memory64)
    return _PLANS[image.sha256]


def never_runs(image: Image) -> str | None:
    """Why no message could ever run on `image` (None: it may): every process message calls its
    `handle` export, and instantiating it needs every import it declares."""
    if "handle" not in image.export_names:
        return "it exports no `handle` function (an AOS image exports handle(msg, env))"
    missing = missing_imports(image.module, Host(wasmtime.Store(), image.memory64), None)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        return f"it imports what this node does not provide: {shown}"
    return None
