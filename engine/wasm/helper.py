"""A small wasm module of our own that serves the hot emscripten imports without entering Python.

Lua errors travel as longjmps: every message makes several `invoke_*` calls and usually one
`_emscripten_throw_longjmp`. Served from Python, each is a boundary crossing and each longjmp a host
trap with a captured backtrace. Here `invoke_<sig>` calls the image's `dynCall_<sig>` inside a
`try_table`, and the longjmp is a wasm exception, so an ordinary message never leaves wasm.

The helper is instantiated before the image (the image imports from it), so it reaches the image's
exports through a table we fill right after the image is instantiated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import wasmtime

from aonode.engine.wasm.flavors import Flavor
from aonode.engine.wasm.runtime import Runtime

SLOT_STACK_GET, SLOT_STACK_SET, SLOT_SET_THREW = 0, 1, 2
ZERO = {"i32": "(i32.const 0)", "i64": "(i64.const 0)", "f32": "(f32.const 0)", "f64": "(f64.const 0)"}
LATE = "late:"  # table entries served by the late module rather than the image
CXX_IMPORTS = {"__cxa_throw", "__resumeException", "__cxa_rethrow"}


@dataclass(frozen=True)
class HelperPlan:
    """Which imports the helper serves, and which image exports fill its table (in slot order)."""

    wat: str
    serves: tuple[str, ...]
    table_exports: tuple[str, ...]
    call_handle: bool = False  # exports `call_handle(msg, env, sp)`: AOS `handle` in one crossing


def ptr_kind(memory64: bool) -> str:
    return "i64" if memory64 else "i32"


def late_wat(memory64: bool, index64: bool | None = None) -> str:
    """Instantiated after the image: functions that need the image's memory. `index64` is the memory's
    address width when it differs from the pointers' (a lowered fast variant: 64-bit pointers, 32-bit memory)."""
    ptr = ptr_kind(memory64)
    index = ptr_kind(memory64 if index64 is None else index64)
    args = [f"(local.get {i})" if index == ptr else f"(i32.wrap_i64 (local.get {i}))" for i in range(3)]
    return f"""(module
  (import "image" "memory" (memory {index} 0))
  (func (export "memcpy") (param {ptr} {ptr} {ptr})
    (memory.copy {" ".join(args)})))"""


def _kinds(types) -> list[str]:
    return [str(t) for t in types]


