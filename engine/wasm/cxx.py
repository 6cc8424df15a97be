"""Emscripten's JS-side unwinding: `invoke_*` wrappers, longjmp, and the C++ exception ABI.

In the JS glue a longjmp or C++ throw is a thrown number caught by the nearest `invoke_*`, which
restores the stack pointer and calls `setThrew(1, 0)`. Here the number travels as `Unwind`, a Python
exception that crosses wasm frames as a trap and is caught by the nearest Python `invoke_*`. (The
common longjmp case never gets here: see helper.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wasmtime

from aonode.engine.errors import WasmTrap
from aonode.engine.wasm.fastcall import RawFunc
from aonode.engine.wasm.guest import Guest, zero_results


class Unwind(Exception):
    """A longjmp or C++ throw travelling to the nearest `invoke_*` (JS throws a number for both)."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class EmscriptenUnwinding(Guest):
    """The `invoke_*`, `_emscripten_throw_longjmp`, `__cxa_*` and `__resumeException` imports."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exception_last = 0
        self._caught: list[int] = []
        self._uncaught = 0
        self._table_fns: dict[int, RawFunc] = {}

    def _make_invoke(self, name: str, ty: wasmtime.FuncType) -> Callable:
        zero = zero_results(ty)
        dyncall = "dynCall_" + name[len("invoke_") :]

        def target(index: int) -> Callable:
            fn = self._table_fns.get(index)
            if fn is None:
                func = self.exports["__indirect_function_table"].get(self.store, index)
                if not isinstance(func, wasmtime.Func):
                    raise WasmTrap(f"indirect call to an empty table slot {index}")
                fn = self._table_fns[index] = RawFunc(self.store, func)
            return fn

        def invoke(index: int, *args: Any) -> Any:
            fn = self.fn
            sp = fn["emscripten_stack_get_current"]()
            try:
                # Through dynCall_* when exported, as the emscripten glue does: under asyncify that
                # frame is part of what an unwind saves, so skipping it would change memory bytes.
                if dyncall in fn:
                    return fn[dyncall](index, *args)
                return target(index)(*args)
            except Unwind:
                fn["_emscripten_stack_restore"](sp)
                fn["setThrew"](1, 0)
                return zero

        return invoke

    def imp_emscripten_throw_longjmp(self) -> None:
        raise Unwind(-1)

    def _info(self, exc: int) -> int:
        return exc - (48 if self.memory64 else 24)

    def _off(self, field_name: str) -> int:
        wide = self.memory64
        return {
            "type": 8 if wide else 4,
            "caught": 24 if wide else 12,
            "rethrown": 25 if wide else 13,
            "adjusted": 32 if wide else 16,
            "destructor": 16 if wide else 8,
        }[field_name]

    def imp_cxa_throw(self, ptr: int, type_: int, destructor: int) -> None:
        info = self._info(ptr)
        self.write_ptr(info + self._off("adjusted"), 0)
        self.write_ptr(info + self._off("type"), type_)
        self.write_ptr(info + self._off("destructor"), destructor)
        self._exception_last = ptr
        self._uncaught += 1
        raise Unwind(ptr)

    def _find_matching_catch(self, *caught_types: int) -> int:
        thrown = self._exception_last
        tempret = self.fn.get("_emscripten_tempret_set")
        if not thrown:
            tempret and tempret(0)
            return 0
        info = self._info(thrown)
        self.write_ptr(info + self._off("adjusted"), thrown)
        thrown_type = self.read_ptr(info + self._off("type"))
        if not thrown_type:
            tempret and tempret(0)
            return thrown
        for caught in caught_types:
            if caught == 0 or caught == thrown_type:
                break
            if self.call("__cxa_can_catch", caught, thrown_type, info + self._off("adjusted")):
                tempret and tempret(caught & 0xFFFFFFFF)
                return thrown
        tempret and tempret(thrown_type & 0xFFFFFFFF)
        return thrown

    def imp_cxa_begin_catch(self, ptr: int) -> int:
        info = self._info(ptr)
        if not self.read(info + self._off("caught"), 1)[0]:
            self.write(info + self._off("caught"), b"\x01")
            self._uncaught -= 1
        self.write(info + self._off("rethrown"), b"\x00")
        self._caught.append(ptr)
        self.call("__cxa_increment_exception_refcount", ptr)
        thrown_type = self.read_ptr(info + self._off("type"))
        if "__cxa_is_pointer_type" in self.fn and self.call("__cxa_is_pointer_type", thrown_type):
            return self.read_ptr(self.read_ptr(info + self._off("adjusted")))
        adjusted = self.read_ptr(info + self._off("adjusted"))
        return adjusted or ptr

    def imp_cxa_end_catch(self) -> None:
        self.call("setThrew", 0, 0)
        ptr = self._caught.pop() if self._caught else 0
        if ptr and "__cxa_decrement_exception_refcount" in self.fn:
            self.call("__cxa_decrement_exception_refcount", ptr)
        self._exception_last = 0

    def imp_cxa_rethrow(self) -> None:
        if not self._caught:
            raise WasmTrap("no exception to rethrow")
        ptr = self._caught.pop()
        info = self._info(ptr)
        if not self.read(info + self._off("rethrown"), 1)[0]:
            self._caught.append(ptr)
            self.write(info + self._off("rethrown"), b"\x01")
            self.write(info + self._off("caught"), b"\x00")
            self._uncaught += 1
        self._exception_last = ptr
        raise Unwind(ptr)

    def imp_resumeException(self, ptr: int) -> None:
        if not self._exception_last:
            self._exception_last = ptr
        raise Unwind(self._exception_last)

    def imp_cxa_uncaught_exceptions(self) -> int:
        return self._uncaught

    def imp_llvm_eh_typeid_for(self, type_: int) -> int:
        return type_ & 0xFFFFFFFF
