"""aonode.engine.wasm: running AOS images in wasmtime, byte-compatible with @permaweb/ao-loader.

- runtime.py   Runtime: three engines (optimized: fast variants, own interrupt flag; fast: epoch
               deadline; metered: fuel), compile + disk cache, legacy-exception translation and the
               fast variant (transform/). Image: a compiled image and its variant.
- ticker.py    the thread that advances epochs and sets variants' interrupt flags at deadlines.
- instance.py  Instance: one process image; handle(msg, env) -> raw JSON, rollback on failure
               (checkpoint + journal replay), snapshots, Limits, parse_size.
- snapshot.py  Snapshot: zstd linear memory + host state, named by the raw memory's sha256.
- host.py      Host: every import (emscripten, WASI 32/64-bit, syscalls, clock, heap growth).
  guest.py     memory/exports access shared by the import groups
  cxx.py       invoke_*, longjmp and the C++ exception ABI (Python path)
  weavedrive.py  WeaveDrive files and the asyncify sleep ao-loader performs around them
  drive_store.py WeaveDrive's data: local dir filled once from the gateway; legacy-CU admissibility
  memfs.py, memfs_io.py, memfs_state.py  emscripten's MEMFS: the tree, open files, snapshot state
  fs_syscalls.py, fs_path_syscalls.py    the libc syscalls and WASI fd imports served from it
  timefmt.py   strftime/mktime as emscripten's JS computes them
- helper.py    a WAT module serving invoke_*/longjmp/memcpy inside wasm (the hot path)
- fastcall.py  raw calls into and out of wasm, past wasmtime-py's generic call path
"""
