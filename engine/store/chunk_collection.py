"""Collecting the chunks of SQLiteStore's chunked snapshots that no stored manifest names any more.

Why its own module: a collection that reads every chunk hash and parses every manifest each time
costs what the store holds (~20 ms for one 120 MiB process, every 8 snapshots), while what can have
become garbage is only what the manifests dropped since the last collection named. So a collection
looks at those candidates alone and keeps any that a remaining manifest names; each manifest is
parsed once while this store object keeps its names (they never change: a manifest is named by its
sha256), and not at all when this process made it lately (manifest_names.names_in: the set its
naming built). The first collection of a store object scans every chunk (what a crash, a replaced
snapshot row or an older aonode left behind). A damaged manifest names nothing, as in `rows.live_chunks`.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

from aonode.engine.store.rows import live_chunks
from aonode.engine.wasm.chunk_codec import ZERO_HASH
from aonode.engine.wasm.chunked import Manifest, SnapshotDamaged
from aonode.engine.wasm.manifest_names import names_in

_UNNAMED = "FROM manifests WHERE name NOT IN (SELECT sha256 FROM snapshots)"
KEPT_MANIFESTS = 64  # parsed manifests kept (~2,000 names each for 120 MiB of memory): 8 processes' worth


class ChunkCollector:
    """Runs inside the caller's write transaction (BEGIN IMMEDIATE: no snapshot is stored meanwhile)."""

    def __init__(self) -> None:
        self._scanned = False  # the first collection scans every chunk
        self._named: OrderedDict[str, frozenset[bytes]] = OrderedDict()  # manifest name -> raw chunk names

    def collect(self, conn: sqlite3.Connection) -> int:
        """Drop manifests no snapshot row names and the chunks only they named: how many chunks went."""
        dropped = conn.execute(f"SELECT name, body {_UNNAMED}").fetchall()
        if dropped:
            conn.execute(f"DELETE {_UNNAMED}")
        if not self._scanned:
            self._scanned = True
            keep = live_chunks(body for (body,) in conn.execute("SELECT body FROM manifests"))
            gone = [(h,) for (h,) in conn.execute("SELECT hash FROM chunks") if h not in keep]
        else:
            candidates: set[bytes] = set()
            for name, body in dropped:
                candidates.update(self._names(name, body))
                self._named.pop(name, None)
            candidates.discard(ZERO_HASH)  # implied, never stored
            for (name,) in conn.execute("SELECT name FROM manifests").fetchall():
                if not candidates:
                    break
                named = self._names(name, None, conn)
                candidates = {c for c in candidates if c not in named}
            gone = [(c.hex(),) for c in candidates]
        if not gone:
            return 0
        return conn.executemany("DELETE FROM chunks WHERE hash = ?", gone).rowcount

    def _names(self, name: str, body: bytes | None, conn: sqlite3.Connection | None = None) -> frozenset[bytes]:
        """The chunk names (raw) manifest `name` holds, parsed once; a damaged one names none. Kept for
        KEPT_MANIFESTS manifests, the most recently asked, however they were found."""
        named = self._named.get(name)
        if named is None:
            named = names_in(name)  # made by this process lately
        if named is None:
            named = self._parsed(body, name, conn)
        self._named[name] = named
        self._named.move_to_end(name)
        while len(self._named) > KEPT_MANIFESTS:
            self._named.popitem(last=False)
        return named

    @staticmethod
    def _parsed(body: bytes | None, name: str, conn: sqlite3.Connection | None) -> frozenset[bytes]:
        if body is None and conn is not None:
            row = conn.execute("SELECT body FROM manifests WHERE name = ?", (name,)).fetchone()
            body = row[0] if row else None
        try:
            manifest = Manifest.from_bytes(bytes(body)) if body is not None else None
        except SnapshotDamaged:
            manifest = None
        return frozenset((*manifest.hashes, *manifest.bases)) if manifest is not None else frozenset()
