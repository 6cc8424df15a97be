"""Compile images once: one wasmtime Engine per Runtime, compiled artifacts cached on disk by image hash."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from aonode.engine.errors import ModuleError

# Part of the cache key: an artifact is only valid for the engine settings it was compiled with.
ENGINE_SETTINGS = "memory64=1;exceptions=1;fuel=1;spectre-heap=0;spectre-table=0;wasmtime=50"
LEGACY_EH_MARKER = "legacy_exceptions"


@dataclass(frozen=True)
class Image:
    """A compiled image; `sha256` is of the bytes the user gave (before any translation)."""

    sha256: str
    module: wasmtime.Module = field(repr=False, compare=False)
    memory64: bool = False
    translated: bool = False

    @property
    def export_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.module.exports)


def make_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_exceptions = True
    config.consume_fuel = True
    # Speculative-load hardening on every memory/table access costs ~8% per message; V8, which the
    # reference loader runs on, does not apply it to wasm either.
    config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false")
    config.cranelift_flag_set("enable_table_access_spectre_mitigation", "false")
    return wasmtime.Engine(config)


def _memory64(module: wasmtime.Module) -> bool:
    for ext in list(module.exports) + list(module.imports):
        if isinstance(ext.type, wasmtime.MemoryType):
            return bool(ext.type.is_64)
    return False


class Runtime:
    """Owns the engine; `load` returns compiled images, from memory, the disk cache, or a fresh compile."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.engine = make_engine()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._images: dict[str, Image] = {}
        self._helpers: dict[str, wasmtime.Module] = {}

    def load(self, wasm: bytes) -> Image:
        sha = hashlib.sha256(wasm).hexdigest()
        image = self._images.get(sha)
        if image is None:
            image = self._load_uncached(sha, wasm)
            self._images[sha] = image
        return image

    def load_path(self, path: Path) -> Image:
        return self.load(Path(path).read_bytes())

    def compile_wat(self, wat: str) -> wasmtime.Module:
        """Small helper modules written in WAT, compiled once per runtime."""
        key = hashlib.sha256(wat.encode()).hexdigest()
        module = self._helpers.get(key)
        if module is None:
            module = wasmtime.Module(self.engine, wasmtime.wat2wasm(wat))
            self._helpers[key] = module
        return module

    def _artifact_path(self, sha: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{sha};{ENGINE_SETTINGS}".encode()).hexdigest()
        return self.cache_dir / f"{key}.cwasm"

    def _load_uncached(self, sha: str, wasm: bytes) -> Image:
        artifact = self._artifact_path(sha)
        translated = False
        if artifact is not None and artifact.exists():
            try:
                module = wasmtime.Module.deserialize(self.engine, artifact.read_bytes())
                translated = artifact.with_suffix(".translated").exists()
                return Image(sha, module, _memory64(module), translated)
            except wasmtime.WasmtimeError:
                artifact.unlink(missing_ok=True)
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as err:
            if LEGACY_EH_MARKER not in str(err):
                raise ModuleError(f"image {sha[:12]} does not compile: {err}") from err
            module = self._compile_translated(wasm)
            translated = True
        if artifact is not None:
            self._store_artifact(artifact, module.serialize(), translated)
        return Image(sha, module, _memory64(module), translated)

    def _compile_translated(self, wasm: bytes) -> wasmtime.Module:
        new = translate_legacy_exceptions(wasm, self.cache_dir)
        try:
            return wasmtime.Module(self.engine, new)
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
