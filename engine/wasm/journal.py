"""The rollback point of an instance: a checkpoint and the messages handled since.

A trap (fuel, memory cap, wasm fault) can leave Lua half-updated, so on failure the instance rebuilds
from the checkpoint and replays the journal (evaluation is deterministic). A new checkpoint every
CHECKPOINT_EVERY messages (and whenever a snapshot is taken) keeps replay short without copying
memory per message.
"""

from __future__ import annotations

from aonode.engine.wasm.chunked import Restorable
from aonode.engine.wasm.snapshot import PendingSnapshot

CHECKPOINT_EVERY = 1000  # replay of at most this many messages after a trap (~1 ms each)
CHECKPOINT_BYTES = 64 * 1024 * 1024  # ... or of this much message JSON


class Journal:
    """The checkpoint is None for a fresh start (rebuilding it is deterministic, so no copy is needed
    yet), or a snapshot still being made in the background."""

    def __init__(self, checkpoint: Restorable | PendingSnapshot | None) -> None:
        self._checkpoint = checkpoint
        self.messages: list[tuple[str, str]] = []  # (msg JSON, env JSON) since the checkpoint
        self._bytes = 0

    def record(self, msg_json: str, env_json: str) -> None:
        self.messages.append((msg_json, env_json))
        self._bytes += len(msg_json) + len(env_json)

    @property
    def full(self) -> bool:
        """Time for a new checkpoint: replay would get long."""
        return len(self.messages) >= CHECKPOINT_EVERY or self._bytes >= CHECKPOINT_BYTES

    def restart(self, checkpoint: Restorable | PendingSnapshot | None) -> None:
        """A new rollback point; the journal starts empty."""
        self._checkpoint = checkpoint
        self.messages = []
        self._bytes = 0

    def checkpoint(self) -> Restorable | None:
        """The rollback point (waiting for it if it is still being made)."""
        if isinstance(self._checkpoint, PendingSnapshot):
            self._checkpoint = self._checkpoint.result()
        return self._checkpoint
