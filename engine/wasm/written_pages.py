"""Which 64 KiB chunks of a linear memory were written since the last look, from the kernel's
page tables: a snapshot then compares only those with its shadow (chunked.py), not the whole memory.

How (Linux >= 6.7): one userfaultfd per Python process in asynchronous write-protect mode. A
registered range is write-protected; the first write to a protected page lifts the protection in
the kernel itself (no fault reaches this process), whoever writes (wasm, a host import, a restore,
a syscall filling a buffer). One PAGEMAP_SCAN ioctl on /proc/self/pagemap lists the pages not
protected (written since), ~0.1 ms for 64 MiB. A look only scans; after the snapshot's compare,
`protect` write-protects the memory again, at a memory's first look and then every `cycle` looks
(256 to 4096), but not the chunks the compare found changed: Lua's collector rewrites most of
those at the next message too, and each of their pages would fault there, in the message's own CPU
time (~11,600 faults, +15-30 ms on a 35-45 ms Transfer of a 120 MiB heap: enough to pass the time
bound that proves a message stayed under its fuel, budget.py, and have it redone metered). A chunk
left unprotected is reported at every look until the next protection: compared, as it would be
after its fault anyway. (Soft-dirty bits, the older way, do not work on every kernel this runs on.)

Soundness first: a missed write would be a wrong snapshot served as right. So the answer is None,
"compare everything", whenever the answer cannot be trusted: no kernel support (probed once per
Python process with a write from user space and one from the kernel, each checked to be found),
`AONODE_DIRTY_PAGES=0`, the first look at a memory, a memory that moved or changed size, a failed
scan (PM_SCAN_CHECK_WPASYNC fails it on any page of the range not under asynchronous
write-protect, e.g. a range mapped anew at the same address), a fork (the fds would speak of the
parent). An over-report is only slower. Not covered: MADV_DONTNEED on anonymous memory (it zeroes
pages without a write); neither wasmtime nor this node does that to a live memory.

Nothing may write the memory from a look to its `protect` (the caller takes snapshots between wasm
calls): a page written in between would be protected unseen. Any set of protected pages is sound
once the compare has brought the shadow to the memory's contents: a page is only skipped while it
stays protected, that is unwritten since.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aonode.engine.wasm.chunk_codec import CHUNK

ENV_SWITCH = "AONODE_DIRTY_PAGES"  # "0": every snapshot compares the whole memory (the A/B, tests)

_SYSCALL = {"x86_64": 323, "amd64": 323, "aarch64": 282, "arm64": 282}  # userfaultfd(2)
_UFFD_USER_MODE_ONLY = 1
_UFFD_API = 0xAA
_FEATURE_WP_UNPOPULATED = 1 << 13  # protect pages never touched too (a marker in the empty entry)
_FEATURE_WP_ASYNC = 1 << 15  # a write to a protected page un-protects it, no event
_UFFDIO_API = 0xC018AA3F
_UFFDIO_REGISTER = 0xC020AA00
_UFFDIO_WRITEPROTECT = 0xC018AA06
_REGISTER_MODE_WP = 1 << 1
_WRITEPROTECT_MODE_WP = 1 << 0
_PAGEMAP_SCAN = 0xC0606610
_PM_SCAN_CHECK_WPASYNC = 1 << 1  # fail on any page not under asynchronous write-protect
_PAGE_IS_WRITTEN = 1 << 1
_REGIONS = 1024  # page ranges per scan call; a longer answer takes several calls
# What tracking costs: the first write to a protected page takes a fault, ~2 µs of the writer's CPU
# alone, but far more in the served path on this 2-CPU VM (up to ~30 µs a page). What it saves: ~3 µs
# per unwritten 64 KiB chunk not compared. Lua's collector re-marks much of a heap at every message
# (aos2_0_6 with a 120 MiB heap: ~11,600 of 32,000 pages per Transfer), so the memory is protected
# again only every `cycle` looks, and then not where the last slot changed it (see above). A cycle
# starts at RELEARN looks; one whose faults (pages written in chunks it protected) cost more than its
# looks saved makes the next RELEARN_GROWTH times as long (up to RELEARN_MAX).
RELEARN = 256
RELEARN_GROWTH, RELEARN_MAX = 4, 4096
PAGE_FAULT_IN_CHUNK_COMPARES = 10.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)


class _Api(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class _Register(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("start", "len", "mode", "ioctls")]


class _WriteProtect(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("start", "len", "mode")]


class _Scan(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint64)
        for n in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class _Region(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


def _ioctl(fd: int, request: int, arg: ctypes.Structure) -> int:
    done = _libc.ioctl(fd, request, ctypes.addressof(arg))
    if done < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(done)


@dataclass
class _Kernel:
    """This Python process's userfaultfd and pagemap fds (one pair, shared by every tracked memory:
    a registration ends with its mapping, so nothing is held per instance)."""

    uffd: int
    pagemap: int
    pid: int

    def register(self, address: int, size: int) -> bool:
        """Register [address, address+size) for write-protect (again, after a grow: the same fd may);
        nothing is protected yet."""
        try:
            _ioctl(self.uffd, _UFFDIO_REGISTER, _Register(address, size, _REGISTER_MODE_WP, 0))
        except OSError:
            return False
        return True

    def protect(self, address: int, size: int) -> bool:
        try:
            _ioctl(self.uffd, _UFFDIO_WRITEPROTECT, _WriteProtect(address, size, _WRITEPROTECT_MODE_WP))
        except OSError:
            return False
        return True

    def arm(self, address: int, size: int) -> bool:
        """Register [address, address+size) and protect it all."""
        return self.register(address, size) and self.protect(address, size)

    def scan(self, address: int, size: int) -> list[tuple[int, int]] | None:
        """The page ranges of [address, address+size) written since last protected; None: unknown."""
        return None if (found := self.scan_array(address, size)) is None else [(a, b) for a, b in found.tolist()]

    def scan_array(self, address: int, size: int) -> Any:
        """`scan` as a numpy array of (start, end) rows, int64: read from the kernel's answer at once
        (two ctypes attribute reads per range cost ~0.1 ms a snapshot)."""
        import numpy  # as chunk_codec.xor: only a node taking snapshots pays for the import

        regions = (_Region * _REGIONS)()
        rows = numpy.frombuffer(memoryview(regions).cast("B"), numpy.int64).reshape(_REGIONS, 3)
        flags = _PM_SCAN_CHECK_WPASYNC
        end, start, found = address + size, address, []
        while start < end:
            arg = _Scan(ctypes.sizeof(_Scan), flags, start, end, 0, ctypes.addressof(regions), _REGIONS)
            arg.category_mask = arg.return_mask = _PAGE_IS_WRITTEN
            try:
                count = _ioctl(self.pagemap, _PAGEMAP_SCAN, arg)
            except OSError:
                return None
            found.append(rows[:count, :2].copy())
            if arg.walk_end <= start or arg.walk_end > end:
                return None  # no progress or out of range: do not guess
            start = arg.walk_end
        return found[0] if len(found) == 1 else numpy.concatenate(found) if found else numpy.empty((0, 2), numpy.int64)

    def close(self) -> None:
        os.close(self.uffd)
        os.close(self.pagemap)


def _open() -> _Kernel | None:
    number = _SYSCALL.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or number is None:
        return None
    flags = os.O_CLOEXEC | os.O_NONBLOCK
    uffd = int(_libc.syscall(ctypes.c_long(number), ctypes.c_long(flags)))
    if uffd < 0:  # not root and vm.unprivileged_userfaultfd=0: user-mode faults are all async WP needs
        uffd = int(_libc.syscall(ctypes.c_long(number), ctypes.c_long(flags | _UFFD_USER_MODE_ONLY)))
    if uffd < 0:
        return None
    wanted = _FEATURE_WP_ASYNC | _FEATURE_WP_UNPOPULATED
    try:
        api = _Api(_UFFD_API, wanted, 0)
        _ioctl(uffd, _UFFDIO_API, api)
        if api.features & wanted != wanted:
            raise OSError("userfaultfd lacks asynchronous write-protect")
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(uffd)
        return None
    return _Kernel(uffd, pagemap, os.getpid())


def _found_exactly(kernel: _Kernel, memory: mmap.mmap, pages: set[int], protect: bool = True) -> bool:
    """Whether exactly `pages` are reported written; then protects the memory again when `protect`."""
    page = mmap.PAGESIZE
    anchor = ctypes.c_char.from_buffer(memory)
    address = ctypes.addressof(anchor)
    del anchor  # no export left: the mmap may be closed
    ranges = kernel.scan(address, len(memory))
    if protect and not kernel.protect(address, len(memory)):
        return False
    if ranges is None:
        return False
    seen = {p for start, end in ranges for p in range((start - address) // page, (end - address) // page)}
    return seen == pages


def _self_test(kernel: _Kernel) -> bool:
    """Register small anonymous and memfd copy-on-write memories (wasmtime's two kinds), protect all
    but their first page (populated: it stays reported, as a changed chunk left unprotected does),
    write one page from Python and one from the kernel (read(2) into it), and check that exactly
    those and the first are found (twice without protecting, once protecting all), then nothing,
    then a page written again."""
    page = mmap.PAGESIZE
    for kind in ("anonymous", "memfd"):
        if kind == "memfd":
            fd = os.memfd_create("aonode-written-pages-probe", os.MFD_CLOEXEC)
            os.ftruncate(fd, 4 * page)
            memory = mmap.mmap(fd, 4 * page, flags=mmap.MAP_PRIVATE)
            os.close(fd)
        else:
            memory = mmap.mmap(-1, 4 * page)
        try:
            memory[0:1] = b"\x01"  # populated before arming, like an image's data
            anchor = ctypes.c_char.from_buffer(memory)
            address = ctypes.addressof(anchor)
            del anchor
            if not kernel.register(address, 4 * page) or not kernel.protect(address + page, 3 * page):
                return False
            if not _found_exactly(kernel, memory, {0}, protect=False):
                return False
            memory[page + 5 : page + 6] = b"\x07"
            read, write = os.pipe()
            try:
                os.write(write, b"kernel")
                with memoryview(memory) as view:
                    os.readv(read, [view[3 * page : 3 * page + 6]])
            finally:
                os.close(read)
                os.close(write)
            for protect in (False, False, True):
                if not _found_exactly(kernel, memory, {0, 1, 3}, protect):
                    return False
            if not _found_exactly(kernel, memory, set()):
                return False
            memory[3 * page : 3 * page + 1] = b"\x02"
            if not _found_exactly(kernel, memory, {3}):
                return False
        finally:
            memory.close()
    return True


def _passes(kernel: _Kernel) -> bool:
    """The self-test, where a failure to make its probe memories or pipe (e.g. no fd left) is a no:
    the snapshots then compare whole, and the next process probes again."""
    try:
        return _self_test(kernel)
    except OSError:
        return False


_lock = threading.Lock()
_kernel: _Kernel | None = None
_probed_in = 0  # the pid that probed: a forked child probes afresh


def _the_kernel() -> _Kernel | None:
    global _kernel, _probed_in
    with _lock:
        if _probed_in != os.getpid():
            _kernel, _probed_in = None, os.getpid()  # a parent's fds stay open: closing them is its job
            kernel = _open()
            if kernel is not None and _passes(kernel):
                _kernel = kernel
            elif kernel is not None:
                kernel.close()
        return _kernel


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def available() -> bool:
    """Whether this machine's kernel tracks written pages as this module needs (probed once)."""
    return _the_kernel() is not None


def _chunks_in(ranges: Any, address: int, size: int) -> list[int]:
    """The offsets, in order, of the chunks of [address, address+size) that the byte ranges (numpy
    rows of start, end) touch: counted at once (a Python set of ranges cost ~0.15 ms a snapshot)."""
    import numpy

    count = size // CHUNK
    first = numpy.maximum(ranges[:, 0], address) - address
    last = numpy.minimum(ranges[:, 1], address + size) - address
    touched = last > first
    starts, ends = first[touched] // CHUNK, (last[touched] - 1) // CHUNK + 1
    depth = numpy.cumsum(numpy.bincount(starts, minlength=count + 1) - numpy.bincount(ends, minlength=count + 1))
    return (numpy.flatnonzero(depth[:count]) * CHUNK).tolist()  # type: ignore[no-any-return]


class WrittenPages:
    """The chunks of one memory written between two looks. The caller passes the memory's current
    address and size at every look (a memory may move or grow): `take_written` answers the offsets
    of every chunk written since the previous look (and of those written since the memory was last
    protected, up to `cycle` looks before, and of those left unprotected then), or None for
    "unknown: compare everything", which it answers at the first look, after any change of address
    or size, after `close`, and whenever tracking is off or failed. After the compare, `protect`
    protects the memory again when the look was due to (the first of a memory, a cycle's end)."""

    def __init__(self, first_cycle: int = RELEARN) -> None:
        self._first_cycle = first_cycle  # tests use short cycles
        self._armed: tuple[int, int, int] | None = None  # address, size, pid (registered)
        self._looks = 0  # since the memory was last protected
        self._due: tuple[int, int] | None = None  # address, size: `protect` protects this look's memory
        self._open: frozenset[int] = frozenset()  # chunks the last protection left unprotected
        self.cycle = first_cycle  # looks from one protection of the memory to the next
        self.protected = False  # whether the last `protect` protected the memory again

    @property
    def tracking(self) -> bool:
        """Whether the next look can answer (the memory, as of the last look, is registered)."""
        return self._armed is not None

    def take_written(self, address: int, size: int) -> list[int] | None:
        kernel = _the_kernel() if enabled() else None
        armed, self._armed, self._due, self.protected = self._armed, None, None, False
        if kernel is None or address % mmap.PAGESIZE or size % CHUNK or size <= 0:
            return None
        if armed is not None and armed[0] == address and armed[1] < size and armed[2] == kernel.pid:
            # Grown in place: only the new part is registered (the old part still is); this look
            # compares everything, and `protect` protects both parts.
            if kernel.register(address + armed[1], size - armed[1]):
                self._armed, self._due = (address, size, kernel.pid), (address, size)
            return None
        written = kernel.scan_array(address, size) if armed == (address, size, kernel.pid) else None
        if written is None:
            if kernel.register(address, size):
                self._armed, self._due = (address, size, kernel.pid), (address, size)
            return None
        self._armed = armed
        offsets = _chunks_in(written, address, size)
        self._looks += 1
        if self._looks >= self.cycle:  # the cycle's faults against the compares it saved
            ranges = [(start, end) for start, end in written.tolist()]
            dense = (
                self._faults(ranges, address) * PAGE_FAULT_IN_CHUNK_COMPARES
                > (size // CHUNK - len(offsets)) * self.cycle
            )
            self.cycle = min(self.cycle * RELEARN_GROWTH, RELEARN_MAX) if dense else self._first_cycle
            self._due = (address, size)
        return offsets  # right either way: every page written since the last look is in

    def _faults(self, written: list[tuple[int, int]], address: int) -> int:
        """The pages written since the last protection in the chunks it protected (each took a fault)."""
        page = mmap.PAGESIZE
        return sum(
            1
            for start, end in written
            for at in range(start - address, end - address, page)
            if at - at % CHUNK not in self._open
        )

    def protect(self, changed: Iterable[int] = ()) -> None:
        """After the compare of the last look (the shadow now holds the memory's contents): when that
        look was due to, protect the memory again but the chunks at `changed` (offsets the compare
        found changed: written again at the next message, most of them, see the module docstring)."""
        due, self._due = self._due, None
        kernel = _the_kernel() if enabled() else None
        if due is None or kernel is None or self._armed is None or self._armed[:2] != due:
            return
        address, size = due
        left = frozenset(changed)
        start = 0
        for offset in [*sorted(o for o in left if 0 <= o < size), size]:
            if offset > start and not kernel.protect(address + start, offset - start):
                self._armed = None  # partly protected is sound (unprotected is reported); look anew
                return
            start = offset + CHUNK
        self._looks, self._open, self.protected = 0, left, True

    def close(self) -> None:
        """Forget the memory (its registration ends with its mapping): the next look compares all."""
        self._armed, self._due, self._looks, self.cycle, self.protected = None, None, 0, self._first_cycle, False
        self._open = frozenset()
