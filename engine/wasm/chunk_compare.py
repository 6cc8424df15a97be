"""Which chunks of a live memory differ from a shadow's (chunked.py): the compare a snapshot makes.

Why native: the compare reads ~1,000-2,000 chunks of 64 KiB at every snapshot of a dense 126 MiB AOS
heap (~13 ms), on the thread whose next wasm call waits for it. Python calling libc's memcmp per
chunk must keep the GIL (a release per call lets another thread take it for a whole slot, each
time), so the background encoder and the compute thread's Python wait meanwhile too. One call into a
few lines of C compiled once with the machine's C compiler (kept beside the compile cache) compares
them all without the GIL, on two threads when the machine has more than two cores. Without a
compiler (or with AONODE_NATIVE_COMPARE=0) the same compare runs in Python: same answers, one chunk at
a time.

Why one thread on two cores: the compare is bound by memory bandwidth (~750 chunks read twice, ~96
MiB), and the other core is wanted meanwhile by the background encoder and the compute thread. On
the 2-core VM, every-slot snapshots of the 126 MiB bench heap: the compare took 2.78 ms on one thread
vs 2.70 ms on two (quiet machine), and at load 3.6-5.5 a block of 100 slots took 3.24 / 3.17 s wall,
3.00 / 2.88 s CPU on one vs 3.49 / 3.61 s, 3.13 / 3.00 s on two (two runs of 6 blocks an arm).
AONODE_COMPARE_THREADS sets it (1 or 2) for such A/Bs.

The C reads the shadow's chunks (immutable bytes objects the shadow holds) in place: a CPython bytes
object keeps its data at a fixed offset from its address, checked on a real object before use.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aonode.engine.files import aonode_home
from aonode.engine.wasm.chunk_codec import CHUNK, ZERO

ENV_SWITCH = "AONODE_NATIVE_COMPARE"  # "0": compare in Python (the A/B, tests)
THREADS_SWITCH = "AONODE_COMPARE_THREADS"


def _threads() -> int:
    """Two (the C splits a compare in halves) where a core is left for the rest, else one."""
    wanted = os.environ.get(THREADS_SWITCH, "")
    if wanted in ("1", "2"):
        return int(wanted)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if cores > 2 else 1


THREADS = _threads()
UNCHANGED, BACK, NEW = 0, 1, 2  # what a chunk is: as before, as two snapshots ago, neither

SOURCE = r"""
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *base;
    const uint64_t *offsets, *before, *again;
    unsigned char *out;
    size_t chunk, from, to;
    const unsigned char *zero;
} part;

static void *run(void *arg) {
    const part *p = arg;
    for (size_t i = p->from; i < p->to; i++) {
        const unsigned char *at = p->base + p->offsets[i];
        const unsigned char *before = (const unsigned char *)(uintptr_t)p->before[i];
        const unsigned char *again = (const unsigned char *)(uintptr_t)p->again[i];
        if (again && again != before && memcmp(at, again, p->chunk) == 0)
            p->out[i] = 1;
        else
            p->out[i] = memcmp(at, before ? before : p->zero, p->chunk) ? 2 : 0;
    }
    return NULL;
}

