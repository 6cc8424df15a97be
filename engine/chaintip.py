"""ChainTip: the Arweave block a scheduler stamps on the messages it assigns.

A scheduler on the network gives every assignment the current block height (and hash), so a process
sees `msg['Block-Height']` move with the chain. This node learns the tip from its gateway (the server
polls `/info` and calls `observe`); when the gateway cannot be reached it keeps the last height it
knew, saved in the data dir so a restart never goes back. The value is recorded in each assignment,
so a replay sees what the first evaluation saw, on any machine.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from aonode.engine.files import write_atomic


@dataclass(frozen=True)
class Block:
    height: int
    hash: str | None = None


class ChainTip:
    """The newest block this node has been told about; never lowered."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._guard = threading.Lock()
        self._block = self._load(path)

    @staticmethod
    def _load(path: Path) -> Block:
        try:
            doc = json.loads(path.read_text())
            return Block(int(doc["height"]), doc.get("hash"))
        except (OSError, ValueError, KeyError, TypeError):
            return Block(0)

    def height(self) -> int:
        return self._block.height

    def hash(self) -> str | None:
        return self._block.hash

    def observe(self, height: int, block_hash: str | None = None) -> bool:
        """Take a newer tip (an older or equal one is ignored); True when it moved."""
        with self._guard:
            if height <= self._block.height:
                return False
            self._block = Block(height, block_hash)
            write_atomic(self._path, json.dumps({"height": height, "hash": block_hash}).encode())
            return True
