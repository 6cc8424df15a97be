"""One running process image: message in, result JSON out, and its state exactly as before on failure.

A trap (fuel, memory cap, wasm fault) can leave Lua half-updated, so the instance keeps a checkpoint
snapshot plus a journal of messages handled since; on failure it rebuilds from the checkpoint and replays
the journal (evaluation is deterministic), then raises. Checkpoints are taken every CHECKPOINT_EVERY
messages (and whenever a snapshot is taken) so replay stays short without copying memory per message.
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import wasmtime

from aonode.engine.errors import ComputeLimitExceeded, MemoryLimitExceeded, ModuleError, WasmError, WasmTrap
from aonode.engine.wasm.cxx import Unwind
from aonode.engine.wasm.fastcall import RawFunc, define_raw, take_parked
from aonode.engine.wasm.helper import Helper, HelperPlan, plan_helper
from aonode.engine.wasm.host import FS_INIT_TICKS, Host, HostState, ProcExit, check_imports
from aonode.engine.wasm.runtime import FAST, INTERRUPT_EXPORT, METERED, OPTIMIZED, Image, Runtime
from aonode.engine.wasm.ticker import TICK_SECONDS, clear_deadline, watch_deadline
from aonode.engine.wasm.snapshot import PendingSnapshot, Snapshot, SparseCopy, zero_from
from aonode.engine.wasm.weavedrive import SuspendNeeded

UNLIMITED_FUEL = 2**62
NO_DEADLINE = 2**62
# No CPU burns more fuel per second than this, so a message that finishes in under fuel/FUEL_RATE_MAX
# seconds of wall time used less than `fuel`. Fuel counts the original image's wasm operators, several
# of which can share one machine instruction; the fast variant ran a tight Lua loop at 2.3e10 fuel/s
# on the development machine (a 3,000,000-step `for` loop), so 4e11/s leaves a ~17x margin.
FUEL_RATE_MAX = 4e11
CHECKPOINT_EVERY = 1000  # replay of at most this many messages after a trap (~1 ms each)
CHECKPOINT_BYTES = 64 * 1024 * 1024  # ... or of this much message JSON
AWAY_FIRST = 4  # messages a process stays on the original image after one needed it (then 8, 16, ...)
STACK_HEADROOM = 256 * 1024  # stack left for `handle` itself after the inputs are placed ...
# ... or half the stack, whichever is less: ao-loader always places the inputs on the stack, and an
# image built with a small stack (AOS-SQLite: 64 KiB) must see them there too to match its memory.


def headroom(sp: int, stack_end: int) -> int:
    return min(STACK_HEADROOM, (sp - stack_end) // 2)
UNKNOWN_STACK_BUDGET = 16 * 1024
STACK_COOKIE = (34821223, 2310721022, 1668509029)  # what ao-loader's writeStackCookie() stores
SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_size(text: str | int | None) -> int | None:
    """"1-gb" / "512-mb" / "1073741824" → bytes (binary units, as the legacy CU reads Memory-Limit)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[-_ ]?\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in SIZE_UNITS | {"": 1}:
        raise ValueError(f"not a size: {text!r}")
    unit = SIZE_UNITS.get(match.group(2).lower(), 1)
    return int(float(match.group(1)) * unit)


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes of linear memory
    fuel: int | None = None  # wasmtime fuel per message


