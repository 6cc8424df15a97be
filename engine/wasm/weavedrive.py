"""WeaveDrive (Arweave data as files) and the asyncify sleep ao-loader wraps around it.

As ao-loader's WeaveDrive extension does it, an opened item becomes a node of the process's emscripten
filesystem (`/data/<id>`, `/tx/<id>`, `/block/<height>`) with an ordinary descriptor, so fseek/fstat
work on it; `/data` nodes keep only (id, size) and read their bytes from the DriveStore at any offset.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aonode.engine.errors import MemoryLimitExceeded, WasmTrap
from aonode.engine.wasm.drive_store import DriveContext, DriveStore
from aonode.engine.wasm.guest import Guest
from aonode.engine.wasm.memfs import S_IFREG, FSError, Node, Stream
from aonode.engine.wasm.memfs_io import MemFS

ASYNCIFY_STACK_SIZE = 41943040  # ao-loader's Asyncify.StackSize for its data buffer
NORMAL, UNWINDING, REWINDING = 0, 1, 2
DRIVE_MODE = S_IFREG | 0o555  # FS_getMode(canRead=true, canWrite=false)


class SuspendNeeded(WasmTrap):
    """An `__asyncjs__` import was called in an image variant that cannot suspend: the message must
    be run again on the original image (the instance does that; it never reaches a caller)."""


class WeaveDrive(Guest):
    """The `__asyncjs__weavedrive_*` imports. Needs `self.fs` (the MemFS) and `self.inputs` (the
    message and env JSON being handled, for admissibility)."""

    fs: MemFS
    inputs: tuple[str, str] = ("{}", "{}")

    def __init__(self, weavedrive_dir: Path | DriveStore | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(weavedrive_dir, DriveStore) or weavedrive_dir is None:
            self.drive = weavedrive_dir
        else:  # a bare directory: local fixtures, everything admissible (ao-loader's test mode)
            self.drive = DriveStore(Path(weavedrive_dir), test=True)
        self.async_state = NORMAL
        self.async_data = 0
        self.can_suspend = True
        self._async_value = 0

    def drive_reader(self, item: str, offset: int, length: int) -> bytes:
        return self.drive.read(item, offset, length) if self.drive is not None else b""

    # ---- asyncify: the sleep/wake dance ao-loader performs around every __asyncjs__ import ---------
    def _asyncify(self, compute: Callable[[], int]) -> int:
        """Unwind to `handle` and rewind, exactly as emscripten's Asyncify.handleSleep does under
        ao-loader: the data buffer is malloc'd, filled by the unwind and freed, all inside linear
        memory, so doing the same keeps memory byte-identical."""
        if "asyncify_start_unwind" not in self.fn:
            return compute()
        if not self.can_suspend:
            raise SuspendNeeded("this image variant cannot suspend for WeaveDrive")
        if self.async_state == REWINDING:
            self.call("asyncify_stop_rewind")
            self.call("free", self.async_data)
            self.async_state, self.async_data = NORMAL, 0
            return self._async_value
        self._async_value = compute()
        header = 24 if self.memory64 else 12
        data = self.call("malloc", header + ASYNCIFY_STACK_SIZE)
        if not data:
            raise MemoryLimitExceeded("cannot allocate the asyncify buffer")
        self.write_ptr(data, data + header)
        self.write_ptr(data + self.ptr_size, data + header + ASYNCIFY_STACK_SIZE)
        self.write(data + 2 * self.ptr_size, struct.pack("<i", 0))  # rewind id of `handle`
        self.async_state, self.async_data = UNWINDING, data
        self.call("asyncify_start_unwind", data)
        return 0

    def finish_unwind(self) -> bool:
        """After an export returns: if it was unwinding, stop and start rewinding (call it again)."""
        if self.async_state != UNWINDING:
            return False
        self.call("asyncify_stop_unwind")
        self.async_state = REWINDING
        self.call("asyncify_start_rewind", self.async_data)
        return True

    def imp_asyncjs__weavedrive_open(self, c_filename: int, mode: int) -> int:
        return self._asyncify(lambda: self._drive_open(c_filename))

    def imp_asyncjs__weavedrive_read(self, fd: int, dst: int, length: int) -> int:
        return self._asyncify(lambda: self._drive_read(fd, dst, length))

    def imp_asyncjs__weavedrive_close(self, fd: int) -> int:
        return self._asyncify(lambda: self._drive_close(fd))

    def _context(self) -> DriveContext:
        msg, env = (json.loads(text or "{}") for text in self.inputs)

        def tags(items: Any) -> tuple[tuple[str, str], ...]:
            return tuple((str(t.get("name")), str(t.get("value"))) for t in items or [] if isinstance(t, dict))

        try:
            height = int(msg.get("Block-Height") or 0)
        except (TypeError, ValueError):
            height = 0
        return DriveContext(
            tags((env.get("Process") or {}).get("Tags")), tags((env.get("Module") or {}).get("Tags")), height
        )

    def _drive_open(self, c_filename: int) -> int:
        """`/data/<id>`, `/tx/<id>`, `/block/<height>` open (creating the node the first time);
        anything else answers 0 (no such drive file), as does an item the process may not read."""
        if self.drive is None:
            return 0  # ao-loader without a WeaveDrive extension resolves to null
        name = self.read_cstr(c_filename).decode("utf-8", errors="replace")
        parts = name.split("/")
        kind, key = (parts[1], parts[2]) if len(parts) == 3 and not parts[0] else ("", "")
        if kind not in ("data", "tx", "block") or not key:
            return 0
        try:
            if self._exists(name):
                return self.fs.open(name, 0).fd
            if kind == "data":
                if not self.drive.admissible(key, self._context()):
                    return 0
                size = self.drive.data_size(key)
                node = self.fs.mknod(name, DRIVE_MODE)
                node.drive = (key, size)
            else:
                body = self.drive.tx_header(key) if kind == "tx" else self.drive.block_header(key)
                self._create_data_file(kind, key, body)
            return self.fs.open(name, 0).fd
        except FSError:
            return 0

    def _exists(self, path: str) -> bool:
        try:
            self.fs.lookup(path, follow=True)
            return True
        except FSError:
            return False

    def _create_data_file(self, kind: str, key: str, body: bytes) -> Node:
        """FS.createPath + FS.createDataFile, with the clock ticks they make in emscripten's FS."""
        if not self._exists("/" + kind):
            self.fs.mkdir("/" + kind)
        node = self.fs.mknod(f"/{kind}/{key}", DRIVE_MODE)
        self.fs.chmod(node, DRIVE_MODE | 0o222)
        self.fs.truncate(node, 0)
        if body:
            node.timestamp = self.fs.clock()
            node.data = bytearray(body)
        self.fs.chmod(node, DRIVE_MODE)
        return node

    def _drive_read(self, fd: int, dst: int, length: int) -> int:
        stream: Stream | None = self.fs.streams.get(fd)
        if stream is None:
            return 0
        if stream.path.startswith(("/tx/", "/block/")):
            self.write(dst, bytes(stream.node.data[:length]))  # headers: from the start, full length reported
            return length
        drive = stream.node.drive
        try:
            if drive is not None and drive[1] and stream.shared.position >= drive[1]:
                # The extension asks the gateway for `Range: bytes=<position>-...`; past the end a
                # gateway ignores the range and sends the whole item, which lands from its start.
                # AOS's boot loader relies on it: `file:read(file:seek('end'))`.
                data = self.drive_reader(drive[0], 0, min(length, drive[1]))
                stream.shared.position += len(data)
            else:
                data = self.fs.read(stream, length)
        except FSError:
            return 0
        self.write(dst, data)
        return len(data)

    def _drive_close(self, fd: int) -> int:
        stream = self.fs.streams.get(fd)
        if stream is None:
            return -1
        self.fs.close(stream)
        return 0