def plan_helper(module: wasmtime.Module, memory64: bool) -> HelperPlan | None:
    """A helper for this image, or None when Python must serve (C++ exceptions, no dynCall_*)."""
    imports = {i.name: i.type for i in module.imports if i.module == "env"}
    exports = {e.name: e.type for e in module.exports}
    if set(imports) & CXX_IMPORTS:
        return None
    if not {"emscripten_stack_get_current", "_emscripten_stack_restore", "setThrew"} <= set(exports):
        return None
    invokes = sorted(n for n in imports if n.startswith("invoke_"))
    if any("dynCall_" + n[len("invoke_") :] not in exports for n in invokes):
        return None
    copy_type = imports.get("_emscripten_memcpy_js")
    memcpy = (
        copy_type is not None
        and "memory" in exports
        and _kinds(copy_type.params) == [ptr_kind(memory64)] * 3
        and not copy_type.results
    )
    if not invokes and "_emscripten_throw_longjmp" not in imports and not memcpy:
        return None
    ptr = ptr_kind(memory64)
    table_exports = ["emscripten_stack_get_current", "_emscripten_stack_restore", "setThrew"]
    types = [
        f"(type $sp_get (func (result {ptr})))",
        f"(type $sp_set (func (param {ptr})))",
        f"(type $threw (func (param {ptr} i32)))",
    ]
    funcs = []
    for n, name in enumerate(invokes):
        inv, dyn = imports[name], exports["dynCall_" + name[len("invoke_") :]]
        inv_params, dyn_params = _kinds(inv.params), _kinds(dyn.params)
        results = _kinds(inv.results)
        if len(results) > 1 or inv_params[1:] != dyn_params[1:] or results != _kinds(dyn.results):
            return None
        slot = len(table_exports)
        table_exports.append("dynCall_" + name[len("invoke_") :])
        res = f" (result {results[0]})" if results else ""
        types.append(f"(type $dyn{n} (func (param {' '.join(dyn_params)}){res}))")
        index = "(local.get 0)"
        if inv_params[0] != dyn_params[0]:
            index = f"({dyn_params[0]}.wrap_{inv_params[0]} (local.get 0))"
        gets = " ".join(f"(local.get {i})" for i in range(1, len(inv_params)))
        ok = f"(return (call_indirect $fns (type $dyn{n}) {index} {gets} (i32.const {slot})))"
        funcs.append(f'''
  (func (export "{name}") (param {" ".join(inv_params)}){res}
    (local $sp {ptr})
    (local.set $sp (call_indirect $fns (type $sp_get) (i32.const {SLOT_STACK_GET})))
    (block $caught
      (try_table (catch $longjmp $caught) {ok}))
    (call_indirect $fns (type $sp_set) (local.get $sp) (i32.const {SLOT_STACK_SET}))
    (call_indirect $fns (type $threw) ({ptr}.const 1) (i32.const 0) (i32.const {SLOT_SET_THREW}))
    {ZERO[results[0]] if results else ""})''')
    if memcpy:
        slot = len(table_exports)
        table_exports.append(LATE + "memcpy")
        types.append(f"(type $copy (func (param {ptr} {ptr} {ptr})))")
        funcs.append(f"""
  (func (export "_emscripten_memcpy_js") (param {ptr} {ptr} {ptr})
    (call_indirect $fns (type $copy) (local.get 0) (local.get 1) (local.get 2) (i32.const {slot})))""")
    handle = exports.get("handle")
    call_handle = handle is not None and _kinds(handle.params) == [ptr, ptr] and _kinds(handle.results) == [ptr]
    if call_handle:
        slot = len(table_exports)
        table_exports.append("handle")
        types.append(f"(type $handle (func (param {ptr} {ptr}) (result {ptr})))")
        # The inputs were written below the stack pointer as two _emscripten_stack_alloc calls would
        # place them; the stack pointer is set past them for the call and put back after.
        funcs.append(f"""
  (func (export "call_handle") (param {ptr} {ptr} {ptr}) (result {ptr})
    (local $result {ptr})
    (call_indirect $fns (type $sp_set) (local.get 1) (i32.const {SLOT_STACK_SET}))
    (local.set $result (call_indirect $fns (type $handle) (local.get 0) (local.get 1) (i32.const {slot})))
    (call_indirect $fns (type $sp_set) (local.get 2) (i32.const {SLOT_STACK_SET}))
    (local.get $result))""")
    serves = tuple(invokes) + (("_emscripten_throw_longjmp",) if "_emscripten_throw_longjmp" in imports else ())
    serves += ("_emscripten_memcpy_js",) if memcpy else ()
    wat = "\n".join(
        [
            "(module",
            *["  " + t for t in types],
            f'  (import "host" "fns" (table $fns {len(table_exports)} funcref))',
            "  (tag $longjmp)",
            '  (func (export "_emscripten_throw_longjmp") (throw $longjmp))',
            *funcs,
            ")",
        ]
    )
    return HelperPlan(wat, serves, tuple(table_exports), call_handle)


class Helper:
    """One helper instance per image instance."""

    def __init__(
        self,
        runtime: Runtime,
        store: wasmtime.Store,
        plan: HelperPlan,
        memory64: bool,
        flavor: Flavor,
        index64: bool | None = None,
    ) -> None:
        self.plan = plan
        self.runtime = runtime
        self.memory64 = memory64
        self.index64 = memory64 if index64 is None else index64
        self.flavor = flavor
        size = len(plan.table_exports)
        table_type = wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(size, size))
        self.table = wasmtime.Table(store, table_type, None)
        module = runtime.compile_wat(plan.wat, flavor)
        self.instance = wasmtime.Instance(store, module, [self.table])
        self.exports = self.instance.exports(store)

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        for name in self.plan.serves:
            linker.define(store, "env", name, self.exports[name])

    def fill(self, store: wasmtime.Store, image_exports: dict) -> None:
        late: Any = None  # the late instance's exports (wasmtime's), when the table needs any
        if any(name.startswith(LATE) for name in self.plan.table_exports):
            module = self.runtime.compile_wat(late_wat(self.memory64, self.index64), self.flavor)
            late = wasmtime.Instance(store, module, [image_exports["memory"]]).exports(store)
        for slot, name in enumerate(self.plan.table_exports):
            func = late[name[len(LATE) :]] if name.startswith(LATE) else image_exports[name]
            self.table.set(store, slot, func)
