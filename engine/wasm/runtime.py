"""Compile images once per engine flavour; compiled artifacts are cached on disk by image hash + settings."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

import aonode.engine.wasm.ticker as ticker
from aonode.engine.errors import ModuleError
from aonode.engine.files import write_atomic
from aonode.engine.wasm.builds import Builds, prepare_in_background
from aonode.engine.wasm.flavors import Flavor
from aonode.engine.wasm.transform import INTERRUPT_EXPORT, fast_variant, translate_exnref

# One engine per flavour (flavors.py): the image's fast variant (transform/variant.py) on an engine
# without epoch or fuel checks (its loops read their own interrupt flag), the image itself on the epoch
# engine, the image itself on the fuel-counting engine.
ORIGINAL, VARIANT, METERED = Flavor.ORIGINAL, Flavor.VARIANT, Flavor.METERED
# Part of the cache key: an artifact is only valid for the engine settings it was compiled with.
ENGINE_SETTINGS = {
    METERED: "memory64=1;exceptions=1;fuel=1;spectre-heap=0;spectre-table=0;wasmtime=50;opt=none",
    ORIGINAL: "memory64=1;exceptions=1;epoch=1;spectre-heap=0;spectre-table=0;wasmtime=50",
    VARIANT: "memory64=1;exceptions=1;multi-memory=1;interrupt-flag=1;spectre-heap=0;spectre-table=0;"
    "wasmtime=50;variant=fast-v3;threads=1",
}
# Cranelift's optimiser level per flavour. The metered build is what a first use waits for, and without
# the optimiser it compiles in ~70% of the CPU time (AOS: ~1.3 vs ~1.8 CPU-s) and ran AOS messages no
# slower when measured: the images are optimised by their own toolchain already. Fuel is added per wasm
# operator as the module is translated, before Cranelift optimises anything, so the fuel used, the
# outputs and the memory are the same at every level (tests/test_metered_opt_level.py).
OPT_LEVELS = {METERED: "none", ORIGINAL: "speed", VARIANT: "speed"}
LEGACY_EH_MARKER = "legacy_exceptions"
log = logging.getLogger("aonode.engine")
SLOWER = "same results, ~1.8x slower; AONODE_FAST_VARIANT=0 silences this"


@dataclass(frozen=True)
class Image:
    """A compiled image; `sha256` is of the bytes the user gave (before any translation).
    `module` is its first build (imports and exports are the same in every build); `builds` holds
    every build compiled so far (builds.py), some perhaps still being prepared in the background, and
    `Runtime.module_for` compiles the others on demand. `variant` is the fast variant, when the image
    has one (yet): it cannot suspend (asyncify), and its memory has 32-bit addresses when
    `variant_lowered`."""

    sha256: str
    module: wasmtime.Module = field(repr=False, compare=False)
    memory64: bool = False  # the image's pointers are 64-bit (its ABI; the same in every variant)
    translated: bool = False
    builds: Builds = field(default_factory=lambda: Builds({}), repr=False, compare=False)

    @property
    def variant(self) -> wasmtime.Module | None:
        return self.builds.get(VARIANT)

    @property
    def variant_lowered(self) -> bool:
        return self.builds.variant_lowered

    @property
    def preparing(self) -> bool:
        """Its fast variant is being prepared in the background (instances start metered meanwhile)."""
        return self.builds.preparing

    def wait_variant(self, timeout: float | None = None) -> bool:
        """Block until the background preparation is over; False on timeout."""
        return self.builds.wait(timeout)

    def memory_index64(self, flavor: Flavor) -> bool:
        """Whether the module run in this flavour addresses its memory with 64-bit indexes."""
        return self.memory64 and not (flavor == VARIANT and self.variant_lowered)

    @property
    def export_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.module.exports)


def make_engine(flavor: Flavor = METERED, *, quiet: bool = False, opt_level: str | None = None) -> wasmtime.Engine:
    """METERED counts fuel (deterministic compute limits); ORIGINAL only checks an epoch deadline, which
    costs about half as much per message and is enough to stop a runaway loop; VARIANT runs fast
    variants, whose loops check their own interrupt flag (transform/variant.py), so it checks nothing.
    A `quiet` engine only compiles, on the calling thread: its code is the same, and is moved into the
    flavour's engine (serialize, deserialize), but it stays off the compile thread pool the node's own
    compiles use, so a background preparation does not queue ahead of them. `opt_level` overrides
    OPT_LEVELS (the tests compare the levels)."""
    config = wasmtime.Config()
    config.cranelift_opt_level = opt_level or OPT_LEVELS[flavor]
    config.parallel_compilation = not quiet
    config.wasm_memory64 = True
    config.wasm_exceptions = True
    config.wasm_multi_memory = flavor == VARIANT
    config.wasm_threads = flavor == VARIANT  # atomic loads of the interrupt flag
    config.consume_fuel = flavor == METERED
    config.epoch_interruption = flavor == ORIGINAL
    # Speculative-load hardening on every memory/table access costs ~8% per message; V8, which the
    # reference loader runs on, does not apply it to wasm either.
    config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false")
    config.cranelift_flag_set("enable_table_access_spectre_mitigation", "false")
    engine = wasmtime.Engine(config)
    if flavor == ORIGINAL and not quiet:
        ticker.register(engine)
    return engine


def _memory64(module: wasmtime.Module) -> bool:
    for ext in list(module.exports) + list(module.imports):
        if isinstance(ext.type, wasmtime.MemoryType):
            return bool(ext.type.is_64)
    return False


@dataclass(frozen=True)
class _Compiled:
    """One compiled build: `module` is None when an image has no fast variant; `flag` is "translated"
    (legacy exceptions) for the image itself and "lowered" (32-bit addresses) for the variant."""

    module: wasmtime.Module | None
    flag: bool
    transient: bool = False  # no variant for now (no wasm-opt installed): neither kept nor cached


# Engines are shared by every Runtime in the process (wasmtime engines are thread-safe), so the epoch
# ticker only ever ticks engines that live as long as the process; compiled builds are shared too.
_ENGINES: dict[tuple[Flavor, bool], wasmtime.Engine] = {}
_COMPILED: dict[tuple[str, Flavor], _Compiled] = {}
_BUILDING: dict[tuple[str, Flavor], threading.Lock] = {}  # one compile of a build at a time: others wait for it
_WRITING: set[Path] = set()  # artifacts being written now (by one thread; the others go on)
_SHARED_LOCK = threading.Lock()
_FLAG_SUFFIX = {ORIGINAL: ".translated", METERED: ".translated", VARIANT: ".lowered"}


def forget_compiled() -> None:
    """Drop the process's compiled builds (benchmarks measuring a cold start use it)."""
    with _SHARED_LOCK:
        _COMPILED.clear()


