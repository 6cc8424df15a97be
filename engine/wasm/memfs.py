"""The emscripten in-memory filesystem (MEMFS) as ao-loader's JS glue runs it, kept as process state.

Same tree, inode numbers, errno values, permission checks and Date.now() calls as emscripten's FS and
MEMFS, so syscall results (and so linear memory) match ao-loader byte for byte. The clock is the host's
deterministic counter; the tree is saved with every snapshot (see memfs_state.py) and never touches
the host's disk or wall clock. Nodes made before ao-loader installs its counter (the static tree:
/tmp, /home, /dev, /proc) carry timestamp 0 here, where ao-loader stamps them with the wall clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from aonode.engine.wasm.memfs_paths import basename, dirname, normalize_parts

# errno values of emscripten's musl (what syscalls return negated)
EPERM, EACCES, EAGAIN, EBADF, EBUSY, EEXIST, EINVAL = 63, 2, 6, 8, 10, 20, 28
EISDIR, EMFILE, ELOOP, ENODEV, ENOENT, ENOTDIR, ENOTEMPTY = 31, 33, 32, 43, 44, 54, 55
ENOTTY, ENXIO, ENOSYS, ERANGE, ESPIPE, EOVERFLOW, EXDEV, ENOMEM = 59, 60, 52, 68, 70, 61, 75, 48

S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR = 0o170000, 0o100000, 0o040000, 0o120000, 0o020000
O_ACCMODE, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC = 2097155, 1, 2, 64, 128, 512
O_APPEND, O_DIRECTORY, O_NOFOLLOW = 1024, 65536, 131072
R_BITS, W_BITS, X_BITS = 0o444, 0o222, 0o111
MAX_OPEN_FDS = 4096

DEV_NULL, DEV_TTY, DEV_TTY1, DEV_RANDOM, DEV_URANDOM = 259, 1280, 1536, 16384, 16640
TTYS = (DEV_TTY, DEV_TTY1)


RANDOM_BUFFER = 1024


@lru_cache(maxsize=4)
def random_fill(n: int) -> bytes:
    """The n-th 1024-byte fill of the random devices: sha256("aonode-urandom:<n>:<j>") for j = 0..31."""
    return b"".join(hashlib.sha256(f"aonode-urandom:{n}:{j}".encode()).digest() for j in range(RANDOM_BUFFER // 32))


class FSError(Exception):
    """An emscripten FS.ErrnoError: the syscall answers -errno (WASI calls: errno)."""

    def __init__(self, errno: int) -> None:
        super().__init__(f"errno {errno}")
        self.errno = errno


def is_file(mode: int) -> bool:
    return mode & S_IFMT == S_IFREG


def is_dir(mode: int) -> bool:
    return mode & S_IFMT == S_IFDIR


def is_link(mode: int) -> bool:
    return mode & S_IFMT == S_IFLNK


def is_chrdev(mode: int) -> bool:
    return mode & S_IFMT == S_IFCHR


@dataclass(eq=False)
class Node:
    """One inode. Files hold bytes (or, for WeaveDrive data, an Arweave id and size read on demand)."""

    id: int
    name: str
    parent: Node | None
    mode: int
    rdev: int = 0
    timestamp: int = 0
    children: dict[str, Node] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    link: str = ""
    drive: tuple[str, int] | None = None  # (arweave id, size): contents come from the WeaveDrive store

    @property
    def size(self) -> int:
        if self.drive is not None:
            return self.drive[1]
        if is_dir(self.mode):
            return 4096
        if is_link(self.mode):
            return len(self.link)
        return len(self.data) if is_file(self.mode) else 0


@dataclass(eq=False)
class Shared:
    """What dup'ed descriptors share (emscripten's stream.shared)."""

    flags: int
    position: int = 0


@dataclass(eq=False)
class Stream:
    fd: int
    node: Node
    path: str
    shared: Shared
    seekable: bool = True
    dirents: list[str] | None = None  # getdents64's listing, taken at the first call

    @property
    def flags(self) -> int:
        return self.shared.flags

    @property
    def tty(self) -> bool:
        return is_chrdev(self.node.mode) and self.node.rdev in TTYS


class Tree:
    """The tree, the open streams and the current directory. `clock()` is ao-loader's Date.now();
    memfs_io.MemFS adds the file operations on top."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.next_ino = 1
        self.root = Node(self._ino(), "/", None, S_IFDIR | 0o777)
        self.root.parent = self.root
        self.streams: dict[int, Stream] = {}
        self.cwd = "/"
        self.ignore_permissions = True
        self.random_counter = 0  # buffers filled so far
        self.random_left = 0  # bytes of the current buffer not yet handed out
        self.stdout = bytearray()

    def _ino(self) -> int:
        ino = self.next_ino
        self.next_ino += 1
        return ino

    # ---- the tree emscripten builds while the runtime starts ------------------------------------------
    def build_static_tree(self) -> None:
        """FS.staticInit (before ao-loader's counter replaces Date.now: these nodes tick nothing)."""
        clock, self.clock = self.clock, (lambda: 0)
        for path in ("/tmp", "/home", "/home/web_user", "/dev"):
            self.mkdir(path)
        self.mknod("/dev/null", S_IFCHR | 0o666, DEV_NULL)
        self.mknod("/dev/tty", S_IFCHR | 0o666, DEV_TTY)
        self.mknod("/dev/tty1", S_IFCHR | 0o666, DEV_TTY1)
        self.mknod("/dev/random", S_IFCHR | 0o555, DEV_RANDOM)
        self.mknod("/dev/urandom", S_IFCHR | 0o555, DEV_URANDOM)
        for path in ("/dev/shm", "/dev/shm/tmp", "/proc", "/proc/self"):
            self.mkdir(path)
        self.next_ino += 1  # /proc/self/fd is a mount: its mountpoint and its root each take an inode
        self.mknod("/proc/self/fd", S_IFDIR | 0o777, 73)
        self.clock = clock

    # ---- lookups ------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """PATH_FS.resolve: absolute and normalised, relative paths against the cwd."""
        full = path if path.startswith("/") else self.cwd + "/" + path
        return "/" + "/".join(normalize_parts(full))

    def permission(self, node: Node, perms: str) -> int:
        if self.ignore_permissions:
            return 0
        for letter, bits in (("r", R_BITS), ("w", W_BITS), ("x", X_BITS)):
            if letter in perms and not node.mode & bits:
                return EACCES
        return 0

    def lookup_node(self, parent: Node, name: str) -> Node:
        if not is_dir(parent.mode):
            raise FSError(ENOTDIR)
        err = self.permission(parent, "x")
        if err:
            raise FSError(err)
        child = parent.children.get(name)
        if child is None:
            raise FSError(ENOENT)
        return child

    def lookup(self, path: str, *, parent: bool = False, follow: bool = False, depth: int = 0) -> tuple[str, Node]:
        """FS.lookupPath: (canonical path, node); intermediate symlinks always followed."""
        if depth > 8:
            raise FSError(ELOOP)
        parts = normalize_parts(self.resolve(path))
        current, current_path = self.root, "/"
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and parent:
                break
            current = self.lookup_node(current, part)
            current_path = current_path.rstrip("/") + "/" + part
            if not last or follow:
                count = 0
                while is_link(current.mode):
                    target = self.resolve_link(current_path)
                    current_path, current = self.lookup(target, depth=depth + 1)
                    count += 1
                    if count > 40:
                        raise FSError(ELOOP)
        return current_path, current

    def resolve_link(self, path: str) -> str:
        _, node = self.lookup(path)
        if not is_link(node.mode):
            raise FSError(EINVAL)
        base = self.path_of(node.parent) if node.parent is not None else "/"
        return self.resolve(node.link if node.link.startswith("/") else base.rstrip("/") + "/" + node.link)

    def path_of(self, node: Node) -> str:
        names: list[str] = []
        while node.parent is not node and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(names))

    def node_at(self, path: str, follow: bool = True) -> Node:
        return self.lookup(path, follow=follow)[1]

    # ---- creating and removing ------------------------------------------------------------------------
    def _attach(self, parent: Node, name: str, mode: int, rdev: int) -> Node:
        node = Node(self._ino(), name, parent, mode, rdev)
        node.timestamp = self.clock()
        parent.children[name] = node
        parent.timestamp = node.timestamp
        return node

    def may_create(self, parent: Node, name: str) -> int:
        try:
            self.lookup_node(parent, name)
            return EEXIST
        except FSError:
            pass
        return self.permission(parent, "wx")

    def mknod(self, path: str, mode: int, rdev: int = 0) -> Node:
        _, parent = self.lookup(path, parent=True)
        name = basename(path)
        if not name or name in (".", "..", "/"):
            raise FSError(EINVAL)
        err = self.may_create(parent, name)
        if err:
            raise FSError(err)
        return self._attach(parent, name, mode, rdev)

    def mkdir(self, path: str, mode: int = 0o777) -> Node:
        return self.mknod(path, (mode & 0o1777) | S_IFDIR)

    def symlink(self, target: str, path: str) -> Node:
        _, parent = self.lookup(path, parent=True)
        name = basename(path)
        err = self.may_create(parent, name)
        if err:
            raise FSError(err)
        node = self._attach(parent, name, S_IFLNK | 0o777, 0)
        node.link = target
        return node

    def may_delete(self, parent: Node, name: str, want_dir: bool) -> int:
        try:
            node = self.lookup_node(parent, name)
        except FSError as err:
            return err.errno
        err_code = self.permission(parent, "wx")
        if err_code:
            return err_code
        if want_dir:
            if not is_dir(node.mode):
                return ENOTDIR
            if node is self.root or self.path_of(node) == self.cwd:
                return EBUSY
        elif is_dir(node.mode):
            return EISDIR
        return 0

    def unlink(self, path: str, want_dir: bool = False) -> None:
        _, parent = self.lookup(path, parent=True)
        name = basename(path)
        node = self.lookup_node(parent, name)
        err = self.may_delete(parent, name, want_dir)
        if err:
            raise FSError(err)
        if want_dir and node.children:
            raise FSError(ENOTEMPTY)
        del parent.children[name]
        parent.timestamp = self.clock()

    def rmdir(self, path: str) -> None:
        self.unlink(path, want_dir=True)

    def rename(self, old_path: str, new_path: str) -> None:
        old_name, new_name = basename(old_path), basename(new_path)
        _, old_dir = self.lookup(old_path, parent=True)
        _, new_dir = self.lookup(new_path, parent=True)
        node = self.lookup_node(old_dir, old_name)
        old_abs, new_abs = self.resolve(old_path), self.resolve(new_path)
        if (self.resolve(dirname(new_path)) + "/").startswith(old_abs + "/"):
            raise FSError(EINVAL)  # moving a directory into itself
        if (self.resolve(dirname(old_path)) + "/").startswith(new_abs + "/"):
            raise FSError(ENOTEMPTY)
        target = new_dir.children.get(new_name)
        if target is node:
            return
        want_dir = is_dir(node.mode)
        err = self.may_delete(old_dir, old_name, want_dir)
        if not err:
            err = self.may_delete(new_dir, new_name, want_dir) if target else self.may_create(new_dir, new_name)
        if not err and new_dir is not old_dir:
            err = self.permission(old_dir, "w")
        if err:
            raise FSError(err)
        if want_dir and target is not None and target.children:
            raise FSError(ENOTEMPTY)
        del old_dir.children[old_name]
        old_dir.timestamp = self.clock()
        node.name = new_name
        new_dir.children[new_name] = node
        new_dir.timestamp = old_dir.timestamp
        node.parent = new_dir

    def readdir(self, node: Node) -> list[str]:
        """Object.keys order: array-index names ascending first, then the rest as inserted."""
        if not is_dir(node.mode):
            raise FSError(ENOTDIR)
        names = list(node.children)
        index = sorted((n for n in names if n.isdigit() and str(int(n)) == n and int(n) < 2**32 - 1), key=int)
        return [".", ".."] + index + [n for n in names if n not in index]

    # ---- attributes -----------------------------------------------------------------------------------
    def chmod(self, node: Node, mode: int) -> None:
        node.mode = (mode & 0o7777) | (node.mode & ~0o7777)
        node.timestamp = self.clock()

    def touch(self, node: Node) -> None:
        """chown: owners are not kept (as in emscripten), only the change time."""
        node.timestamp = self.clock()

    def truncate(self, node: Node, length: int) -> None:
        if length < 0:
            raise FSError(EINVAL)
        if is_dir(node.mode):
            raise FSError(EISDIR)
        if not is_file(node.mode):
            raise FSError(EINVAL)
        err = self.permission(node, "w")
        if err:
            raise FSError(err)
        now = self.clock()
        if len(node.data) != length:
            node.data = node.data[:length] + bytearray(max(0, length - len(node.data)))
        node.timestamp = now

    def urandom(self, length: int) -> bytes:
        """/dev/random and /dev/urandom. emscripten refills a 1024-byte buffer from the host's crypto
        source and hands it out from the end; here the source is a fixed stream (random_fill), so
        every node reads the same bytes (and a differential peer can feed ao-loader the same)."""
        out = bytearray()
        for _ in range(length):
            if self.random_left == 0:
                self.random_counter += 1
                self.random_left = RANDOM_BUFFER
            self.random_left -= 1
            out.append(random_fill(self.random_counter - 1)[self.random_left])
        return bytes(out)

    # ---- streams ------------------------------------------------------------------------------------
    def stream(self, fd: int) -> Stream:
        stream = self.streams.get(fd)
        if stream is None:
            raise FSError(EBADF)
        return stream

    def next_fd(self, start: int = 0) -> int:
        for fd in range(start, MAX_OPEN_FDS + 1):
            if fd not in self.streams:
                return fd
        raise FSError(EMFILE)

    def add_stream(self, node: Node, path: str, shared: Shared, fd: int = -1) -> Stream:
        fd = self.next_fd() if fd < 0 else fd
        stream = Stream(fd, node, path, shared)
        if is_chrdev(node.mode):
            if node.rdev not in (DEV_NULL, DEV_TTY, DEV_TTY1, DEV_RANDOM, DEV_URANDOM):
                raise FSError(ENXIO)
            stream.seekable = node.rdev == DEV_NULL
        self.streams[fd] = stream
        return stream
