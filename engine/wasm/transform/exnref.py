"""Legacy wasm exceptions → exnref, so wasmtime (memory64 + exceptions) can run older AOS builds.

Some AOS images (e.g. HyperBEAM's `aos-2-pure-xs.wasm`) were compiled with the legacy exception
proposal (`try`/`catch`/`delegate`). Wasmtime only implements the standardised exnref form, so we
translate those images once with Binaryen and keep the result on disk keyed by the input's sha256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import wasmtime

from aonode.engine.errors import ModuleError
from aonode.engine.wasm.transform.wasm_opt import FEATURES, default_cache_dir, find_wasm_opt, run_wasm_opt

PASS = ("--translate-to-exnref", "--debuginfo")  # --debuginfo keeps the names section: traps stay readable
_LEGACY_MARKER = "legacy_exceptions"


@lru_cache(maxsize=1)
def _validator() -> wasmtime.Engine:
    """An engine with every feature AOS images use, so the only refusal left is the legacy one."""
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_exceptions = True
    config.wasm_multi_value = True
    config.wasm_bulk_memory = True
    config.wasm_reference_types = True
    config.wasm_simd = True
    config.wasm_tail_call = True
    return wasmtime.Engine(config)


def needs_translation(wasm: bytes) -> bool:
    """True when wasmtime refuses the image only because it uses legacy exception instructions.

    Validation is a few milliseconds even for full AOS images, and asking the engine we actually
    run on is more faithful than re-implementing an opcode decoder. Other validation errors return
    False: the runtime reports them when it compiles the image.
    """
    try:
        wasmtime.Module.validate(_validator(), wasm)
    except wasmtime.WasmtimeError as err:
        return _LEGACY_MARKER in str(err)
    return False


def cache_path(wasm: bytes, cache_dir: Path | None = None) -> Path:
    """Where the translation of these exact bytes lives."""
    digest = hashlib.sha256(wasm).hexdigest()
    return (cache_dir or default_cache_dir()) / f"{digest}.exnref.wasm"


def translate(wasm: bytes, cache_dir: Path | None = None) -> bytes:
    """The exnref form of `wasm`, produced once per distinct input and reused from the cache after."""
    target = cache_path(wasm, cache_dir)
    if target.is_file():
        return target.read_bytes()
    tool = find_wasm_opt()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".exnref-") as tmp:
        src, out = Path(tmp) / "in.wasm", Path(tmp) / "out.wasm"
        src.write_bytes(wasm)
        run_wasm_opt(tool, [*FEATURES, *PASS, str(src), "-o", str(out)], "--translate-to-exnref")
        if not out.is_file():
            raise ModuleError("wasm-opt --translate-to-exnref wrote nothing")
        translated = out.read_bytes()
        if needs_translation(translated):
            raise ModuleError("wasm-opt output still uses legacy exception instructions")
        os.replace(out, target)  # atomic: concurrent callers see either nothing or the whole file
    return translated
