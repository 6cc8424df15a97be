"""Fast paths past wasmtime-py's generic call machinery, which builds type objects and converts values
on every call (~30-50 µs each). A message crosses the Python/wasm boundary a dozen times or more, so
exports are called through `wasmtime_func_call_unchecked` with a preallocated raw value buffer, and host
functions are registered with `wasmtime_linker_define_func_unchecked`.

A Python exception raised by a raw host function is parked here and re-raised by the raw call that
sees the resulting trap, so exceptions cross wasm frames exactly as with wasmtime-py's own functions.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _bindings as ffi, _func as wasmtime_func

_trap_new = ffi._wasmtime_trap_new
_TRAP_MSG = b"python exception in a host function"
_NULL_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_parked = threading.local()


def _kind(valtype: wasmtime.ValType) -> str:
    kind = str(valtype)
    if kind not in ("i32", "i64", "f32", "f64"):
        raise wasmtime.WasmtimeError(f"raw calls support numbers only, not {kind}")
    return kind


def take_parked() -> BaseException | None:
    """The exception a host function raised during the last failed call, if any."""
    exc = getattr(_parked, "exc", None)
    _parked.exc = None
    if exc is None and wasmtime_func.LAST_EXCEPTION is not None:
        exc, wasmtime_func.LAST_EXCEPTION = wasmtime_func.LAST_EXCEPTION, None
    return exc


def _failure(err: Any, trap: Any) -> BaseException:
    parked = take_parked()
    if err:
        error = wasmtime.WasmtimeError._from_ptr(err)
        return parked or error
    trap_obj = wasmtime.Trap._from_ptr(trap)
    return parked or trap_obj


# The same C function with plain integer arguments: ctypes converts ints fastest.
_call_ints = ctypes.CFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
)(("wasmtime_func_call_unchecked", ffi.dll))
_VIEWS: dict[str, tuple[Any, int]] = {  # element type, elements per 16-byte raw value
    "i32": (ctypes.c_int32, 4),
    "i64": (ctypes.c_int64, 2),
    "f32": (ctypes.c_float, 4),
    "f64": (ctypes.c_double, 2),
}


class RawFunc:
    """A wasm export called with plain Python numbers; reentrant (arguments are read on entry)."""

    __slots__ = ("_args", "_buf", "_ctx", "_func", "_n", "_ref", "_result", "_trap")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        ty = func.type(store)
        params = [_kind(p) for p in ty.params]
        results = [_kind(r) for r in ty.results]
        if len(results) > 1:
            raise wasmtime.WasmtimeError("raw calls support at most one result")
        self._n = max(len(params), len(results), 1)
        self._buf = (ffi.wasmtime_val_raw_t * self._n)()
        views = {kind: (ctype * (per * self._n)).from_buffer(self._buf) for kind, (ctype, per) in _VIEWS.items()}
        self._args = [(views[kind], i * _VIEWS[kind][1]) for i, kind in enumerate(params)]
        self._result = views[results[0]] if results else None
        self._ctx = ctypes.cast(store._context(), ctypes.c_void_p).value
        self._func = func
        self._ref = ctypes.addressof(func._func)
        self._trap = ctypes.c_void_p()

    def __call__(self, *args: Any) -> Any:
        for (view, index), value in zip(self._args, args, strict=False):
            view[index] = value
        trap = self._trap
        trap.value = None
        err = _call_ints(self._ctx, self._ref, ctypes.addressof(self._buf), self._n, ctypes.addressof(trap))
        if err or trap.value:
            raised, trap.value = trap.value, None
            raise _failure(
                err and ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)),
                raised and ctypes.cast(raised, ctypes.POINTER(ffi.wasm_trap_t)),
            )
        return self._result[0] if self._result is not None else None


def define_raw(
    linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, fn: Callable[..., Any], keep: list
) -> None:
    """Register `fn` as import `module.name` without wasmtime-py's per-call type handling."""
    params = [_kind(p) for p in ty.params]
    results = [_kind(r) for r in ty.results]
    result = results[0] if results else None
    if len(results) > 1:
        raise wasmtime.WasmtimeError("raw host functions support at most one result")
    count = len(params)

    def callback(env: Any, caller: Any, vals: Any, nvals: int) -> int:
        try:
            value = fn(*[getattr(vals[i], params[i]) for i in range(count)])
            if result is not None:
                setattr(vals[0], result, value)
            return 0
        except BaseException as exc:  # noqa: BLE001 - crosses wasm frames, re-raised by the caller
            _parked.exc = exc
            return ctypes.cast(_trap_new(_TRAP_MSG, len(_TRAP_MSG)), ctypes.c_void_p).value or 0

    c_callback = ffi.wasmtime_func_unchecked_callback_t(callback)
    keep.append(c_callback)
    mod, nm = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), mod, len(mod), nm, len(nm), ty.ptr(), c_callback, None, _NULL_FINALIZER
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
