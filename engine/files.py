"""Where aonode keeps its per-user files, and crash-safe writes: readers see the old file or the whole
new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def aonode_home() -> Path:
    """Per-user state (fetched images, compile cache): `$AONODE_HOME`, else `~/.cache/aonode`."""
    home = os.environ.get("AONODE_HOME")
    return Path(home) if home else Path.home() / ".cache" / "aonode"


def write_atomic(target: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
    """Write `data` to a temporary file beside `target`, then rename it over `target`.
    `durable` fsyncs the data before the rename (for files an index row will point at)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
