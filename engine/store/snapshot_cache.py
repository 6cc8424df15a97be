"""This node's copy of the newest snapshot per process, beside a shared store.

Why: a node on a shared PostgreSQL (or bucket) resumes its processes often and from the newest
snapshot; keeping that one on local disk saves reading it back over the network. It is a cache
only: a failed write costs a later read from the store, and a copy is used only at its full size.
"""

from __future__ import annotations

import re
from pathlib import Path

from aonode.engine.files import write_atomic

_FILE_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # process ids that can name a cache file as they are


class NewestSnapshots:
    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir

    def _path(self, pid: str, slot: int, sha: str) -> Path | None:
        if self.cache_dir is None or not _FILE_SAFE.match(pid):
            return None
        return self.cache_dir / f"{pid}.{slot}.{sha}"

    def read(self, pid: str, slot: int, sha: str, size: int) -> bytes | None:
        """The cached bytes of that snapshot when held whole, else None."""
        path = self._path(pid, slot, sha)
        try:
            cached = path.read_bytes() if path is not None else None
        except OSError:
            return None
        return cached if cached is not None and len(cached) == size else None

    def keep(self, pid: str, slot: int, sha: str, blob: bytes) -> None:
        """Cache the newest snapshot of `pid`, dropping the older one."""
        path = self._path(pid, slot, sha)
        if path is None:
            return
        try:
            older = [p for p in path.parent.glob(f"{pid}.*") if p != path] if path.parent.is_dir() else []
            if any(int(p.name.split(".")[1]) > slot for p in older):
                return  # a newer one is cached already
            write_atomic(path, blob)
            for stale in older:
                stale.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass
