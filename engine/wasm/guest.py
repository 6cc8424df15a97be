"""Typed access to an instance's linear memory and exports, shared by the host's import groups."""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import wasmtime
from wasmtime import _bindings as ffi

from aonode.engine.wasm.fastcall import RawFunc

# The memory's address and a copy into it through prototypes that keep the GIL (ctypes.PYFUNCTYPE):
# both take a microsecond, and a call that lets go of the GIL (wasmtime-py's `data_ptr`, ctypes'
# own `memmove`) may not get it back until another Python thread is done with it, so a message run
# on the wasm-ahead thread (engine/devices/wasm_ahead.py) would wait for the compute thread's whole
# post-processing before its wasm call started. Only the call into wasm itself lets go of the GIL.
_memory_data = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_memory_data", ffi.dll))
_memmove = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)(
    ctypes._memmove_addr  # type: ignore[attr-defined]
)


def numeric(ty: wasmtime.FuncType) -> bool:
    kinds = [str(t) for t in list(ty.params) + list(ty.results)]
    return len(ty.results) <= 1 and all(k in ("i32", "i64", "f32", "f64") for k in kinds)


def zero_results(ty: wasmtime.FuncType) -> Any:
    """What a void-ish return looks like for this signature (0, 0.0, or None)."""
    results = list(ty.results)
    if not results:
        return None
    values = [0.0 if str(r) in ("f32", "f64") else 0 for r in results]
    return values[0] if len(values) == 1 else values


class Guest:
    """One instance seen from the host: memory reads and writes, exports called the fast way."""

    def __init__(self, store: wasmtime.Store, memory64: bool) -> None:
        self.store = store
        self.memory64 = memory64
        self.ptr_size = 8 if memory64 else 4
        self.mask = 0xFFFFFFFFFFFFFFFF if memory64 else 0xFFFFFFFF
        self.memory: wasmtime.Memory | None = None
        self._memory_ref = 0  # the address of the memory's wasmtime_memory_t, for _memory_data
        self._store_context = ctypes.cast(store._context(), ctypes.c_void_p).value
        self.exports: dict[str, Any] = {}
        self.fn: dict[str, RawFunc] = {}

    def bind(self, exports: dict[str, Any]) -> None:
        self.exports = exports
        self.fn = {
            name: RawFunc(self.store, f)
            for name, f in exports.items()
            if isinstance(f, wasmtime.Func) and numeric(f.type(self.store))
        }
        mem = exports.get("memory")
        self.memory = mem if isinstance(mem, wasmtime.Memory) else None
        self._memory_ref = ctypes.addressof(mem._memory) if isinstance(mem, wasmtime.Memory) else 0

    def base(self) -> int:
        assert self._memory_ref, "base() before bind()"
        address: int = _memory_data(self._store_context, self._memory_ref)
        return address

    # wasm32 pointers arrive as signed i32: mask them so addresses past 2 GiB stay positive.
    def read(self, ptr: int, length: int) -> bytes:
        return ctypes.string_at(self.base() + (ptr & self.mask), length) if length else b""

    def read_cstr(self, ptr: int) -> bytes:
        return ctypes.string_at(self.base() + (ptr & self.mask))

    def write(self, ptr: int, data: bytes) -> None:
        _memmove(self.base() + (ptr & self.mask), data, len(data))

    def read_ptr(self, ptr: int) -> int:
        return struct.unpack("<Q" if self.memory64 else "<I", self.read(ptr, self.ptr_size))[0]

    def write_ptr(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<Q" if self.memory64 else "<I", value))

    def call(self, name: str, *args: Any) -> Any:
        return self.fn[name](*args)
