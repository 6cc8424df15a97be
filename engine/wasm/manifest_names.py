"""The body names of the chunked manifests this process made last (chunked.py), by manifest name.

Why: a store's chunk collection (store/chunk_collection.py) asks which bodies each kept manifest
names; for one this process has just made, the background naming built that set already, and
parsing it again from the stored bytes costs ~0.3 ms a manifest of 126 MiB of memory. A manifest
is named by its sha256, so the names under a name never change, whichever process or store holds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class _RecentNames:
    """Up to `size` manifests' body names (chunks and bases), the newest kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._names: OrderedDict[str, frozenset[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, name: str, names: frozenset[bytes]) -> None:
        with self._lock:
            self._names[name] = names
            self._names.move_to_end(name)
            while len(self._names) > self._size:
                self._names.popitem(last=False)

    def get(self, name: str) -> frozenset[bytes] | None:
        with self._lock:
            return self._names.get(name)


RECENT = _RecentNames(64)  # the last 8 snapshots of 8 processes: what a collection asks about


def names_in(name: str) -> frozenset[bytes] | None:
    """The body names of the manifest named `name` (its chunks' and its bases'; the zero chunk's
    when it has one) if this process made it lately, else None."""
    return RECENT.get(name)