class Instance:
    """A wasmtime instance of an image plus the host that serves its imports."""

    def __init__(self, runtime: Runtime, image: Image, limits: Limits = Limits(),
                 weavedrive_dir: Path | None = None, extra_imports: dict | None = None,
                 _snapshot: Snapshot | None = None, *, fast_imports: bool = True, metered: bool = False) -> None:
        self.runtime = runtime
        self.fast_imports = fast_imports
        self.always_metered = metered
        # Home: where messages run. A fresh instance starts (constructors, spawn) on the original
        # image, which also serves any message that needs to suspend, then returns home.
        self._home = METERED if metered else OPTIMIZED if image.optimized is not None else FAST
        self._flavor = FAST if self._home == OPTIMIZED and _snapshot is None else self._home
        self._away_left = 1  # messages to run away from home before going back
        self._away_stay = AWAY_FIRST
        self.image = image
        self.limits = limits
        self.weavedrive_dir = weavedrive_dir
        self.extra_imports = extra_imports or {}
        self.last_gas_used = 0
        self._journal: list[tuple[str, str]] = []
        self._instantiate(_snapshot)
        # None means "a fresh start": rebuilding it is deterministic, so no copy is needed yet.
        self._checkpoint: Snapshot | PendingSnapshot | None = _snapshot
        self._journal_bytes = 0

    @classmethod
    def restore(cls, runtime: Runtime, image: Image, snapshot: Snapshot, limits: Limits = Limits(),
                weavedrive_dir: Path | None = None, extra_imports: dict | None = None,
                *, fast_imports: bool = True, metered: bool = False) -> Instance:
        return cls(runtime, image, limits, weavedrive_dir, extra_imports, _snapshot=snapshot,
                   fast_imports=fast_imports, metered=metered)

    # ---- setup --------------------------------------------------------------------------------------
    def _instantiate(self, snapshot: Snapshot | None) -> None:
        engine = self.runtime.engine_for(self._flavor)
        module = self.runtime.module_for(self.image, self._flavor)
        self.store = wasmtime.Store(engine)
        if self.limits.memory is not None:
            self.store.set_limits(memory_size=self.limits.memory)
        self._interrupt = None
        if self._flavor != OPTIMIZED:
            self._set_budget(None)
        self.host = Host(self.store, self.image.memory64, self.weavedrive_dir, self.limits.memory)
        self.host.can_suspend = self._flavor != OPTIMIZED
        check_imports(module, self.host, self.extra_imports)
        linker = wasmtime.Linker(engine)
        self._callbacks: list = []  # the raw host callbacks must outlive the instance
        plan = _helper_plan(self.image) if self.fast_imports else None
        helper = (Helper(self.runtime, self.store, plan, self.image.memory64, self._flavor,
                         self.image.memory_index64(self._flavor)) if plan else None)
        if helper:
            helper.define(linker, self.store)
        for imp in module.imports:
            extra = self.extra_imports.get(imp.module, {}).get(imp.name)
            if helper and imp.module == "env" and imp.name in plan.serves:
                continue
            if extra is not None:
                linker.define_func(imp.module, imp.name, imp.type, extra)
            else:
                define_raw(linker, imp.module, imp.name, imp.type,
                           self.host.resolve(imp.module, imp.name, imp.type), self._callbacks)
        try:
            self.instance = linker.instantiate(self.store, module)
        except wasmtime.WasmtimeError as err:
            if self.limits.memory is not None and "memory" in str(err).lower():
                raise MemoryLimitExceeded(f"image needs more memory than the limit: {err}") from err
            raise ModuleError(f"cannot instantiate image: {err}") from err
        self.exports = dict(self.instance.exports(self.store).items())
        if self._flavor == OPTIMIZED:  # the variant's loops stop when byte 0 of this memory is set
            flag_memory = self.exports[INTERRUPT_EXPORT]
            self._interrupt = (ctypes.c_ubyte * 1).from_address(
                ctypes.addressof(flag_memory.data_ptr(self.store).contents))
        if helper:
            helper.fill(self.store, self.exports)
        # One boundary crossing per message where nothing can suspend (see _run_direct).
        self._call_handle = (RawFunc(self.store, helper.exports["call_handle"])
                             if helper and plan.call_handle and self._flavor == OPTIMIZED else None)
        self._base_sp: int | None = None
        self.host.bind(self.exports)
        self.memory: wasmtime.Memory | None = self.host.memory
        self._stack_end: int | None = None
        if snapshot is not None:
            if "emscripten_stack_init" in self.host.fn:  # globals only: the stack bounds, as on a fresh start
                self.host.fn["emscripten_stack_init"]()
            self._load_snapshot(snapshot)
        else:
            self._start_runtime()

    def _start_runtime(self) -> None:
        """What ao-loader's emscripten glue does before the first message (no `main`)."""
        ex = self.host.fn
        if "emscripten_stack_init" in ex:
            ex["emscripten_stack_init"]()
        if "emscripten_stack_get_end" in ex and self.memory is not None:
            end = ex["emscripten_stack_get_end"]() or 4
            self.host.write(end, STACK_COOKIE[0].to_bytes(4, "little") + STACK_COOKIE[1].to_bytes(4, "little"))
            self.host.write(0, STACK_COOKIE[2].to_bytes(4, "little"))
        if "__wasm_call_ctors" in ex:
            self.host.state.time += FS_INIT_TICKS
            self._guarded(ex["__wasm_call_ctors"])
        elif "_initialize" in ex:
            self._guarded(ex["_initialize"])

    def _load_snapshot(self, snapshot: Snapshot) -> None:
        current = self.memory.data_len(self.store)
        if snapshot.memory_size > current:
            pages = (snapshot.memory_size - current) // 65536
            try:
                self.memory.grow(self.store, pages)
            except wasmtime.WasmtimeError as err:
                raise MemoryLimitExceeded(f"snapshot needs {snapshot.memory_size} bytes: {err}") from err
        elif snapshot.memory_size < current:
            raise ModuleError("snapshot is smaller than the image's initial memory")
        key = (self.image.sha256, self._flavor)
        if key not in _FRESH_ZERO_FROM:  # where a just-instantiated memory turns all zero (read once)
            _FRESH_ZERO_FROM[key] = zero_from(self.host.base(), self.memory_size)
        snapshot.write_into(self.memory_view(), _FRESH_ZERO_FROM[key])
        self.host.state = HostState.from_dict(snapshot.host_state)

    # ---- properties ---------------------------------------------------------------------------------
    @property
    def flavor(self) -> str:
        """Which build and engine runs the next message: "optimized" (the fast variant), "fast" (the
        image itself), or "metered" (the image itself, counting fuel)."""
        return self._home if self._away_left <= 0 else self._flavor

    @property
    def has_handle(self) -> bool:
        return "handle" in self.exports and self.memory is not None

    @property
    def memory_size(self) -> int:
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def memory_view(self) -> memoryview:
        """Zero-copy view of linear memory (valid until the memory grows)."""
        buf = (ctypes.c_ubyte * self.memory_size).from_address(self.host.base())
        return memoryview(buf).cast("B")

    def memory_sha256(self) -> str:
        return hashlib.sha256(self.memory_view()).hexdigest()

    def fork(self) -> Snapshot:
        """An unnamed copy of the current state for a throwaway instance (a dry-run): it skips the
        sha256 that names published snapshots and leaves the rollback checkpoint alone."""
        return Snapshot.from_memory(self.memory_view(), self.host.state.to_dict(), sha256="unnamed")

    def snapshot(self) -> Snapshot:
        """The current state; it also becomes the rollback checkpoint (the journal restarts)."""
        snap = Snapshot.from_memory(self.memory_view(), self.host.state.to_dict())
        self.checkpoint(snap)
        return snap

    @property
    def stdout(self) -> bytes:
        return bytes(self.host.stdout)

    # ---- calls --------------------------------------------------------------------------------------
    def call(self, export: str, *args: Any) -> Any:
        """Call an export directly (tiny modules, `_start`); errors map to the WasmError family."""
        func = self.exports.get(export)
        if not isinstance(func, wasmtime.Func):
            raise ModuleError(f"image has no exported function {export!r}")
        raw = self.host.fn.get(export)
        return self._guarded(lambda: raw(*args) if raw else func(self.store, *args))

    def run_start(self) -> int:
        """Run `_start` (a WASI command) and return its exit code."""
        try:
            self.call("_start")
        except ProcExitError as done:
            return done.code
        return 0

    def _set_budget(self, fuel: int | None) -> tuple | None:
        """Metered: exactly `fuel`. Otherwise a deadline no message within `fuel` can reach: the
        epoch's, or the variant's interrupt flag (returned: clear it with clear_deadline)."""
        if self._flavor == METERED:
            self.store.set_fuel(fuel if fuel is not None else UNLIMITED_FUEL)
        elif self._flavor == OPTIMIZED:
            self._interrupt[0] = 0
            if fuel is not None:
                return watch_deadline(self._interrupt, fuel / FUEL_RATE_MAX)
        elif fuel is None:
            self.store.set_epoch_deadline(NO_DEADLINE)
        else:
            self.store.set_epoch_deadline(int(fuel / FUEL_RATE_MAX / TICK_SECONDS) + 2)
        return None

    def _guarded(self, fn: Callable[[], Any], fuel: int | None = None) -> Any:
        deadline = self._set_budget(fuel)
        try:
            return fn()
        except (ProcExit, Unwind, WasmError, wasmtime.WasmtimeError, wasmtime.Trap) as err:
            if isinstance(err, (wasmtime.WasmtimeError, wasmtime.Trap)):
                err = take_parked() or err
            if self._interrupt is not None and self._interrupt[0]:
                raise _DeadlineReached("deadline reached (interrupt flag)") from None
            raise _translate(err) from None
        finally:
            if deadline is not None:
                clear_deadline(deadline)

    def handle(self, msg_json: str, env_json: str) -> str:
        """Evaluate one message; on any failure the state is exactly as before and an error is raised.

        The epoch engine has no fuel counter. A message it finishes in less wall time than the fuel
        limit could possibly take (FUEL_RATE_MAX) is certainly within the limit; any other message
        (including one stopped by the epoch deadline) is redone on the metered engine, whose verdict
        is deterministic. A message that needs to suspend in the fast variant is redone on the
        original image. Results never depend on which flavour ran: all leave the same memory."""
        if not self.has_handle:
            raise ModuleError("image exports no `handle`")
        fuel = self.limits.fuel
        if self._flavor != self._home and self._away_left <= 0:
            self.checkpoint()  # home again (deferred to here: a snapshot taken meanwhile did it for free)
        while True:
            started = time.perf_counter()
            try:
                raw = self._handle_once(msg_json, env_json, fuel)
                if (self._flavor == METERED or fuel is None
                        or time.perf_counter() - started < fuel / FUEL_RATE_MAX):
                    break
                redo = METERED  # undecided: it may have used more than its fuel
            except _DeadlineReached:
                redo = METERED
            except SuspendNeeded:
                redo = FAST
            except WasmError:
                self._rebuild()
                raise
            self._rebuild()  # the state before this message
            self._leave_home(redo)
        self._journal.append((msg_json, env_json))
        self._journal_bytes += len(msg_json) + len(env_json)
        if self._flavor != self._home:
            self._away_left -= 1
        if len(self._journal) >= CHECKPOINT_EVERY or self._journal_bytes >= CHECKPOINT_BYTES:
            self.checkpoint()
        return raw

    def _leave_home(self, flavor: str) -> None:
        """Continue on another flavour for a while; each departure stays twice as long as the last
        (up to a checkpoint interval), so a process that suspends often stops switching back and forth."""
        if flavor != self._flavor:
            self._switch(flavor)
        if self._flavor != self._home:
            self._away_left = self._away_stay
            self._away_stay = min(2 * self._away_stay, CHECKPOINT_EVERY)

    def _switch(self, flavor: str) -> None:
        """Carry the current state over to a fresh instance on another flavour."""
        snap = Snapshot.from_memory(self.memory_view(), self.host.state.to_dict(), sha256="unnamed")
        self.close()
        self._flavor = flavor
        self._instantiate(snap)
        self._checkpoint = snap
        self._journal.clear()
        self._journal_bytes = 0

    def snapshot_in_background(self, then: Callable[[Snapshot], None] | None = None) -> PendingSnapshot:
        """`snapshot()` with the hashing and compression (and `then`, e.g. storing it) moved off this
        thread: only a copy of the memory is made here. It is also the rollback checkpoint."""
        copy = SparseCopy.of(self.memory_view(), self.host.base())
        pending = PendingSnapshot(copy, self.host.state.to_dict(), then)
        self.checkpoint(pending)
        return pending

    def checkpoint(self, snapshot: Snapshot | PendingSnapshot | None = None) -> None:
        """Make the current state the rollback point (done every CHECKPOINT_EVERY messages and
        whenever a snapshot is taken, which the caller does anyway)."""
        # An internal checkpoint is never published, so it skips the ~1 ms/MiB hash that names a snapshot.
        self._checkpoint = snapshot or Snapshot.from_memory(self.memory_view(), self.host.state.to_dict(),
                                                            sha256="unnamed")
        self._journal.clear()
        self._journal_bytes = 0
        if self._flavor != self._home:
            self.close()  # back home after messages that needed metering or suspending
            self._flavor = self._home
            self._instantiate(self._checkpoint_snapshot())

    def _handle_once(self, msg_json: str, env_json: str, fuel: int | None) -> str:
        msg, env = msg_json.encode() + b"\x00", env_json.encode() + b"\x00"
        handle = self.host.fn["handle"]
        self.host.inputs = (msg_json, env_json)  # WeaveDrive's admissibility reads the process tags

        def run() -> str:
            if self._call_handle is not None:
                direct = self._run_direct(msg, env)
                if direct is not None:
                    return direct
            sp, msg_ptr, env_ptr, owned = self._place_inputs(msg, env)
            result_ptr = handle(msg_ptr, env_ptr)
            while self.host.finish_unwind():
                result_ptr = handle(msg_ptr, env_ptr)
            out = self.host.read_cstr(result_ptr).decode("utf-8", errors="replace")
            self._release_inputs(sp, owned)
            return out

        result = self._guarded(run, fuel)
        if self._flavor == METERED:
            self.last_gas_used = (fuel if fuel is not None else UNLIMITED_FUEL) - self.store.get_fuel()
        else:
            self.last_gas_used = 0  # not counted on the fast engine (ao-loader reports 0 as well)
        return result

    def _run_direct(self, msg: bytes, env: bytes) -> str | None:
        """`handle` through the helper's call_handle: the inputs go where ao-loader's ccall puts them
        (two _emscripten_stack_alloc calls: `(sp - size) & -16` each) and the stack pointer is reset
        inside wasm. None when they do not fit on the stack (the general path then mallocs)."""
        host = self.host
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
                if self._stack_end is None:  # fixed once emscripten_stack_init has run
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

    def close(self) -> None:
        """Free the linear memory now rather than when the garbage collector finds the cycles."""
        self.host.fn.clear()
        self.store.close()

    def _checkpoint_snapshot(self) -> Snapshot | None:
        if isinstance(self._checkpoint, PendingSnapshot):
            self._checkpoint = self._checkpoint.result()
        return self._checkpoint

    def _rebuild(self) -> None:
        """Fresh wasmtime instance from the checkpoint, then replay the journal."""
        journal = list(self._journal)
        self.close()
        self._instantiate(self._checkpoint_snapshot())
        for msg_json, env_json in journal:
            self._handle_once(msg_json, env_json, None)