def shared_engine(flavor: Flavor, *, quiet: bool = False) -> wasmtime.Engine:
    """The process's engine for a flavour (its `quiet` one only compiles: make_engine)."""
    with _SHARED_LOCK:
        if (flavor, quiet) not in _ENGINES:
            _ENGINES[flavor, quiet] = make_engine(flavor, quiet=quiet)
        return _ENGINES[flavor, quiet]


class Runtime:
    """Loads images: `load` returns compiled images, from this process, the disk cache, or a fresh
    compile (and, for images that have one, their fast variant). With `background=True` (a node) an
    image whose variant is not compiled yet comes back at once, compiled for the metered engine, and
    the variant is prepared on a background thread (builds.py)."""

    def __init__(
        self, cache_dir: Path | None = None, *, fast_variant: bool | None = None, background: bool = False
    ) -> None:
        self.metered_engine = shared_engine(METERED)
        self.original_engine = shared_engine(ORIGINAL)
        self.variant_engine = shared_engine(VARIANT)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        # The fast variants are on unless asked otherwise (AONODE_FAST_VARIANT=0 for a whole node).
        self.fast_variant = (
            fast_variant if fast_variant is not None else os.environ.get("AONODE_FAST_VARIANT", "1") != "0"
        )
        self.background = background
        self._images: dict[str, Image] = {}
        self._sources: dict[str, bytes] = {}
        self._helpers: dict[tuple[str, Flavor], wasmtime.Module] = {}
        self._loading: dict[str, threading.Lock] = {}  # one load of an image at a time (one Image, one preparation)

    def engine_for(self, flavor: Flavor) -> wasmtime.Engine:
        return {METERED: self.metered_engine, ORIGINAL: self.original_engine, VARIANT: self.variant_engine}[flavor]

    def load(self, wasm: bytes, name: str | None = None) -> Image:
        """`name` (a catalogue name or reference) only labels the notices about this image."""
        sha = hashlib.sha256(wasm).hexdigest()
        image = self._images.get(sha)
        if image is None:
            with _SHARED_LOCK:
                loading = self._loading.setdefault(sha, threading.Lock())
            with loading:
                image = self._images.get(sha)
                if image is None:
                    label = f"{name} ({sha[:12]})" if name else sha[:12]
                    self._sources[sha] = wasm
                    image = self._images[sha] = self._load(sha, wasm, label)
        return image

    def _load(self, sha: str, wasm: bytes, label: str) -> Image:
        variant = self._cached(sha, VARIANT) if self.fast_variant else _Compiled(None, False)
        if variant is None and self.background:  # first use: run metered now, prepare the rest meanwhile
            first = self._compiled(sha, METERED, lambda: self._compile(sha, wasm, METERED))
            assert first.module is not None, "the image itself compiled"
            builds = Builds({METERED: first.module}, preparing=True)
            prepare_in_background(sha, builds, lambda: self._prepare(sha, wasm, label, builds))
            return Image(sha, first.module, _memory64(first.module), first.flag, builds)
        own = self._compiled(sha, ORIGINAL, lambda: self._compile(sha, wasm, ORIGINAL))
        assert own.module is not None, "the image itself compiled"
        if variant is None:
            variant = self._compiled(sha, VARIANT, lambda: self._compile_variant(label, wasm, own))
        modules = {ORIGINAL: own.module} | ({VARIANT: variant.module} if variant.module is not None else {})
        return Image(sha, own.module, _memory64(own.module), own.flag, Builds(modules, variant_lowered=variant.flag))

    def _prepare(self, sha: str, wasm: bytes, label: str, builds: Builds) -> tuple[wasmtime.Module | None, bool]:
        """The background part of a first use: the image for the epoch engine, then its variant."""
        own = self._compiled(sha, ORIGINAL, lambda: self._compile(sha, wasm, ORIGINAL, quiet=True))
        assert own.module is not None, "the image itself compiled"
        builds.add(ORIGINAL, own.module)
        variant = self._compiled(sha, VARIANT, lambda: self._compile_variant(label, wasm, own, quiet=True))
        return variant.module, variant.flag

    def load_path(self, path: Path) -> Image:
        return self.load(Path(path).read_bytes())

    def module_for(self, image: Image, flavor: Flavor) -> wasmtime.Module:
        """The build a flavour runs (the metered one, or the image itself while it is prepared in the
        background, is compiled on first use: most processes never need it)."""
        module = image.builds.get(flavor)
        if module is not None:
            return module
        if flavor == VARIANT:
            raise ModuleError(f"image {image.sha256[:12]} has no fast variant")
        source = self._sources.get(image.sha256)
        if source is None:
            raise ModuleError(f"image {image.sha256[:12]} was not loaded by this runtime")
        module = self._compiled(image.sha256, flavor, lambda: self._compile(image.sha256, source, flavor)).module
        assert module is not None, "the image itself compiled"
        image.builds.add(flavor, module)
        return module

    def compile_wat(self, wat: str, flavor: Flavor = METERED) -> wasmtime.Module:
        """Small helper modules written in WAT, compiled once per runtime and engine."""
        key = (hashlib.sha256(wat.encode()).hexdigest(), flavor)
        module = self._helpers.get(key)
        if module is None:
            module = wasmtime.Module(self.engine_for(flavor), wasmtime.wat2wasm(wat))
            self._helpers[key] = module
        return module

    # ---- builds: process cache, then disk artifact, then compile ------------------------------------
    def _cached(self, sha: str, flavor: Flavor) -> _Compiled | None:
        """A build this process or the disk cache already has; None when it must be made."""
        with _SHARED_LOCK:
            found = _COMPILED.get((sha, flavor))
        artifact = self._artifact_path(sha, flavor)
        if found is None and artifact is not None:
            found = self._read_artifact(artifact, flavor)
            if found is not None:
                with _SHARED_LOCK:
                    found = _COMPILED.setdefault((sha, flavor), found)
        return found

    def _compiled(self, sha: str, flavor: Flavor, build: Callable[[], _Compiled]) -> _Compiled:
        found = self._cached(sha, flavor)
        if found is None:
            with _SHARED_LOCK:
                building = _BUILDING.setdefault((sha, flavor), threading.Lock())
            with building:  # a second first use (another worker, a warm-up) waits instead of compiling again
                found = self._cached(sha, flavor)
                if found is None:
                    found = build()
                    if found.transient:
                        return found
                    with _SHARED_LOCK:  # before the waiters wake: they find it instead of compiling again
                        found = _COMPILED.setdefault((sha, flavor), found)
        with _SHARED_LOCK:
            found = _COMPILED.setdefault((sha, flavor), found)
        artifact = self._artifact_path(sha, flavor)
        if artifact is not None and not (artifact.exists() or artifact.with_suffix(".none").exists()):
            with _SHARED_LOCK:  # one writer: a first use that waited for the build does not write it again
                writing = artifact in _WRITING
                _WRITING.add(artifact)
            if not writing:
                try:
                    self._write_artifact(artifact, flavor, found)
                finally:
                    with _SHARED_LOCK:
                        _WRITING.discard(artifact)
        return found

    def _module(self, flavor: Flavor, wasm: bytes, quiet: bool) -> wasmtime.Module:
        if not quiet:
            return wasmtime.Module(self.engine_for(flavor), wasm)
        code = wasmtime.Module(shared_engine(flavor, quiet=True), wasm).serialize()
        return wasmtime.Module.deserialize(self.engine_for(flavor), code)

    def _compile(self, sha: str, wasm: bytes, flavor: Flavor, *, quiet: bool = False) -> _Compiled:
        try:
            return _Compiled(self._module(flavor, wasm, quiet), False)
        except wasmtime.WasmtimeError as err:
            if LEGACY_EH_MARKER not in str(err):
                raise ModuleError(f"image {sha[:12]} does not compile: {err}") from err
        new = translate_exnref(wasm, self.cache_dir)
        try:
            return _Compiled(self._module(flavor, new, quiet), True)
        except wasmtime.WasmtimeError as err:
            raise ModuleError(f"translated image does not compile: {err}") from err

    def _compile_variant(self, label: str, wasm: bytes, own: _Compiled, *, quiet: bool = False) -> _Compiled:
        assert own.module is not None, "the image itself compiled"
        source = translate_exnref(wasm, self.cache_dir) if own.flag else wasm
        try:
            variant = fast_variant(source, own.module, label=label)
        except ModuleError as err:
            log.warning("image %s runs without its fast variant (%s): %s", label, SLOWER, err)
            return _Compiled(None, False, transient=True)
        if variant is None:
            return _Compiled(None, False)
        try:
            module = self._module(VARIANT, variant.wasm, quiet)
        except wasmtime.WasmtimeError as err:
            log.warning("image %s runs without its fast variant (%s): it does not compile: %s", label, SLOWER, err)
            return _Compiled(None, False)
        if {e.name for e in module.exports} != {e.name for e in own.module.exports} | {INTERRUPT_EXPORT}:
            log.warning(
                "image %s runs without its fast variant (%s): its exports differ from the image's", label, SLOWER
            )
            return _Compiled(None, False)
        return _Compiled(module, variant.lowered)

    def _artifact_path(self, sha: str, flavor: Flavor) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{sha};{ENGINE_SETTINGS[flavor]}".encode()).hexdigest()
        return self.cache_dir / f"{key}.cwasm"

    def _read_artifact(self, path: Path, flavor: Flavor) -> _Compiled | None:
        if path.with_suffix(".none").exists():
            return _Compiled(None, False)
        if not path.exists():
            return None
        try:
            module = wasmtime.Module.deserialize(self.engine_for(flavor), path.read_bytes())
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)
            return None
        return _Compiled(module, path.with_suffix(_FLAG_SUFFIX[flavor]).exists())

    @staticmethod
    def _write_artifact(path: Path, flavor: Flavor, compiled: _Compiled) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if compiled.module is None:
            path.with_suffix(".none").touch()
            return
        if compiled.flag:
            path.with_suffix(_FLAG_SUFFIX[flavor]).touch()
        write_atomic(path, compiled.module.serialize())
