"""Open files on the emscripten MEMFS tree: FS.open/read/write/llseek/close/dup and the devices.

Each branch follows emscripten's FS (the JS glue ao-loader 0.0.49 ships) in the order it checks
things, so every call fails with the same errno and ticks the clock the same number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aonode.engine.wasm.memfs import (
    DEV_NULL,
    DEV_RANDOM,
    DEV_TTY,
    DEV_TTY1,
    DEV_URANDOM,
    EBADF,
    EEXIST,
    EINVAL,
    EISDIR,
    ELOOP,
    ENOENT,
    ENOTDIR,
    ESPIPE,
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_TRUNC,
    O_WRONLY,
    S_IFREG,
    FSError,
    Node,
    Shared,
    Stream,
    Tree,
    is_chrdev,
    is_dir,
    is_file,
    is_link,
)

EIO = 29
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

# (arweave id, offset, length) -> bytes: WeaveDrive data behind a /data/<id> node
DriveReader = Callable[[str, int, int], bytes]


@dataclass(frozen=True)
class Stat:
    dev: int
    ino: int
    mode: int
    nlink: int
    rdev: int
    size: int
    blocks: int
    time_ms: int  # atime = mtime = ctime in MEMFS


class MemFS(Tree):
    """The whole emscripten filesystem of one process."""

    def __init__(self, clock: Callable[[], int], drive_reader: DriveReader | None = None) -> None:
        super().__init__(clock)
        self.drive_reader = drive_reader

    def start(self) -> None:
        """Runtime start-up as under ao-loader: static tree, FS.init (the std streams, 3 ticks) and
        ao-loader's FS_createPath('/', 'data') (1 tick)."""
        self.build_static_tree()
        self.symlink("/dev/tty", "/dev/stdin")
        self.symlink("/dev/tty", "/dev/stdout")
        self.symlink("/dev/tty1", "/dev/stderr")
        self.open("/dev/stdin", 0)
        self.open("/dev/stdout", O_WRONLY)
        self.open("/dev/stderr", O_WRONLY)
        self.ignore_permissions = False
        self.mkdir("/data")

    def stat(self, node: Node) -> Stat:
        size = node.size
        return Stat(
            node.id if is_chrdev(node.mode) else 1,
            node.id,
            node.mode,
            1,
            node.rdev,
            size,
            -(-size // 4096),
            node.timestamp,
        )

    # ---- open / close -------------------------------------------------------------------------------
    def may_open(self, node: Node, flags: int) -> int:
        if is_link(node.mode):
            return ELOOP
        perms = ["r", "w", "rw"][flags & 3] + ("w" if flags & O_TRUNC else "")
        if is_dir(node.mode) and (perms != "r" or flags & O_TRUNC):
            return EISDIR
        return self.permission(node, perms)

    def open(self, path: str, flags: int, mode: int = 0o666) -> Stream:
        if path == "":
            raise FSError(ENOENT)
        mode = (mode & 0o7777) | S_IFREG if flags & O_CREAT else 0
        node: Node | None = None
        try:
            node = self.lookup(path, follow=not flags & O_NOFOLLOW)[1]
        except FSError:
            pass
        created = False
        if flags & O_CREAT:
            if node is not None:
                if flags & O_EXCL:
                    raise FSError(EEXIST)
            else:
                node = self.mknod(path, mode)
                created = True
        if node is None:
            raise FSError(ENOENT)
        if is_chrdev(node.mode):
            flags &= ~O_TRUNC
        if flags & O_DIRECTORY and not is_dir(node.mode):
            raise FSError(ENOTDIR)
        if not created:
            err = self.may_open(node, flags)
            if err:
                raise FSError(err)
        if flags & O_TRUNC and not created:
            self.truncate(node, 0)
        flags &= ~(O_EXCL | O_TRUNC | O_NOFOLLOW)
        return self.add_stream(node, self.path_of(node), Shared(flags))

    def close(self, stream: Stream) -> None:
        if self.streams.get(stream.fd) is stream:
            del self.streams[stream.fd]

    def dup(self, stream: Stream, fd: int = -1) -> Stream:
        copy = Stream(self.next_fd() if fd < 0 else fd, stream.node, stream.path, stream.shared, stream.seekable)
        self.streams[copy.fd] = copy
        return copy

    # ---- positions ----------------------------------------------------------------------------------
    def llseek(self, stream: Stream, offset: int, whence: int) -> int:
        if not stream.seekable or is_chrdev(stream.node.mode):
            raise FSError(ESPIPE)
        if whence not in (SEEK_SET, SEEK_CUR, SEEK_END):
            raise FSError(EINVAL)
        position = offset
        if whence == SEEK_CUR:
            position += stream.shared.position
        elif whence == SEEK_END and is_file(stream.node.mode):
            position += stream.node.size
        if position < 0:
            raise FSError(EINVAL)
        stream.shared.position = position
        return position

    # ---- data ---------------------------------------------------------------------------------------
    @staticmethod
    def _check(stream: Stream, length: int, position: int | None, denied: int) -> Node:
        """FS.read/FS.write's checks, in their order; `denied` is the access mode that may not."""
        if length < 0 or (position is not None and position < 0):
            raise FSError(EINVAL)
        if stream.flags & O_ACCMODE == denied:
            raise FSError(EBADF)
        if is_dir(stream.node.mode):
            raise FSError(EISDIR)
        if is_link(stream.node.mode):
            raise FSError(EINVAL)
        return stream.node

    def read(self, stream: Stream, length: int, position: int | None = None) -> bytes:
        node = self._check(stream, length, position, O_WRONLY)
        if position is not None and not stream.seekable:
            raise FSError(ESPIPE)
        at = stream.shared.position if position is None else position
        if is_chrdev(node.mode):
            data = self._device_read(node, length)
        elif node.drive is not None:
            want = max(0, min(length, node.drive[1] - at))
            data = self.drive_reader(node.drive[0], at, want) if want and self.drive_reader else b""
        else:
            data = bytes(node.data[at : at + length]) if at < len(node.data) else b""
        if position is None:
            stream.shared.position += len(data)
        return data

    def _device_read(self, node: Node, length: int) -> bytes:
        if node.rdev in (DEV_RANDOM, DEV_URANDOM):
            data = self.urandom(length)
            if data:
                node.timestamp = self.clock()
            return data
        return b""  # /dev/null; the TTY's stdin is empty (EOF)

    def write(self, stream: Stream, data: bytes, position: int | None = None) -> int:
        node = self._check(stream, len(data), position, 0)
        if stream.seekable and stream.flags & O_APPEND and not is_chrdev(node.mode):
            self.llseek(stream, 0, SEEK_END)
        if position is not None and not stream.seekable:
            raise FSError(ESPIPE)
        at = stream.shared.position if position is None else position
        if is_chrdev(node.mode):
            written = self._device_write(node, data)
        else:
            written = self._file_write(node, data, at)
        if position is None:
            stream.shared.position += written
        return written

    def _device_write(self, node: Node, data: bytes) -> int:
        if node.rdev == DEV_NULL:
            return len(data)
        if node.rdev in (DEV_TTY, DEV_TTY1):
            self.stdout += data
            if data:
                node.timestamp = self.clock()
            return len(data)
        raise FSError(EIO)  # random devices have no output function

    def _file_write(self, node: Node, data: bytes, at: int) -> int:
        if not data:
            return 0
        node.timestamp = self.clock()
        if node.drive is not None:
            raise FSError(EIO)
        end = at + len(data)
        if len(node.data) < at:
            node.data += bytearray(at - len(node.data))
        node.data[at:end] = data
        return len(data)

    def contents(self, node: Node) -> bytes:
        if node.drive is not None:
            return self.drive_reader(node.drive[0], 0, node.drive[1]) if self.drive_reader else b""
        return bytes(node.data)