int aonode_compare_chunks(const unsigned char *base, const uint64_t *offsets, const uint64_t *before,
                          const uint64_t *again, unsigned char *out, size_t n, size_t chunk,
                          const unsigned char *zero, int threads) {
    part whole = {base, offsets, before, again, out, chunk, 0, n, zero};
    if (threads < 2 || n < 16) {
        run(&whole);
        return 1;
    }
    part second = whole, first = whole;
    first.to = second.from = n / 2;
    pthread_t thread;
    if (pthread_create(&thread, NULL, run, &second) != 0) {
        run(&whole);
        return 1;
    }
    run(&first);
    pthread_join(thread, NULL);
    return 2;
}
"""

_BYTES_DATA = bytes.__basicsize__ - 1  # offset of a CPython bytes object's data from its address


def _address(data: bytes | None) -> int:
    return 0 if data is None else id(data) + _BYTES_DATA


def _layout_holds() -> bool:
    probe = b"aonode chunk compare probe"
    return sys.implementation.name == "cpython" and ctypes.string_at(_address(probe), len(probe)) == probe


def _build(target: Path) -> bool:
    """Compile SOURCE into `target` (atomically: another process may build it at the same moment)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source, built = Path(tmp) / "compare.c", Path(tmp) / target.name
        source.write_text(SOURCE)
        args = [compiler, "-O2", "-shared", "-fPIC", "-pthread", "-o", str(built), str(source)]
        try:
            done = subprocess.run(args, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
        if done.returncode != 0 or not built.is_file():
            return False
        os.replace(built, target)
    return True


_lock = threading.Lock()
_native: Callable[..., int] | None = None
_loaded_in = 0  # the pid that loaded it (a build per machine, a load per process)


def _load() -> Callable[..., int] | None:
    global _native, _loaded_in
    with _lock:
        if _loaded_in == os.getpid():
            return _native
        _loaded_in, _native = os.getpid(), None
        tag = hashlib.sha256(f"{SOURCE}{platform.machine()}{sys.platform}".encode()).hexdigest()[:16]
        target = aonode_home() / "native" / f"chunk_compare-{tag}.so"
        try:
            if _layout_holds():
                # A cached build that does not load (cut short by a crash, another compiler's) is built again.
                _native = (_opened(target) if target.is_file() else None) or (
                    _opened(target) if _build(target) else None
                )
        except OSError:
            _native = None
        return _native


def _opened(target: Path) -> Callable[..., int] | None:
    """The compare in a built library, or None when it does not load."""
    try:
        func = ctypes.CDLL(str(target)).aonode_compare_chunks  # CDLL: the call lets go of the GIL
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_int
    func.argtypes = (ctypes.c_void_p,) * 5 + (ctypes.c_size_t,) * 2 + (ctypes.c_void_p, ctypes.c_int)
    return func  # type: ignore[no-any-return]


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def native() -> bool:
    """Whether compares run in C here (built and loaded once per process)."""
    return enabled() and _load() is not None


# The Python way keeps the GIL (PyDLL) for the reason above.
_libc = ctypes.PyDLL(None)
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)


def _in_python(
    address: int, offsets: Iterable[int], chunks: Mapping[int, bytes], older: Mapping[int, bytes]
) -> Iterator[tuple[int, int]]:
    for offset in offsets:
        at, before, again = address + offset, chunks.get(offset), older.get(offset)
        if before is not again and again is not None and not _libc.memcmp(at, again, CHUNK):
            yield offset, BACK
        elif _libc.memcmp(at, ZERO if before is None else before, CHUNK):
            yield offset, NEW


def differences(
    address: int, offsets: Sequence[int], chunks: Mapping[int, bytes], older: Mapping[int, bytes]
) -> Iterator[tuple[int, int]]:
    """(offset, BACK or NEW) for each chunk at `address + offset` that differs from `chunks[offset]`
    (the zero chunk when absent), in the order of `offsets`: BACK when it equals `older[offset]`, a
    different object (it flipped back), else NEW. The memory must not change meanwhile."""
    func = _load() if enabled() else None
    if func is None or len(offsets) < 16:
        return _in_python(address, offsets, chunks, older)
    import numpy  # as chunk_codec.xor: only a node taking snapshots pays for the import

    # The shadows' addresses in C-level loops (map, fromiter): one Python call per chunk cost ~0.4 ms a snapshot.
    count = len(offsets)
    where = numpy.array(offsets, numpy.uint64)
    before, again = (_addresses(numpy, map(shadow.get, offsets), count) for shadow in (chunks, older))
    out = numpy.zeros(count, numpy.uint8)
    func(
        address,
        where.ctypes.data,
        before.ctypes.data,
        again.ctypes.data,
        out.ctypes.data,
        count,
        CHUNK,
        _address(ZERO),
        THREADS,
    )
    found = numpy.flatnonzero(out)
    return zip(map(offsets.__getitem__, found.tolist()), out[found].tolist(), strict=True)


def _addresses(numpy: Any, shadows: Iterable[bytes | None], count: int) -> Any:
    """`_address` of each (0 for None), as a numpy array of uint64."""
    ids = numpy.fromiter(map(id, shadows), numpy.int64, count)
    return numpy.where(ids == id(None), 0, ids + _BYTES_DATA).astype(numpy.uint64)
