"""The path-based syscalls of emscripten's libc (mkdir, unlink, rename, chmod, utimensat, ...).

Owners are accepted and not kept, as in emscripten; every change stamps the node with the host's
deterministic clock, never the wall clock.
"""

from __future__ import annotations

import re
import struct

from aonode.engine.wasm.fs_syscalls import (
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_NOFOLLOW,
    MAX_SAFE,
    FileSystemImports,
    syscall,
)
from aonode.engine.wasm.memfs import EACCES, EINVAL, O_ACCMODE, S_IFCHR, S_IFREG, Node

PROC_FD = re.compile(r"/proc/self/fd/(\d+)")


class PathSyscalls(FileSystemImports):
    def _node(self, path: str, follow: bool = True) -> Node:
        return self.fs.lookup(path, follow=follow)[1]

    @syscall
    def imp_syscall_faccessat(self, dirfd: int, path: int, amode: int, flags: int) -> int:
        full = self._at(dirfd, self._str(path))
        if amode & ~7:
            return -EINVAL
        node = self._node(full)
        perms = ("r" if amode & 4 else "") + ("w" if amode & 2 else "") + ("x" if amode & 1 else "")
        if perms and self.fs.permission(node, perms):
            return -EACCES
        return 0

    # ---- modes and owners ----------------------------------------------------------------------------
    @syscall
    def imp_syscall_chmod(self, path: int, mode: int) -> int:
        self.fs.chmod(self._node(self._str(path)), mode)
        return 0

    @syscall
    def imp_syscall_fchmod(self, fd: int, mode: int) -> int:
        self.fs.chmod(self.fs.stream(fd).node, mode)
        return 0

    @syscall
    def imp_syscall_fchmodat2(self, dirfd: int, path: int, mode: int, flags: int = 0) -> int:
        full = self._at(dirfd, self._str(path))
        self.fs.chmod(self._node(full, follow=not flags & AT_SYMLINK_NOFOLLOW), mode)
        return 0

    imp_syscall_fchmodat = imp_syscall_fchmodat2

    @syscall
    def imp_syscall_fchown32(self, fd: int, owner: int, group: int) -> int:
        self.fs.touch(self.fs.stream(fd).node)
        return 0

    @syscall
    def imp_syscall_chown32(self, path: int, owner: int, group: int) -> int:
        self.fs.touch(self._node(self._str(path)))
        return 0

    @syscall
    def imp_syscall_lchown32(self, path: int, owner: int, group: int) -> int:
        self.fs.touch(self._node(self._str(path), follow=False))
        return 0

    @syscall
    def imp_syscall_fchownat(self, dirfd: int, path: int, owner: int, group: int, flags: int) -> int:
        full = self._at(dirfd, self._str(path))
        self.fs.touch(self._node(full, follow=not flags & AT_SYMLINK_NOFOLLOW))
        return 0

    # ---- sizes and times -----------------------------------------------------------------------------
    @syscall
    def imp_syscall_ftruncate64(self, fd: int, *rest: int) -> int:
        length, _ = self._wide(rest, 1)
        if not -MAX_SAFE < length < MAX_SAFE:
            return 61  # emscripten answers a positive EOVERFLOW here
        stream = self.fs.stream(fd)
        if stream.flags & O_ACCMODE == 0:
            return -EINVAL
        self.fs.truncate(stream.node, length)
        return 0

    @syscall
    def imp_syscall_truncate64(self, path: int, *rest: int) -> int:
        length, _ = self._wide(rest, 1)
        if not -MAX_SAFE < length < MAX_SAFE:
            return 61
        self.fs.truncate(self._node(self._str(path)), length)
        return 0

    @syscall
    def imp_syscall_utimensat(self, dirfd: int, path: int, times: int, flags: int) -> int:
        full = self._at(dirfd, self._str(path), allow_empty=True)
        if not times:
            atime = mtime = self.fs.clock()
        else:
            stamps = []
            for at in (times, times + 16):
                seconds = struct.unpack("<q", self.read(at, 8))[0]
                nanos = struct.unpack("<i", self.read(at + 8, 4))[0]
                stamps.append(seconds * 1000 + nanos / 1e6)
            atime, mtime = stamps
        node = self._node(full)
        node.timestamp = int(max(atime, mtime))  # a JS Date drops the fraction of a millisecond
        return 0

    # ---- the tree ------------------------------------------------------------------------------------
    @syscall
    def imp_syscall_mkdirat(self, dirfd: int, path: int, mode: int) -> int:
        full = self._at(dirfd, self._str(path))
        self.fs.mkdir(full.rstrip("/") or "/", mode)
        return 0

    @syscall
    def imp_syscall_mknodat(self, dirfd: int, path: int, mode: int, dev: int) -> int:
        full = self._at(dirfd, self._str(path))
        kind = mode & 0o170000
        if kind not in (S_IFREG, S_IFCHR, 0o060000, 0o010000, 0o140000):
            return -EINVAL
        self.fs.mknod(full, mode, dev)
        return 0

    @syscall
    def imp_syscall_rmdir(self, path: int) -> int:
        self.fs.rmdir(self._str(path))
        return 0

    @syscall
    def imp_syscall_unlinkat(self, dirfd: int, path: int, flags: int) -> int:
        full = self._at(dirfd, self._str(path))
        if flags not in (0, AT_REMOVEDIR):
            return -EINVAL
        self.fs.unlink(full, want_dir=flags == AT_REMOVEDIR)
        return 0

    @syscall
    def imp_syscall_renameat(self, olddirfd: int, old: int, newdirfd: int, new: int) -> int:
        self.fs.rename(self._at(olddirfd, self._str(old)), self._at(newdirfd, self._str(new)))
        return 0

    @syscall
    def imp_syscall_symlinkat(self, target: int, newdirfd: int, linkpath: int) -> int:
        self.fs.symlink(self._str(target), self._at(newdirfd, self._str(linkpath)))
        return 0

    @syscall
    def imp_syscall_symlink(self, target: int, linkpath: int) -> int:
        return self.imp_syscall_symlinkat(target, AT_FDCWD, linkpath)

    @syscall
    def imp_syscall_readlinkat(self, dirfd: int, path: int, buf: int, size: int) -> int:
        full = self._at(dirfd, self._str(path))
        if size <= 0:
            return -EINVAL
        match = PROC_FD.fullmatch(self.fs.resolve(full))
        if match:
            target = self.fs.stream(int(match.group(1))).path
        else:
            target = self.fs.resolve_link(full)
        raw = target.encode("utf-8")[:size]
        self.write(buf, raw)  # no terminating NUL, as readlink(2)
        return len(raw)
