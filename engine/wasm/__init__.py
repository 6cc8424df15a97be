"""aonode.engine.wasm: running AOS images in wasmtime, byte-compatible with @permaweb/ao-loader.

The public surface is what this package exports; callers outside engine/wasm import from here:

    runtime = Runtime(cache_dir)                  # compiles images once, cached on disk
    image = runtime.load(wasm_bytes)              # an Image (and its fast variant, when it has one)
    inst = Instance(runtime, image, Limits(memory=..., fuel=...))
    raw = inst.handle(msg_json, env_json)         # rollback on failure: the WasmError family
    snap = inst.snapshot()                        # a Snapshot, named by the memory's sha256

Inside (helpers; only this package imports them):
- runtime.py    Runtime and Image: one engine per Flavor, compile + disk cache, the transforms.
  builds.py     an image's builds by flavour; a node's first use prepares the variant in the background.
- flavors.py    Flavor (ORIGINAL the image itself, VARIANT its fast variant, METERED counting fuel)
                and when an instance moves between them.
- instance.py   Instance: one process image; ties the parts below together.
  linking.py    a wasmtime instance of one flavour, every import linked, started or restored.
  aos_abi.py    ao-loader's handle(msg, env) ABI: where the inputs go, the emscripten start.
  budget.py     fuel and deadlines per call, failures mapped to the WasmError family.
  journal.py    the rollback checkpoint and the messages since.
  limits.py     Limits and parse_size.
- snapshot.py   Snapshot and PendingSnapshot: zstd linear memory + host state, named by sha256.
- chunked.py    incremental content-addressed snapshots (64 KiB chunks by sha256, manifest-named),
                verified chunk by chunk on restore: what the process path stores.
  written_pages.py  the chunks written since the last snapshot, from the kernel (userfaultfd
                async write-protect + PAGEMAP_SCAN), so a snapshot compares only those.
  portable.py   read_snapshot: aonode's format, or a bare ao-loader / legacy-CU memory dump.
- ticker.py     the thread that advances epochs and sets variants' interrupt flags at deadlines.
- host.py       Host: every import (emscripten, WASI 32/64-bit, syscalls, clock, heap growth).
  guest.py      memory/exports access shared by the import groups
  cxx.py        invoke_*, longjmp and the C++ exception ABI (Python path)
  weavedrive.py WeaveDrive files and the asyncify sleep ao-loader performs around them
  drive_store.py WeaveDrive's data: local dir filled once from the gateway; legacy-CU admissibility
  memfs.py, memfs_io.py, memfs_state.py, memfs_paths.py  emscripten's MEMFS: tree, open files, snapshot, paths
  fs_syscalls.py  the libc syscalls and WASI fd imports served from it: decoding, stat, descriptors, tty
  fs_io_syscalls.py, fs_path_syscalls.py  the same for data through a descriptor, and for paths
  timefmt.py    strftime/mktime as emscripten's JS computes them
- helper.py     a WAT module serving invoke_*/longjmp/memcpy inside wasm (the hot path)
- fastcall.py   raw calls into and out of wasm, past wasmtime-py's generic call path
- transform/    Binaryen rewrites before compiling: exnref translation, the fast variant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aonode.engine.wasm.budget import ProcExitError
    from aonode.engine.wasm.drive_store import DriveStore
    from aonode.engine.wasm.flavors import Flavor
    from aonode.engine.wasm.instance import Instance
    from aonode.engine.wasm.limits import Limits, parse_size
    from aonode.engine.wasm.linking import never_runs
    from aonode.engine.wasm.portable import read_snapshot
    from aonode.engine.wasm.runtime import Image, Runtime, forget_compiled
    from aonode.engine.wasm.snapshot import PendingSnapshot, Snapshot

# Each public name's module, imported on first use (PEP 562): a cold start's compile thread needs only
# runtime.py (server/warmup.py), and begins compiling ~0.05 s sooner without the rest of the engine.
_HOMES = {
    "ProcExitError": "budget",
    "DriveStore": "drive_store",
    "Flavor": "flavors",
    "Instance": "instance",
    "Limits": "limits",
    "parse_size": "limits",
    "never_runs": "linking",
    "read_snapshot": "portable",
    "Image": "runtime",
    "Runtime": "runtime",
    "forget_compiled": "runtime",
    "PendingSnapshot": "snapshot",
    "Snapshot": "snapshot",
}

__all__ = [
    "DriveStore",
    "Flavor",
    "Image",
    "Instance",
    "Limits",
    "PendingSnapshot",
    "ProcExitError",
    "Runtime",
    "Snapshot",
    "forget_compiled",
    "never_runs",
    "parse_size",
    "read_snapshot",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
