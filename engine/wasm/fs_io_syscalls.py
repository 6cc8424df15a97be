"""The data side of emscripten's libc descriptors: read/write (positioned or not), seek, getdents64
and mmap of files, served from the process's MemFS as library_wasi.js and library_syscall.js do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from aonode.engine.wasm.fs_syscalls import MAX_SAFE, FileSystemImports, syscall, wasi
from aonode.engine.wasm.memfs import (
    EACCES,
    ENODEV,
    ENOMEM,
    EOVERFLOW,
    O_ACCMODE,
    O_RDWR,
    O_WRONLY,
    FSError,
    Stream,
    is_chrdev,
    is_dir,
    is_file,
    is_link,
)
from aonode.engine.wasm.memfs_io import SEEK_CUR, SEEK_SET

DIRENT_SIZE = 280  # struct dirent as emscripten lays it out


class DescriptorIO(FileSystemImports):
    """What moves data through an open descriptor."""

    # ---- reading and writing -------------------------------------------------------------------------
    def _readv(self, stream: Stream, iov: int, count: int, offset: int | None) -> int:
        total = 0
        for ptr, length in self._iovecs(iov, count):
            data = self.fs.read(stream, length, offset)
            if data:
                self.write(ptr, data)
            total += len(data)
            if len(data) < length:
                break
            if offset is not None:
                offset += len(data)
        return total

    def _writev(self, stream: Stream, iov: int, count: int, offset: int | None) -> int:
        total = 0
        for ptr, length in self._iovecs(iov, count):
            written = self.fs.write(stream, self.read(ptr, length), offset)
            total += written
            if offset is not None:
                offset += written
        return total

    @wasi
    def imp_fd_read(self, fd: int, iov: int, iovcnt: int, pnum: int) -> int:
        self.write_ptr(pnum, self._readv(self.fs.stream(fd), iov, iovcnt, None))
        return 0

    @wasi
    def imp_fd_write(self, fd: int, iov: int, iovcnt: int, pnum: int) -> int:
        self.write_ptr(pnum, self._writev(self.fs.stream(fd), iov, iovcnt, None))
        return 0

    def _positioned(
        self,
        fd: int,
        iov: int,
        iovcnt: int,
        rest: tuple[int, ...],
        transfer: Callable[[Stream, int, int, int | None], int],
    ) -> int:
        offset, (pnum,) = self._wide(rest, 2)
        if not -MAX_SAFE < offset < MAX_SAFE:
            return EOVERFLOW
        self.write_ptr(pnum, transfer(self.fs.stream(fd), iov, iovcnt, offset))
        return 0

    @wasi
    def imp_fd_pread(self, fd: int, iov: int, iovcnt: int, *rest: int) -> int:
        return self._positioned(fd, iov, iovcnt, rest, self._readv)

    @wasi
    def imp_fd_pwrite(self, fd: int, iov: int, iovcnt: int, *rest: int) -> int:
        return self._positioned(fd, iov, iovcnt, rest, self._writev)

    @wasi
    def imp_fd_seek(self, fd: int, *rest: int) -> int:
        offset, (whence, out) = self._wide(rest, 3)
        if not -MAX_SAFE < offset < MAX_SAFE:
            return EOVERFLOW
        stream = self.fs.stream(fd)
        position = self.fs.llseek(stream, offset, whence)
        self.write(out, struct.pack("<q", position))
        if stream.dirents is not None and offset == 0 and whence == SEEK_SET:
            stream.dirents = None
        return 0

    @syscall
    def imp_syscall_getdents64(self, fd: int, dirp: int, count: int) -> int:
        stream = self.fs.stream(fd)
        if stream.dirents is None:
            stream.dirents = self.fs.readdir(self.fs.lookup(stream.path, follow=True)[1])
        index = self.fs.llseek(stream, 0, SEEK_CUR) // DIRENT_SIZE
        at = 0
        while index < len(stream.dirents) and at + DIRENT_SIZE <= count:
            name = stream.dirents[index]
            if name == ".":
                ino, kind = stream.node.id, 4
            elif name == "..":
                ino, kind = self.fs.lookup(stream.path, parent=True)[1].id, 4
            else:
                child = self.fs.lookup_node(stream.node, name)
                ino = child.id
                kind = 2 if is_chrdev(child.mode) else 4 if is_dir(child.mode) else 10 if is_link(child.mode) else 8
            raw = name.encode("utf-8")[:255] + b"\0"
            self.write(dirp + at, struct.pack("<QqHB", ino, (index + 1) * DIRENT_SIZE, DIRENT_SIZE, kind) + raw)
            at += DIRENT_SIZE
            index += 1
        self.fs.llseek(stream, index * DIRENT_SIZE, SEEK_SET)
        return at

    # ---- mmap of files ------------------------------------------------------------------------------
    def imp_mmap_js(self, length: int, prot: int, flags: int, fd: int, *rest: int) -> int:
        try:
            offset, (allocated, addr) = self._wide(rest, 3)
            stream = self.fs.stream(fd)
            mode = stream.flags & O_ACCMODE
            if (prot & 2 and not flags & 2 and mode != O_RDWR) or mode == O_WRONLY:
                raise FSError(EACCES)
            if not is_file(stream.node.mode):
                raise FSError(ENODEV)
            size = -(-length // 65536) * 65536
            memalign = "emscripten_builtin_memalign"
            ptr = self.call(memalign, 65536, size) if memalign in self.fn else 0
            if not ptr:
                raise FSError(ENOMEM)
            self.write(ptr, bytes(size))
            self.write(ptr, self.fs.contents(stream.node)[offset : offset + length])
            self.write(allocated, struct.pack("<i", 1))
            self.write_ptr(addr, ptr)
            return 0
        except FSError as err:
            return -err.errno

    def imp_munmap_js(self, addr: int, length: int, prot: int, flags: int, fd: int, *rest: int) -> int:
        offset, _ = self._wide(rest, 1)
        try:
            stream = self.fs.stream(fd)
            if prot & 2:
                if not is_file(stream.node.mode):
                    raise FSError(ENODEV)
                if not flags & 2:  # MAP_SHARED: write the pages back (MEMFS msync)
                    self.fs.write(stream, self.read(addr, length), offset)
            return 0
        except FSError as err:
            return -err.errno

    def imp_emscripten_get_heap_max(self) -> int:
        return 17179869184 if self.memory64 else 4294901760
