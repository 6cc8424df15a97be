"""The syscall and WASI fd imports of emscripten's libc, served from the process's MemFS: argument
decoding, stat, open/close/dup/fcntl, ioctl on the TTYs, cwd. The data through a descriptor (read,
write, seek, getdents, mmap) is fs_io_syscalls.py; path operations are fs_path_syscalls.py.

Argument decoding, results and memory writes follow the JS ao-loader runs (library_syscall.js and
library_wasi.js of its emscripten): wasm64 passes i64 pointers, wasm32 builds without BigInt pass
64-bit offsets as (low, high) halves, so those imports read their arguments by count.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from aonode.engine.wasm.guest import Guest
from aonode.engine.wasm.memfs import DEV_TTY, EINVAL, ENOENT, ENOTDIR, ENOTTY, ERANGE, FSError, is_dir
from aonode.engine.wasm.memfs_io import MemFS

AT_FDCWD, AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = -100, 256, 512, 4096
TERMIOS = (25856, 5, 191, 35387)
TERMIOS_CC = bytes([3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22] + [0] * 16)
TTY_ONLY_IOCTLS = (21509, 21510, 21511, 21512, 21506, 21507, 21508, 21524, 21515)
MAX_SAFE = 2**53


def syscall(fn: Callable[..., int]) -> Callable[..., int]:
    """An FS error becomes the negated errno, as emscripten's syscall wrappers return it."""

    def wrapped(self: FileSystemImports, *args: int) -> int:
        try:
            return fn(self, *args)
        except FSError as err:
            return -err.errno

    wrapped.__name__ = fn.__name__
    return wrapped


def wasi(fn: Callable[..., int]) -> Callable[..., int]:
    """WASI calls answer the errno itself."""

    def wrapped(self: FileSystemImports, *args: int) -> int:
        try:
            return fn(self, *args)
        except FSError as err:
            return err.errno

    wrapped.__name__ = fn.__name__
    return wrapped


def i64(lo: int, hi: int) -> int:
    return ((hi & 0xFFFFFFFF) << 32 | (lo & 0xFFFFFFFF)) - ((hi & 0x80000000) << 33)


