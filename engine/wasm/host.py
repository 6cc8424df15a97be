"""The host side of an AOS image: emscripten, WASI and WeaveDrive imports for wasm32 and wasm64 alike.

Behaviour follows @permaweb/ao-loader (the legacy CU's loader) so that outputs and memory bytes match:
a deterministic clock counting from 10000, stdio as TTYs, stack-based unwinding for longjmp/C++ throws,
and its heap-growth policy. Nothing here reads the host clock or host randomness.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import wasmtime

import aonode.engine.wasm.memfs_state as memfs_state
import aonode.engine.wasm.timefmt as timefmt
from aonode.engine.errors import MemoryLimitExceeded, ModuleError, WasmTrap
from aonode.engine.wasm.cxx import EmscriptenUnwinding
from aonode.engine.wasm.drive_store import DriveStore
from aonode.engine.wasm.fs_io_syscalls import DescriptorIO
from aonode.engine.wasm.fs_path_syscalls import PathSyscalls
from aonode.engine.wasm.guest import zero_results
from aonode.engine.wasm.memfs_io import MemFS
from aonode.engine.wasm.weavedrive import WeaveDrive

WASM_PAGE = 65536
HEAP_MAX = 17179869184  # ao-loader's getHeapMax(): 16 GiB
OVERGROW_CAP = 100663296  # ao-loader: grow at most request + 96 MiB
TIME_START = 10000  # ao-loader replaces Date.now with a counter starting here
FS_INIT_TICKS = 4  # Date.now calls its emscripten FS makes while the runtime starts


class ProcExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"exit({code})")
        self.code = code


def _no_clock() -> int:
    return 0


@dataclass
class HostState:
    """Host-side state that must travel with a snapshot (everything else lives in linear memory):
    the clock counter, the input buffer of images without `free`, and the emscripten filesystem."""

    time: int = TIME_START
    scratch_ptr: int = 0
    scratch_size: int = 0
    fs: MemFS = field(default_factory=lambda: MemFS(_no_clock))

    def to_dict(self) -> dict:
        return {
            "time": self.time,
            "scratch_ptr": self.scratch_ptr,
            "scratch_size": self.scratch_size,
            "fs": memfs_state.to_dict(self.fs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> HostState:
        if data.get("fs"):
            fs = memfs_state.from_dict(data["fs"], _no_clock)
        else:  # a snapshot from before the filesystem was state: the tree as right after start-up
            fs = MemFS(_no_clock)
            fs.start()
        return cls(data.get("time", TIME_START), data.get("scratch_ptr", 0), data.get("scratch_size", 0), fs)


class Host(EmscriptenUnwinding, WeaveDrive, PathSyscalls, DescriptorIO):
    """All imports an AOS image may ask for; `bind` hands it the instance's exports afterwards."""

    def __init__(
        self,
        store: wasmtime.Store,
        memory64: bool,
        weavedrive_dir: Path | DriveStore | None = None,
        memory_limit: int | None = None,
    ) -> None:
        super().__init__(store=store, memory64=memory64, weavedrive_dir=weavedrive_dir)
        self.memory_limit = memory_limit
        self.stdout = bytearray()
        self.state = HostState()
        # emscripten's FS.init and ao-loader's /data make FS_INIT_TICKS clock calls; the instance
        # counts them when it starts the runtime, so the counter is rewound here.
        self.fs.start()
        self.state.time = TIME_START

    @property
    def state(self) -> HostState:
        return self._state

    @state.setter
    def state(self, value: HostState) -> None:
        """A restored state's filesystem is wired to this host's clock, output and drive."""
        self._state = value
        value.fs.clock = self.tick
        value.fs.stdout = self.stdout
        value.fs.drive_reader = self.drive_reader

    @property
    def fs(self) -> MemFS:  # type: ignore[override]  # the mixins only read `fs`; it is the state's
        return self._state.fs

    def resolve(self, module: str, name: str, ty: wasmtime.FuncType) -> Callable | None:
        """The Python function for one import, or None when this host does not provide it."""
        if module == "env" and name.startswith("invoke_"):
            return self._make_invoke(name, ty)
        if module == "env" and name.startswith("__cxa_find_matching_catch_"):
            return self._find_matching_catch
        if module in ("__wbindgen_placeholder__", "__wbindgen_externref_xform__"):
            return self._make_stub(ty)
        if module not in ("env", "wasi_snapshot_preview1", "wasi_unstable"):
            return None
        return getattr(self, "imp_" + name.lstrip("_"), None) if name.lstrip("_") else None

    def _make_stub(self, ty: wasmtime.FuncType) -> Callable:
        zero = zero_results(ty)
        return lambda *args: zero

    # ---- memory -------------------------------------------------------------------------------------
    def imp_emscripten_memcpy_js(self, dest: int, src: int, num: int) -> None:
        base, mask = self.base(), self.mask
        ctypes.memmove(base + (dest & mask), base + (src & mask), num & mask)

    imp_emscripten_memcpy_big = imp_emscripten_memcpy_js  # its name in older emscripten releases

    def imp_emscripten_resize_heap(self, requested: int) -> int:
        """ao-loader's policy: over-grow by 20%, 10%, 5%, 2.5% (capped at +96 MiB), 64 KiB aligned."""
        requested &= self.mask
        assert self.memory is not None, "resize_heap before bind()"
        old = self.memory.data_len(self.store)
        heap_max = HEAP_MAX if self.memory64 else 4294967296
        if self.memory_limit is not None and requested > self.memory_limit:
            raise MemoryLimitExceeded(f"memory limit of {self.memory_limit} bytes exceeded (requested {requested})")
        if requested > heap_max:
            return 0
        cut = 1
        while cut <= 4:
            over = min(old * (1 + 0.2 / cut), requested + OVERGROW_CAP)
            target = max(requested, over)
            target = int(target + (WASM_PAGE - target % WASM_PAGE) % WASM_PAGE)
            new_size = min(heap_max, target)
            if self.memory_limit is not None:
                new_size = min(new_size, self.memory_limit)
            pages = (new_size - old + WASM_PAGE - 1) // WASM_PAGE
            try:
                self.memory.grow(self.store, pages)
                return 1
            except wasmtime.WasmtimeError:
                cut *= 2
        return 0

    # ---- clock (deterministic) ----------------------------------------------------------------------
    def tick(self) -> int:
        now = self.state.time
        self.state.time += 1
        return now

    def imp_emscripten_date_now(self) -> float:
        return float(self.tick())

    def imp_emscripten_get_now(self) -> float:
        return float(self.tick())

    def imp_emscripten_get_now_is_monotonic(self) -> int:
        return 1

    def imp_clock_time_get(self, clock_id: int, precision: int, out: int) -> int:
        self.write(out, struct.pack("<Q", self.tick() * 1_000_000))
        return 0

    def imp_tzset_js(self, timezone: int, daylight: int, std_name: int, dst_name: int) -> None:
        self.write(timezone, struct.pack("<Q" if self.memory64 else "<I", 0))
        self.write(daylight, struct.pack("<i", 0))
        self.write(std_name, b"UTC\x00")
        self.write(dst_name, b"UTC\x00")

    def _tm_offsets(self) -> tuple[int, int]:
        """(tm_gmtoff, tm_zone) offsets in `struct tm`: `long` and `char*` follow nine ints."""
        return (40, 48) if self.memory64 else (36, 40)

    def _write_tm(self, time: int, tm: int, local: bool) -> None:
        _, fields = timefmt.normalize(1970, 0, 1, 0, 0, time)
        self.write(
            tm,
            struct.pack(
                "<8i",
                fields.sec,
                fields.min,
                fields.hour,
                fields.mday,
                fields.mon,
                fields.year,
                fields.wday,
                fields.yday,
            ),
        )
        if local:  # the host is UTC: no offset, no daylight saving
            self.write(tm + 32, struct.pack("<i", 0))
            self.write(tm + self._tm_offsets()[0], b"\0" * self.ptr_size)

    def _read_tm(self, tm: int) -> timefmt.Tm:
        fields = struct.unpack("<9i", self.read(tm, 36))
        off_gmt, off_zone = self._tm_offsets()
        gmtoff = int.from_bytes(self.read(tm + off_gmt, self.ptr_size), "little", signed=True)
        zone_ptr = self.read_ptr(tm + off_zone)
        zone = self.read_cstr(zone_ptr).decode(errors="replace") if zone_ptr else ""
        return replace(timefmt.Tm(*fields), gmtoff=gmtoff, zone=zone)

    @staticmethod
    def _split_time(time: int, rest: tuple[int, ...]) -> tuple[int, int]:
        """wasm32 builds pass the 64-bit time as two i32 halves."""
        return (time, rest[0]) if len(rest) == 1 else ((rest[0] << 32) | (time & 0xFFFFFFFF), rest[1])

    def imp_gmtime_js(self, time: int, *rest: int) -> None:
        self._write_tm(*self._split_time(time, rest), local=False)

    def imp_localtime_js(self, time: int, *rest: int) -> None:
        self._write_tm(*self._split_time(time, rest), local=True)

    def imp_mktime_js(self, tm: int) -> int:
        """Normalises the fields in place like JS Date does, and returns seconds since the epoch."""
        sec, minute, hour, mday, mon, year, _, _, dst = struct.unpack("<9i", self.read(tm, 36))
        try:
            seconds, norm = timefmt.normalize(year + 1900, mon, mday, hour, minute, sec)
        except (OverflowError, ValueError):
            return -1
        if dst < 0:
            self.write(tm + 32, struct.pack("<i", 0))
        self.write(tm + 24, struct.pack("<2i", norm.wday, norm.yday))
        self.write(tm, struct.pack("<6i", norm.sec, norm.min, norm.hour, norm.mday, norm.mon, norm.year))
        return seconds

    def imp_strftime(self, s: int, maxsize: int, fmt: int, tm: int) -> int:
        text = timefmt.strftime(self.read_cstr(fmt).decode("utf-8", errors="replace"), self._read_tm(tm))
        data = text.encode("utf-8", errors="surrogatepass") + b"\0"
        if len(data) > maxsize:
            return 0
        self.write(s, data)
        return len(data) - 1

    def imp_strftime_l(self, s: int, maxsize: int, fmt: int, tm: int, locale: int) -> int:
        return self.imp_strftime(s, maxsize, fmt, tm)

    # ---- WASI process interface --------------------------------------------------------------------
    def imp_environ_sizes_get(self, count_ptr: int, size_ptr: int) -> int:
        """No strings: ao-loader's patched getEnvStrings() returns an empty list."""
        self.write_ptr(count_ptr, 0)
        self.write_ptr(size_ptr, 0)
        return 0

    def imp_environ_get(self, environ: int, buf: int) -> int:
        return 0

    imp_args_sizes_get = imp_environ_sizes_get  # no argv either
    imp_args_get = imp_environ_get

    def imp_random_get(self, buf: int, length: int) -> int:
        self.write(buf, b"\x80" * length)  # Math.random is 0.5 while ao-loader runs `handle`
        return 0

    def imp_proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def imp_exit(self, code: int) -> None:
        raise ProcExit(code)

    def imp_dlopen_js(self, *args: int) -> int:
        raise WasmTrap("dlopen: the image was built without dynamic linking (as under ao-loader)")

    imp_dlsym_js = imp_dlopen_js

    def imp_emscripten_err(self, text: int) -> None:
        """A diagnostic line for the console: no effect on the process."""

    def imp_abort_js(self) -> None:
        raise WasmTrap("abort() called by the image")

    def imp_assert_fail(self, cond: int, filename: int, line: int, func: int) -> None:
        raise WasmTrap(f"assertion failed: {self.read_cstr(cond).decode(errors='replace')}")

    def imp_emscripten_system(self, command: int) -> int:
        return 0


def missing_imports(module: wasmtime.Module, host: Host, extra: dict | None) -> list[str]:
    missing = []
    for imp in module.imports:
        if (extra or {}).get(imp.module, {}).get(imp.name) is not None:
            continue
        if not isinstance(imp.type, wasmtime.FuncType) or host.resolve(imp.module, imp.name, imp.type) is None:
            missing.append(f"{imp.module}.{imp.name}")
    return missing


def check_imports(module: wasmtime.Module, host: Host, extra: dict | None) -> None:
    missing = missing_imports(module, host, extra)
    if missing:
        raise ModuleError("image imports what this host does not provide: " + ", ".join(missing))
