"""What the engine needs from storage, independent of where the bytes live.

The Protocol names the contract; `SQLiteStore` is the default implementation. Record types live here
(not in the devices) so the store never imports engine logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aonode.engine.jsondata import JsonObject
from aonode.engine.message import Message
from aonode.engine.store.cache_log import CacheChanges
from aonode.engine.store.result_rows import Encoded


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

    def to_json(self) -> JsonObject:
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


class ScheduleView(Protocol):
    """What a sequencer reads inside the one transaction that appends to a process's schedule: no
    other sequencer of that process (in this node or another one on the same database) runs
    between these reads and the append."""

    def last(self) -> Assignment | None: ...
    def get(self, slot: int) -> Assignment | None: ...
    def for_message(self, mid: str) -> Assignment | None: ...
    def for_messages(self, mids: Sequence[str]) -> dict[str, Assignment]:
        """The assignments of those of `mids` already assigned in this schedule (one query for a batch)."""
        ...


T = TypeVar("T")
Plan = Callable[[ScheduleView], tuple[Sequence[Assignment], T]]


class Store(Protocol):
    """Durable node state. Every write is complete when the call returns; reads never recompute."""

    def put_process(self, pid: str, definition: Message) -> None: ...
    def get_process(self, pid: str) -> Message | None: ...
    def list_processes(self) -> list[str]: ...

    def put_message(self, msg: Message) -> None: ...
    def get_message(self, mid: str) -> Message | None: ...

    def sequence(self, pid: str, plan: Plan[T]) -> T:
        """Run `plan` on the schedule of `pid` with every other sequencer of `pid` excluded, store
        the assignments it returns, commit durably, and only then return its answer. A taken slot
        or an already assigned message is BadInput and stores nothing."""
        ...

    def sequence_later(self, pid: str, plan: Plan[T], size: int = 1) -> Future[T]:
        """`sequence` without waiting: the Future is settled once the assignments are durable (by
        the thread that committed them, which runs its callbacks; at once without group commit).
        `size`: about how many assignments `plan` appends (how full a group commit is)."""
        ...

    def append_assignment(self, a: Assignment) -> None: ...
    def append_assignments(self, batch: Sequence[Assignment]) -> None: ...
    def get_assignment(self, pid: str, slot: int) -> Assignment | None: ...
    def assignment_for_message(self, pid: str, mid: str) -> Assignment | None: ...
    def assignments(
        self, pid: str, frm: int = 0, to: int | None = None, limit: int | None = None
    ) -> list[Assignment]: ...
    def last_assignment(self, pid: str) -> Assignment | None: ...

    # A result is one slot's outcome (Output, Messages, Spawns, ...); a cache the patched state.
    def put_result(self, pid: str, slot: int, message_id: str, result: JsonObject) -> None: ...
    def put_results(
        self, pid: str, rows: Sequence[tuple[int, str, JsonObject | Encoded]], cache: CacheChanges | None = None
    ) -> None:
        """(slot, message id, result: JSON or already encoded) of several slots, and `cache`, the
        cache changes those slots made (cache_log.plan), in one transaction."""
        ...

    def get_result(self, pid: str, slot: int) -> JsonObject | None: ...
    def get_result_by_message(self, pid: str, mid: str) -> tuple[int, JsonObject] | None: ...
    def results(
        self,
        pid: str,
        frm: int | None = None,
        to: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[int, JsonObject]]: ...
    def last_result_slot(self, pid: str) -> int | None: ...

    # `changes`: the patch payloads merged at `slot`, in order; then the store may keep only those
    # (engine/store/cache_log.py). None: store `cache` in full (a snapshot's companion).
    def put_cache(self, pid: str, slot: int, cache: JsonObject, changes: list[JsonObject] | None = None) -> None: ...
    def get_cache(self, pid: str, max_slot: int | None = None) -> tuple[int, JsonObject] | None: ...

    def put_snapshot(
        self, pid: str, slot: int, memory_sha256: str, blob: bytes, chunks: Mapping[str, bytes] | None = None
    ) -> None:
        """`blob` named `memory_sha256`: a whole snapshot, or with `chunks` (the chunks it adds,
        hash hex -> zstd) a chunked snapshot's manifest; the store keeps the newest few of those
        per process and collects chunks no kept manifest names."""
        ...

    def get_chunks(self, hashes: Iterable[str]) -> dict[str, bytes]: ...
    def drop_snapshot(self, pid: str, slot: int) -> None: ...
    def collect_chunks(self) -> int: ...
    def latest_snapshot(self, pid: str, max_slot: int | None = None) -> tuple[int, str, bytes] | None: ...

    def close(self) -> None: ...