class FileSystemImports(Guest):
    """Needs `self.fs` (the MemFS) from the host."""

    fs: MemFS

    # ---- decoding ------------------------------------------------------------------------------------
    def _str(self, ptr: int) -> str:
        return self.read_cstr(ptr).decode("utf-8", errors="replace")

    def _vararg_int(self, varargs: int) -> int:
        return struct.unpack("<i", self.read(varargs, 4))[0]

    def _at(self, dirfd: int, path: str, allow_empty: bool = False) -> str:
        """SYSCALLS.calculateAt."""
        if path.startswith("/"):
            return path
        base = self.fs.cwd if dirfd == AT_FDCWD else self.fs.stream(dirfd).path
        if not path:
            if not allow_empty:
                raise FSError(ENOENT)
            return base
        return self.fs.resolve(base + "/" + path)

    def _iovecs(self, iov: int, count: int) -> list[tuple[int, int]]:
        size = 16 if self.memory64 else 8
        raw = self.read(iov, size * count)
        fmt = "<QQ" if self.memory64 else "<II"
        return [struct.unpack_from(fmt, raw, i * size) for i in range(count)]

    @staticmethod
    def _wide(rest: tuple[int, ...], count64: int) -> tuple[int, tuple[int, ...]]:
        """Split `rest` into its leading 64-bit value and the others. `count64` is how many values
        the wasm64 form has; one more means the value came as two i32 halves (wasm32, no BigInt)."""
        if len(rest) == count64 + 1:
            return i64(rest[0], rest[1]), rest[2:]
        return rest[0], rest[1:]

    # ---- stat ----------------------------------------------------------------------------------------
    def _write_stat(self, path: str, buf: int, follow: bool = True) -> int:
        """SYSCALLS.doStat: field by field, leaving the padding words as they were."""
        st = self.fs.stat(self.fs.lookup(path, follow=follow)[1])
        secs, nsec = st.time_ms // 1000, (st.time_ms % 1000) * 1000
        if self.memory64:
            self.write(buf, struct.pack("<iiQiii", st.dev, st.mode, st.nlink, 0, 0, st.rdev))
            self.write(
                buf + 32,
                struct.pack("<qii", st.size, 4096, st.blocks)
                + struct.pack("<qQ", secs, nsec) * 3
                + struct.pack("<Q", st.ino),
            )
            return 0
        self.write(buf, struct.pack("<iiIiiiqii", st.dev, st.mode, st.nlink, 0, 0, st.rdev, st.size, 4096, st.blocks))
        for i in range(3):
            self.write(buf + 40 + 16 * i, struct.pack("<qI", secs, nsec))
        self.write(buf + 88, struct.pack("<Q", st.ino))
        return 0

    @syscall
    def imp_syscall_stat64(self, path: int, buf: int) -> int:
        return self._write_stat(self._str(path), buf)

    @syscall
    def imp_syscall_lstat64(self, path: int, buf: int) -> int:
        return self._write_stat(self._str(path), buf, follow=False)

    @syscall
    def imp_syscall_fstat64(self, fd: int, buf: int) -> int:
        return self._write_stat(self.fs.stream(fd).path, buf)  # by path, as emscripten does

    @syscall
    def imp_syscall_newfstatat(self, dirfd: int, path: int, buf: int, flags: int) -> int:
        full = self._at(dirfd, self._str(path), bool(flags & AT_EMPTY_PATH))
        return self._write_stat(full, buf, follow=not flags & AT_SYMLINK_NOFOLLOW)

    # ---- open, close, descriptors --------------------------------------------------------------------
    @syscall
    def imp_syscall_openat(self, dirfd: int, path: int, flags: int, varargs: int) -> int:
        full = self._at(dirfd, self._str(path))
        mode = self._vararg_int(varargs) if varargs else 0
        return self.fs.open(full, flags, mode).fd

    @wasi
    def imp_fd_close(self, fd: int) -> int:
        self.fs.close(self.fs.stream(fd))
        return 0

    @syscall
    def imp_syscall_dup(self, fd: int) -> int:
        return self.fs.dup(self.fs.stream(fd)).fd

    @syscall
    def imp_syscall_dup3(self, fd: int, newfd: int, flags: int) -> int:
        old = self.fs.stream(fd)
        if old.fd == newfd:
            return -EINVAL
        existing = self.fs.streams.get(newfd)
        if existing is not None:
            self.fs.close(existing)
        return self.fs.dup(old, newfd).fd

    @syscall
    def imp_syscall_fcntl64(self, fd: int, cmd: int, varargs: int) -> int:
        stream = self.fs.stream(fd)
        if cmd == 0:  # F_DUPFD
            arg = self._vararg_int(varargs)
            if arg < 0:
                return -EINVAL
            return self.fs.dup(stream, self.fs.next_fd(arg)).fd
        if cmd in (1, 2, 6, 7):
            return 0
        if cmd == 3:
            return stream.flags
        if cmd == 4:
            stream.shared.flags |= self._vararg_int(varargs)
            return 0
        if cmd == 5:  # F_GETLK: never locked
            self.write(self.read_ptr(varargs), struct.pack("<h", 2))
            return 0
        return -EINVAL

    @syscall
    def imp_syscall_ioctl(self, fd: int, op: int, varargs: int) -> int:
        stream = self.fs.stream(fd)
        console = stream.tty and stream.node.rdev == DEV_TTY  # tty1 (stderr) has no termios or size
        if op == 21505:  # TCGETS
            if not stream.tty:
                return -ENOTTY
            if console:
                argp = self.read_ptr(varargs)
                self.write(argp, struct.pack("<4i", *TERMIOS))
                self.write(argp + 17, TERMIOS_CC)
            return 0
        if op == 21523:  # TIOCGWINSZ
            if not stream.tty:
                return -ENOTTY
            if console:
                self.write(self.read_ptr(varargs), struct.pack("<hh", 24, 80))
            return 0
        if op == 21519:  # TIOCGPGRP
            if not stream.tty:
                return -ENOTTY
            self.write(self.read_ptr(varargs), struct.pack("<i", 0))
            return 0
        if op == 21520:  # TIOCSPGRP
            return -ENOTTY if not stream.tty else -EINVAL
        if op == 21531:  # FIONREAD: no stream here implements it
            return -ENOTTY
        if op in TTY_ONLY_IOCTLS:
            return 0 if stream.tty else -ENOTTY
        return -EINVAL

    @wasi
    def imp_fd_fdstat_get(self, fd: int, buf: int) -> int:
        stream = self.fs.stream(fd)
        # emscripten tests `stream.mode`, which streams lack: every non-TTY reports a regular file
        self.write(buf, struct.pack("<BxHxxxxQQ", 2 if stream.tty else 4, 0, 0, 0))
        return 0

    @wasi
    def imp_fd_sync(self, fd: int) -> int:
        self.fs.stream(fd)
        return 0  # MEMFS has no syncfs: emscripten wakes up at once, no Asyncify sleep

    imp_fd_datasync = imp_fd_sync

    @syscall
    def imp_syscall_fdatasync(self, fd: int) -> int:
        self.fs.stream(fd)
        return 0

    # ---- cwd ----------------------------------------------------------------------------------------
    @syscall
    def imp_syscall_getcwd(self, buf: int, size: int) -> int:
        if size == 0:
            return -EINVAL
        raw = self.fs.cwd.encode("utf-8") + b"\0"
        if size < len(raw):
            return -ERANGE
        self.write(buf, raw)
        return len(raw)

    def _chdir(self, path: str) -> int:
        where, node = self.fs.lookup(path, follow=True)
        if not is_dir(node.mode):
            raise FSError(ENOTDIR)
        err = self.fs.permission(node, "x")
        if err:
            raise FSError(err)
        self.fs.cwd = where
        return 0

    @syscall
    def imp_syscall_chdir(self, path: int) -> int:
        return self._chdir(self._str(path))

    @syscall
    def imp_syscall_fchdir(self, fd: int) -> int:
        return self._chdir(self.fs.stream(fd).path)
