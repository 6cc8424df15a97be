"""The fast variant of an AOS image: the same program for every message that never suspends.

AOS images are built with emscripten's Asyncify so WeaveDrive can block on a JS promise. Asyncify
instruments almost every function with reads of one global (normal / unwinding / rewinding) around
every call; under wasmtime that bookkeeping is about a quarter of a message, yet the state only leaves
"normal" while an `__asyncjs__*` import suspends. The variant reads that global as the constant 0 and
lets Binaryen's -O3 delete the dead branches. A wasm64 image whose memory is capped at 4 GiB or less
is also lowered to 32-bit addresses (`--memory64-lowering`): wasmtime then elides bounds checks with
guard pages. Pointers stay 64-bit values, data layout and every store are unchanged, so linear memory
stays byte-identical to the original's; the engine runs the original for any message that calls an
`__asyncjs__` import (tests/test_wasm_variant.py checks both claims on the real images).

Last, every loop of the variant starts by reading one byte of a second, one-page memory it exports as
`aonode_interrupt`, and traps if the byte is set (an atomic read: a plain one may be reused from an
outer loop by the compiler, and then the inner loop never sees the byte change). A loop header is the
only place wasm jumps backwards, so a message cannot run forever without passing one (unbounded
recursion ends in a stack overflow): the host sets the byte at the message's deadline. That costs ~3%
of a message, where wasmtime's epoch checks (every function entry and loop) cost ~17%, so the variant
runs on an engine without them.

One difference is left by construction: a wasm64 load or store at an address of 4 GiB or more traps in
the original, while the lowered variant wraps it to 32 bits. Only a pointer-corrupting bug in the
image's C code can form such an address (Lua itself cannot), and that is the one case where the variant
and the reference would part; set AONODE_FAST_VARIANT=0 to run every message on the image itself.

Made once per image and Binaryen version, kept next to the exnref translations.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from aonode.engine.errors import ModuleError
from aonode.engine.files import write_atomic
from aonode.engine.progress import PROGRESS
from aonode.engine.wasm.transform.wasm_opt import (
    FEATURES as BASE_FEATURES,
    Stopped,
    default_cache_dir,
    find_wasm_opt,
    run_wasm_opt,
)

RECIPE = "fast-v3"  # part of the cache name: change it whenever the transformation changes
MAX_LOWERED_PAGES = 65536  # 4 GiB: what 32-bit addresses reach
FEATURES = (*BASE_FEATURES, "--enable-multimemory", "--enable-threads")
STATE_EXPORT = "asyncify_get_state"
INTERRUPT_EXPORT = "aonode_interrupt"  # the variant's one-page memory: byte 0 set stops every loop
_NONE = b"none"  # cache content meaning "this image has no fast variant"
log = logging.getLogger("aonode.engine")


@dataclass(frozen=True)
class Variant:
    wasm: bytes
    lowered: bool  # its memory has 32-bit addresses (pointers in memory and in calls stay 64-bit)


def plan(module: wasmtime.Module) -> tuple[bool, bool]:
    """(de-asyncify?, lower memory64?) for an image, from its compiled module."""
    exports = {e.name for e in module.exports}
    memories = [e.type for e in module.exports if isinstance(e.type, wasmtime.MemoryType)]
    imported = any(isinstance(i.type, wasmtime.MemoryType) for i in module.imports)
    lower = (
        len(memories) == 1
        and not imported
        and memories[0].is_64
        and memories[0].limits.max is not None
        and memories[0].limits.max <= MAX_LOWERED_PAGES
    )
    return STATE_EXPORT in exports, lower


def fast_variant(
    wasm: bytes, module: wasmtime.Module, cache_dir: Path | None = None, label: str | None = None
) -> Variant | None:
    """The variant of `wasm` (compiled as `module`), cached; None when there is nothing to gain or
    Binaryen refused the image. Raises ModuleError when no wasm-opt is installed (try again later)."""
    deasync, lower = plan(module)
    if not (deasync or lower):
        return None
    digest = hashlib.sha256(wasm).hexdigest()
    target = (cache_dir or default_cache_dir()) / f"{digest}.{RECIPE}.wasm"
    if target.is_file():
        data = target.read_bytes()
        return None if data == _NONE else Variant(data, lower)
    tool = find_wasm_opt()
    label = label or digest[:12]
    log.info("preparing the fast variant of image %s (once per machine, ~10 s)", label)
    try:
        with PROGRESS.task(f"preparing the fast variant of image {digest[:12]} (once per machine)"):
            data = _derive(tool, wasm, deasync, lower)
    except Stopped:
        raise  # this process is exiting: the next one tries again
    except ModuleError as err:  # the original still runs: record the refusal, do not retry every start
        log.warning(
            "no fast variant for image %s (it runs as it is: same results, ~1.8x slower): "
            "Binaryen could not derive one: %s",
            label,
            err,
        )
        data = _NONE
    write_atomic(target, data)
    return None if data == _NONE else Variant(data, lower)


def _derive(tool: Path, wasm: bytes, deasync: bool, lower: bool) -> bytes:
    with tempfile.TemporaryDirectory(prefix="aonode-variant-") as tmp:
        src, text, out = Path(tmp) / "in.wasm", Path(tmp) / "in.wat", Path(tmp) / "out.wasm"
        src.write_bytes(wasm)
        if deasync:
            run_wasm_opt(tool, [*FEATURES, str(src), "-S", "-o", str(text)])
            text.write_text(fold_asyncify_state(text.read_text()))
            src = text
        passes = (["--memory64-lowering"] if lower else []) + ["-O3"]
        run_wasm_opt(tool, [*FEATURES, "--debuginfo", str(src), *passes, "-S", "-o", str(text)])
        text.write_text(add_interrupt_checks(text.read_text()))
        run_wasm_opt(tool, [*FEATURES, "--debuginfo", str(text), "-o", str(out)])
        return out.read_bytes()


_MEMORY = re.compile(r"^ \(memory (\$[^\s)]+)[^\n]*\)$", re.MULTILINE)
_LOOP = re.compile(r"\(loop \$[^\s()]+(?:\s*\((?:type|param|result)[^()]*\))*")


def add_interrupt_checks(wat: str) -> str:
    """A one-page memory exported as INTERRUPT_EXPORT, read at the start of every loop."""
    memories = _MEMORY.findall(wat)
    if len(memories) != 1:
        raise ModuleError(f"expected one defined memory in the variant, found {len(memories)}")
    memory = _MEMORY.search(wat)
    if memory is None:
        raise ModuleError("no memory declaration in the variant's text")
    flag = "$aonode_interrupt"
    declare = f'\n (memory {flag} 1 1)\n (export "{INTERRUPT_EXPORT}" (memory {flag}))'
    wat = wat[: memory.end()] + declare + wat[memory.end() :]
    check = f"\n (if (i32.atomic.load8_u {flag} (i32.const 0)) (then (unreachable)))"
    return _LOOP.sub(lambda m: m.group(0) + check, wat)


def fold_asyncify_state(wat: str) -> str:
    """Every read of Asyncify's state global becomes `i32.const 0` (normal)."""
    export = re.search(rf'\(export "{STATE_EXPORT}" \(func (\$[^\s)]+)\)\)', wat)
    if export is None:
        raise ModuleError(f"no {STATE_EXPORT} export in the disassembly")
    body = wat.find(f"(func {export.group(1)} ")
    read = re.compile(r"\(global\.get (\$[^\s)]+)\)").search(wat, body) if body >= 0 else None
    if read is None:
        raise ModuleError(f"cannot find the global {STATE_EXPORT} returns")
    folded = wat.replace(read.group(0), "(i32.const 0)")
    if f"(global.set {read.group(1)}" not in folded:
        raise ModuleError("the asyncify state global is never set: not an Asyncify build")
    return folded
