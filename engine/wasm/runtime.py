"""Compile images once per engine flavour; compiled artifacts are cached on disk by image hash + settings."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime
from wasmtime._bindings import _wasmtime_engine_increment_epoch as _raw_increment_epoch

from aonode.engine.errors import ModuleError

METERED, FAST = "metered", "fast"
# Part of the cache key: an artifact is only valid for the engine settings it was compiled with.
ENGINE_SETTINGS = {
    METERED: "memory64=1;exceptions=1;fuel=1;spectre-heap=0;spectre-table=0;wasmtime=50",
    FAST: "memory64=1;exceptions=1;epoch=1;spectre-heap=0;spectre-table=0;wasmtime=50",
}
LEGACY_EH_MARKER = "legacy_exceptions"
EPOCH_TICK_SECONDS = 0.002  # how often fast engines' epoch advances (bounds runaway-loop detection)


@dataclass(frozen=True)
class Image:
    """A compiled image; `sha256` is of the bytes the user gave (before any translation).
    `module` is compiled for the fast engine; `Runtime.module_for` gives the metered one on demand."""

    sha256: str
    module: wasmtime.Module = field(repr=False, compare=False)
    memory64: bool = False
    translated: bool = False

    @property
    def export_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.module.exports)


def make_engine(flavor: str = METERED) -> wasmtime.Engine:
    """METERED counts fuel (deterministic compute limits); FAST only checks an epoch deadline, which
    costs about half as much per message and is enough to stop a runaway loop."""
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_exceptions = True
    config.consume_fuel = flavor == METERED
    config.epoch_interruption = flavor == FAST
    # Speculative-load hardening on every memory/table access costs ~8% per message; V8, which the
    # reference loader runs on, does not apply it to wasm either.
    config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false")
    config.cranelift_flag_set("enable_table_access_spectre_mitigation", "false")
    engine = wasmtime.Engine(config)
    if flavor == FAST:
        _EpochTicker.register(engine)
    return engine


class _EpochTicker:
    """One daemon thread advancing the epoch of every live fast engine (wasm runs without the GIL).

    Its loop allocates no Python objects, so the garbage collector is never triggered from this
    thread (it ticks every 2 ms): wasmtime objects are finalized by the threads that use wasmtime,
    not from here while another thread may be inside a wasm call.
    """

    _engines: tuple = ()  # (weak reference to the Engine, its raw pointer)
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def register(cls, engine: wasmtime.Engine) -> None:
        with cls._lock:
            live = tuple(entry for entry in cls._engines if entry[0]() is not None)
            cls._engines = live + ((weakref.ref(engine), engine.ptr()),)
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._run, name="aonode-epoch", daemon=True)
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        increment = _raw_increment_epoch  # the ctypes function itself: no Python wrapper frame
        sleep, tick = time.sleep, EPOCH_TICK_SECONDS
        while True:
            sleep(tick)
            engines = cls._engines
            index, count = 0, len(engines)
            while index < count:
                ref, pointer = engines[index]
                engine = ref()  # held while ticking, so the engine cannot be freed under the call
                if engine is not None:
                    increment(pointer)
                engine = None
                index += 1


def _memory64(module: wasmtime.Module) -> bool:
    for ext in list(module.exports) + list(module.imports):
        if isinstance(ext.type, wasmtime.MemoryType):
            return bool(ext.type.is_64)
    return False


class Runtime:
    """Owns the engines; `load` returns compiled images, from memory, the disk cache, or a fresh compile."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.engine = make_engine(METERED)
        self.fast_engine = make_engine(FAST)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._images: dict[str, Image] = {}
        self._sources: dict[str, bytes] = {}
        self._metered: dict[str, wasmtime.Module] = {}
        self._helpers: dict[tuple[str, str], wasmtime.Module] = {}

    def engine_for(self, flavor: str) -> wasmtime.Engine:
        return self.engine if flavor == METERED else self.fast_engine

    def load(self, wasm: bytes) -> Image:
        sha = hashlib.sha256(wasm).hexdigest()
        image = self._images.get(sha)
        if image is None:
            module, translated = self._compile(sha, wasm, FAST)
            image = Image(sha, module, _memory64(module), translated)
            self._images[sha] = image
            self._sources[sha] = wasm
        return image

    def load_path(self, path: Path) -> Image:
        return self.load(Path(path).read_bytes())

    def module_for(self, image: Image, flavor: str) -> wasmtime.Module:
        """The image compiled for the given engine flavour (the metered one is compiled on first use:
        most processes never need it)."""
        if flavor == FAST:
            return image.module
        module = self._metered.get(image.sha256)
        if module is None:
            source = self._sources.get(image.sha256)
            if source is None:
                raise ModuleError(f"image {image.sha256[:12]} was not loaded by this runtime")
            module, _ = self._compile(image.sha256, source, METERED)
            self._metered[image.sha256] = module
        return module

    def compile_wat(self, wat: str, flavor: str = METERED) -> wasmtime.Module:
        """Small helper modules written in WAT, compiled once per runtime and engine."""
        key = (hashlib.sha256(wat.encode()).hexdigest(), flavor)
        module = self._helpers.get(key)
        if module is None:
            module = wasmtime.Module(self.engine_for(flavor), wasmtime.wat2wasm(wat))
            self._helpers[key] = module
        return module

    def _artifact_path(self, sha: str, flavor: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{sha};{ENGINE_SETTINGS[flavor]}".encode()).hexdigest()
        return self.cache_dir / f"{key}.cwasm"

    def _compile(self, sha: str, wasm: bytes, flavor: str) -> tuple[wasmtime.Module, bool]:
        engine = self.engine_for(flavor)
        artifact = self._artifact_path(sha, flavor)
        if artifact is not None and artifact.exists():
            try:
                module = wasmtime.Module.deserialize(engine, artifact.read_bytes())
                return module, artifact.with_suffix(".translated").exists()
            except wasmtime.WasmtimeError:
                artifact.unlink(missing_ok=True)
        translated = False
        try:
            module = wasmtime.Module(engine, wasm)
        except wasmtime.WasmtimeError as err:
            if LEGACY_EH_MARKER not in str(err):
                raise ModuleError(f"image {sha[:12]} does not compile: {err}") from err
            module = self._compile_translated(engine, wasm)
            translated = True
        if artifact is not None:
            self._store_artifact(artifact, module.serialize(), translated)
        return module, translated

    def _compile_translated(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        new = translate_legacy_exceptions(wasm, self.cache_dir)
        try:
            return wasmtime.Module(engine, new)
        except wasmtime.WasmtimeError as err:
            raise ModuleError(f"translated image does not compile: {err}") from err

    @staticmethod
    def _store_artifact(path: Path, data: bytes, translated: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if translated:
            path.with_suffix(".translated").touch()
        os.replace(tmp, path)


def translate_legacy_exceptions(wasm: bytes, cache_dir: Path | None) -> bytes:
    """Old try/catch → exnref, through modules/exnref when it exists, else wasm-opt directly."""
    try:
        from aonode.modules.exnref import translate
    except ImportError:
        return _wasm_opt_translate(wasm)
    return translate(wasm, cache_dir)


def _wasm_opt_binary() -> str:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules" / ".bin" / "wasm-opt"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("wasm-opt")
    if not found:
        raise ModuleError("wasm-opt (npm binaryen) is needed to translate legacy exception handling")
    return found


def _wasm_opt_translate(wasm: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wasm", Path(tmp) / "out.wasm"
        src.write_bytes(wasm)
        cmd = [_wasm_opt_binary(), "--enable-exception-handling", "--enable-memory64",
               "--translate-to-exnref", str(src), "-o", str(dst)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ModuleError(f"wasm-opt failed: {done.stderr.strip()[:500]}")
        return dst.read_bytes()
