"""What the engine needs from storage, independent of where the bytes live.

The Protocol names the contract; `SQLiteStore` is the default implementation. Record types live here
(not in the devices) so the store never imports engine logic.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Protocol

from aonode.engine.message import Message


@dataclass(frozen=True)
class Assignment:
    """A message's place in a process's schedule: the only input that orders evaluation."""

    process: str
    slot: int
    message_id: str
    timestamp: int  # ms since the epoch, never decreasing within a process
    block_height: int
    block_hash: str | None
    epoch: int
    hash_chain: str  # base64url(sha256(previous chain bytes ‖ message id bytes))
    message: Message

    def to_json(self) -> dict[str, Any]:
        """The scheduler@1.0 assignment shape served over HTTP."""
        return {
            "process": self.process,
            "slot": self.slot,
            "message": self.message_id,
            "timestamp": self.timestamp,
            "block-height": self.block_height,
            "block-hash": self.block_hash,
            "epoch": self.epoch,
            "hash-chain": self.hash_chain,
            "body": self.message.to_legacy_json(),
        }


class Store(Protocol):
    """Durable node state. Every write is complete when the call returns; reads never recompute."""

    def put_process(self, pid: str, definition: Message) -> None: ...
    def get_process(self, pid: str) -> Message | None: ...
    def list_processes(self) -> list[str]: ...

    def put_message(self, msg: Message) -> None: ...
    def get_message(self, mid: str) -> Message | None: ...

    def append_assignment(self, a: Assignment) -> None: ...
    def append_assignments(self, batch: Sequence[Assignment]) -> None: ...
    def get_assignment(self, pid: str, slot: int) -> Assignment | None: ...
    def assignment_for_message(self, pid: str, mid: str) -> Assignment | None: ...
    def assignments(self, pid: str, frm: int = 0, to: int | None = None,
                    limit: int | None = None) -> list[Assignment]: ...
    def last_assignment(self, pid: str) -> Assignment | None: ...

    def put_result(self, pid: str, slot: int, message_id: str, result: dict) -> None: ...
    def get_result(self, pid: str, slot: int) -> dict | None: ...
    def get_result_by_message(self, pid: str, mid: str) -> tuple[int, dict] | None: ...
    def results(self, pid: str, frm: int | None = None, to: int | None = None,
                limit: int | None = None, descending: bool = False) -> list[tuple[int, dict]]: ...
    def last_result_slot(self, pid: str) -> int | None: ...

    def put_cache(self, pid: str, slot: int, cache: dict) -> None: ...
    def get_cache(self, pid: str, max_slot: int | None = None) -> tuple[int, dict] | None: ...

    def put_snapshot(self, pid: str, slot: int, memory_sha256: str, blob: bytes) -> None: ...
    def latest_snapshot(self, pid: str,
                        max_slot: int | None = None) -> tuple[int, str, bytes] | None: ...

    def close(self) -> None: ...