_PLANS: dict[str, HelperPlan | None] = {}
_FRESH_ZERO_FROM: dict[tuple[str, str], int] = {}


def _helper_plan(image: Image) -> HelperPlan | None:
    if image.sha256 not in _PLANS:
        _PLANS[image.sha256] = plan_helper(image.module, image.memory64)
    return _PLANS[image.sha256]


class _DeadlineReached(WasmTrap):
    """The fast engine's epoch deadline: undecided, the message is redone metered."""


class ProcExitError(WasmTrap):
    def __init__(self, code: int) -> None:
        super().__init__(f"the image exited with code {code}")
        self.code = code


def _translate(err: BaseException) -> BaseException:
    """Any failure inside wasm → the engine's WasmError family."""
    if isinstance(err, ProcExit):
        return ProcExitError(err.code)
    if isinstance(err, Unwind):
        return WasmTrap(f"uncaught exception or longjmp ({err.value})")
    if isinstance(err, wasmtime.Trap):
        return _map_trap(err)
    if isinstance(err, wasmtime.WasmtimeError):
        return WasmTrap(str(err))
    return err


def _map_trap(trap: wasmtime.Trap) -> WasmError:
    code = trap.trap_code
    text = str(trap).splitlines()[0] if str(trap) else "trap"
    if code == wasmtime.TrapCode.INTERRUPT:
        return _DeadlineReached("epoch deadline reached")
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ComputeLimitExceeded("compute limit exceeded (out of fuel)")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return WasmTrap("wasm stack overflow")
    return WasmTrap(f"wasm trap: {text}")
