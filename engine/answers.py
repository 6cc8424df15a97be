"""What the Node answers: the typed records of its public methods, for callers outside the engine.

The server sees the Node only through these (and `Message`), never through the store or the wasm
runtime, so a store or runtime change cannot leak into an HTTP answer. `Assignment` is the store's
record, named here so that callers need not import the store to read one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypedDict

from aonode.engine.jsondata import Json as JSON
from aonode.engine.store.base import Assignment

__all__ = [
    "Assignment",
    "JSON",
    "Result",
    "SlotResult",
    "ProcessMemory",
    "Clock",
    "ProcessView",
    "AssignmentJSON",
    "SlotInfo",
    "SchedulePage",
    "SnapshotInfo",
    "InitInfo",
    "ModuleInfo",
    "NodeInfo",
]

Result = dict[str, JSON]  # one slot's result: Output, Messages, Spawns, Assignments, Error, Patches, ...


@dataclass(frozen=True)
class SlotResult:
    """The stored result of one evaluated slot."""

    slot: int
    result: Result


@dataclass(frozen=True)
class ProcessMemory:
    """A process's linear memory at a computed slot, with where that slot sits in time.

    `chunks` yields the memory in order, decompressed and checked one piece at a time, so an answer
    streams it without holding the whole memory (hundreds of MB) per reader (issue 10 item 6)."""

    slot: int
    timestamp: int
    block_height: int
    size: int
    chunks: Iterable[bytes] = field(repr=False)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(frozen=True)
class Clock:
    """The scheduler's clock: what a new assignment would be stamped with."""

    timestamp: int  # ms since the epoch
    block_height: int


# The JSON answers of the HyperBEAM-style methods (their keys are hyphenated, hence this syntax).
ProcessView = TypedDict("ProcessView", {"process": str, "at-slot": int, "results": Result, "cache": dict[str, JSON]})
AssignmentJSON = TypedDict(
    "AssignmentJSON",
    {
        "process": str,
        "slot": int,
        "message": str,
        "timestamp": int,
        "block-height": int,
        "block-hash": str | None,
        "epoch": int,
        "hash-chain": str,
        "body": dict[str, JSON],
    },
)
SlotInfo = TypedDict(
    "SlotInfo",
    {
        "process": str,
        "current": int,
        "timestamp": int,
        "block-height": int,
        "block-hash": str | None,
        "hash-chain": str,
    },
)
SchedulePage = TypedDict("SchedulePage", {"process": str, "assignments": list[AssignmentJSON], "continues": bool})
SnapshotInfo = TypedDict("SnapshotInfo", {"process": str, "slot": int, "memory-sha256": str})
InitInfo = TypedDict("InitInfo", {"process": str, "at-slot": int, "definition": dict[str, JSON], "stack": list[str]})


class ModuleInfo(TypedDict):
    name: str
    id: str | None


NodeInfo = TypedDict(
    "NodeInfo",
    {
        "address": str,
        "version": str,
        "devices": list[str],
        "modules": list[ModuleInfo],
        "processes": list[str],
        "block-height": int,
    },
)
