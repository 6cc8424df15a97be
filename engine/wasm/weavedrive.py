"""WeaveDrive (Arweave data as files) and the asyncify sleep ao-loader wraps around it.

Data comes from a local directory laid out as the drive's paths (`data/<id>`, `tx/<id>`,
`block/<height>`). The open files are host state and travel with snapshots.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Callable

from aonode.engine.errors import MemoryLimitExceeded, WasmTrap
from aonode.engine.wasm.guest import Guest

ASYNCIFY_STACK_SIZE = 41943040  # ao-loader's Asyncify.StackSize for its data buffer
NORMAL, UNWINDING, REWINDING = 0, 1, 2


class SuspendNeeded(WasmTrap):
    """An `__asyncjs__` import was called in an image variant that cannot suspend: the message must
    be run again on the original image (the instance does that; it never reaches a caller)."""


class WeaveDrive(Guest):
    """The `__asyncjs__weavedrive_*` imports. Needs `self.state.open_files` (see host.HostState)."""

    def __init__(self, weavedrive_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weavedrive_dir = Path(weavedrive_dir) if weavedrive_dir else None
        self.async_state = NORMAL
        self.async_data = 0
        self.can_suspend = True
        self._async_value = 0

    def _drive_path(self, name: str) -> Path | None:
        if self.weavedrive_dir is None:
            return None
        rel = Path(name.lstrip("/"))
        if ".." in rel.parts:
            return None
        path = self.weavedrive_dir / rel
        return path if path.is_file() else None

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

    def _drive_open(self, c_filename: int) -> int:
        """Paths /data/<id>, /tx/<id>, /block/<height> come from the drive directory; any other path
        answers 0 (the C side then falls back), and a missing /data item halts the message, as the
        reference WeaveDrive does."""
        if self.weavedrive_dir is None:
            return 0  # ao-loader without a WeaveDrive extension resolves to null
        name = self.read_cstr(c_filename).decode(errors="replace")
        if name.split("/")[1:2] not in (["data"], ["tx"], ["block"]):
            return 0
        if self._drive_path(name) is None:
            raise WasmTrap(f"HALT: FILE NOT FOUND: {name}")
        fd = 3
        while fd in self.state.open_files:  # the lowest free descriptor, as the emscripten FS picks
            fd += 1
        self.state.open_files[fd] = [name, 0]
        return fd

    def _drive_read(self, fd: int, dst: int, length: int) -> int:
        entry = self.state.open_files.get(fd)
        path = self._drive_path(entry[0]) if entry else None
        if path is None:
            return 0
        headers = not entry[0].startswith("/data/")
        with path.open("rb") as fh:
            fh.seek(0 if headers else entry[1])
            data = fh.read(length)
        self.write(dst, data)
        if headers:  # the reference copies header files from offset 0 and reports the full length
            return length
        entry[1] += len(data)
        return len(data)

    def _drive_close(self, fd: int) -> int:
        return 0 if self.state.open_files.pop(fd, None) is not None else -1
