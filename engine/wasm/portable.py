"""Snapshots that come from elsewhere: aonode's own format, or a bare linear memory as ao-loader
returns it and a legacy CU checkpoint stores it (raw, or gzip-compressed).

A bare memory carries no host state, and needs none: a legacy CU resuming from a checkpoint starts a
fresh ao-loader instance, whose clock counter restarts (first value 10004 after its FS start-up) and
whose emscripten filesystem is the start-up tree. That is the host state given to it here.
"""

from __future__ import annotations

import gzip
import zlib

from aonode.engine.wasm.host import FS_INIT_TICKS, TIME_START
from aonode.engine.wasm.snapshot import MAGIC, PAGE, Snapshot

GZIP_MAGIC = b"\x1f\x8b"
MAX_DUMP = 16 * 1024**3


def read_snapshot(data: bytes) -> Snapshot:
    """Raises ValueError for bytes that are neither an aonode snapshot nor a whole-pages memory."""
    if data.startswith(MAGIC):
        return Snapshot.from_bytes(data)
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"not a gzip-compressed memory dump: {err}") from err
    if not data or len(data) % PAGE or len(data) > MAX_DUMP:
        raise ValueError(
            f"not an aonode snapshot, nor a linear memory dump ({len(data)} bytes is not a "
            f"whole number of {PAGE}-byte wasm pages)"
        )
    return Snapshot.from_memory(data, {"time": TIME_START + FS_INIT_TICKS})
