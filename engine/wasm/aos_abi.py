"""The ao-loader ABI of an AOS image: what emscripten's glue does before the first message, and how
`handle(msg, env)` gets its two C strings (where ao-loader's ccall puts them) and gives one back.

Where the inputs go is part of the memory an image leaves behind, so it follows ao-loader exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aonode.engine.errors import MemoryLimitExceeded
from aonode.engine.wasm.fastcall import RawFunc
from aonode.engine.wasm.host import FS_INIT_TICKS, Host

STACK_HEADROOM = 256 * 1024  # stack left for `handle` itself after the inputs are placed ...
# ... or half the stack, whichever is less: ao-loader always places the inputs on the stack, and an
# image built with a small stack (AOS-SQLite: 64 KiB) must see them there too to match its memory.
UNKNOWN_STACK_BUDGET = 16 * 1024
STACK_COOKIE = (34821223, 2310721022, 1668509029)  # what ao-loader's writeStackCookie() stores


def headroom(sp: int, stack_end: int) -> int:
    return min(STACK_HEADROOM, (sp - stack_end) // 2)


class AosAbi:
    """One per wasmtime instance. `call_handle` is the helper's one-crossing path to `handle`, given
    where nothing can suspend (the variant)."""

    def __init__(self, host: Host, call_handle: RawFunc | None) -> None:
        self.host = host
        self._call_handle = call_handle
        self._base_sp: int | None = None
        self._stack_end: int | None = None  # fixed once emscripten_stack_init has run

    def start(self, guarded: Callable[[Callable[[], Any]], Any]) -> None:
        """A fresh start, before the first message (no `main`); `guarded` runs the constructors."""
        ex, host = self.host.fn, self.host
        if "emscripten_stack_init" in ex:
            ex["emscripten_stack_init"]()
        if "emscripten_stack_get_end" in ex and host.memory is not None:
            end = ex["emscripten_stack_get_end"]() or 4
            host.write(end, STACK_COOKIE[0].to_bytes(4, "little") + STACK_COOKIE[1].to_bytes(4, "little"))
            host.write(0, STACK_COOKIE[2].to_bytes(4, "little"))
        if "__wasm_call_ctors" in ex:
            host.state.time += FS_INIT_TICKS
            guarded(ex["__wasm_call_ctors"])
        elif "_initialize" in ex:
            guarded(ex["_initialize"])

    def resume(self) -> None:
        """Before a snapshot's memory is loaded: only the globals (the stack bounds), as on a fresh start."""
        if "emscripten_stack_init" in self.host.fn:
            self.host.fn["emscripten_stack_init"]()

    def handle(self, msg: bytes, env: bytes) -> str:
        """Call `handle` with two NUL-terminated strings; its result string."""
        if self._call_handle is not None:
            direct = self._run_direct(msg, env)
            if direct is not None:
                return direct
        handle = self.host.fn["handle"]
        sp, msg_ptr, env_ptr, owned = self._place_inputs(msg, env)
        result_ptr = handle(msg_ptr, env_ptr)
        while self.host.finish_unwind():
            result_ptr = handle(msg_ptr, env_ptr)
        out = self.host.read_cstr(result_ptr).decode("utf-8", errors="replace")
        self._release_inputs(sp, owned)
        return out

    def _run_direct(self, msg: bytes, env: bytes) -> str | None:
        """`handle` through the helper's call_handle: the inputs go where ao-loader's ccall puts them
        (two _emscripten_stack_alloc calls: `(sp - size) & -16` each) and the stack pointer is reset
        inside wasm. None when they do not fit on the stack (the general path then mallocs)."""
        host = self.host
        assert self._call_handle is not None
        if self._base_sp is None:
            self._base_sp = host.fn["emscripten_stack_get_current"]()
            if self._stack_end is None and "emscripten_stack_get_end" in host.fn:
                self._stack_end = host.fn["emscripten_stack_get_end"]()
        sp = self._base_sp
        if self._stack_end is None or sp - self._stack_end <= len(msg) + len(env) + headroom(sp, self._stack_end):
            return None
        msg_ptr = (sp - len(msg)) & -16
        env_ptr = (msg_ptr - len(env)) & -16
        host.write(msg_ptr, msg)
        host.write(env_ptr, env)
        return host.read_cstr(self._call_handle(msg_ptr, env_ptr, sp)).decode("utf-8", errors="replace")

    def _place_inputs(self, msg: bytes, env: bytes) -> tuple[int | None, int, int, list[int]]:
        """ao-loader's ccall puts both strings on the C stack; without stack exports use malloc."""
        host = self.host
        ex = host.fn
        if "_emscripten_stack_alloc" in ex and "emscripten_stack_get_current" in ex:
            sp = ex["emscripten_stack_get_current"]()
            need = len(msg) + len(env)
            if "emscripten_stack_get_end" in ex:
                if self._stack_end is None:
                    self._stack_end = ex["emscripten_stack_get_end"]()
                fits = sp - self._stack_end > need + headroom(sp, self._stack_end)
            else:
                fits = need <= UNKNOWN_STACK_BUDGET  # stack size unknown: only small inputs go there
            if fits:
                msg_ptr = ex["_emscripten_stack_alloc"](len(msg))
                host.write(msg_ptr, msg)
                env_ptr = ex["_emscripten_stack_alloc"](len(env))
                host.write(env_ptr, env)
                return sp, msg_ptr, env_ptr, []
        if "free" in ex:
            msg_ptr = self._malloc(len(msg))
            env_ptr = self._malloc(len(env))
            host.write(msg_ptr, msg)
            host.write(env_ptr, env)
            return None, msg_ptr, env_ptr, [msg_ptr, env_ptr]
        base = self._scratch(len(msg) + len(env))
        host.write(base, msg)
        host.write(base + len(msg), env)
        return None, base, base + len(msg), []

    def _release_inputs(self, sp: int | None, owned: list[int]) -> None:
        if sp is not None:
            self.host.fn["_emscripten_stack_restore"](sp)
        for ptr in owned:
            self.host.fn["free"](ptr)

    def _malloc(self, size: int) -> int:
        ptr = self.host.fn["malloc"](size)
        if not ptr:
            raise MemoryLimitExceeded(f"malloc({size}) failed")
        return ptr

    def _scratch(self, size: int) -> int:
        """One reusable input buffer for images without `free`; its pointer travels in host_state."""
        state = self.host.state
        if state.scratch_size < size:
            state.scratch_ptr = self._malloc(max(size, 2 * state.scratch_size, 65536))
            state.scratch_size = max(size, 2 * state.scratch_size, 65536)
        return state.scratch_ptr
