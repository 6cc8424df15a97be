"""A throwaway AOS process in memory: one image, no store, no scheduler (what `aonode eval` runs).

Like the legacy CU, a fresh process first evaluates its own spawn message (slot 0); every code string
is then an `Eval` from the owner (slots 1, 2, ...). Ids and timestamps are derived from the slot and
the module id, so the same inputs always give the same memory hashes. A snapshot carries the last
slot, so a run continued from it numbers its messages on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aonode.engine.answers import JSON
from aonode.engine.aos import ProcessSpec, parse_result
from aonode.engine.errors import WasmError
from aonode.engine.message import b64url
from aonode.engine.wasm import Instance, Limits, Runtime, parse_size, read_snapshot

OWNER = "aonode-eval-owner-" + "0" * 25


def content_id(*parts: str) -> str:
    """A stable 43-character id for the given parts (module and process ids of throwaway runs)."""
    return b64url(hashlib.sha256("\x00".join(parts).encode()).digest())


@dataclass(frozen=True)
class Evaluated:
    """What one message did: AOS's answer, or the wasm failure that rolled it back."""

    slot: int
    output: JSON
    error: JSON
    messages: list[JSON]
    spawns: list[JSON]
    memory_sha256: str
    failed: bool = False

    def to_json(self) -> dict[str, JSON]:
        return {
            "slot": self.slot,
            "output": self.output,
            "error": self.error,
            "messages": self.messages,
            "spawns": self.spawns,
            "memory_sha256": self.memory_sha256,
        }


class Sandbox:
    """One image instance driven message by message, as a process with id derived from the module."""

    def __init__(
        self,
        wasm: bytes,
        module_id: str,
        cache_dir: Path,
        *,
        memory_limit: str | None = None,
        compute_limit: int | None = None,
        snapshot: bytes | None = None,
        owner: str = OWNER,
        name: str | None = None,
    ) -> None:
        """Raises ValueError (bad limit or snapshot), OSError or AONodeError (unusable image)."""
        # `compute_limit` is for the Evals: a fresh process's spawn (AOS booting) runs unlimited.
        self.limits = Limits(memory=parse_size(memory_limit), fuel=compute_limit)
        limits = self.limits if snapshot is not None else dataclasses.replace(self.limits, fuel=None)
        runtime = Runtime(cache_dir)
        image = runtime.load(wasm, name=name)
        self.process = ProcessSpec(
            pid=content_id("process", module_id), owner=owner, module_id=module_id, name="aonode-eval"
        )
        if snapshot is not None:
            snap = read_snapshot(snapshot)  # aonode's format, or ao-loader's bare memory
            self.instance = Instance.restore(runtime, image, snap, limits)
            self.slot = int(snap.host_state.get("eval_slot", 0))
            self._spawned = True
        else:
            self.instance = Instance(runtime, image, limits)
            self.slot = 0
            self._spawned = False

    def run(self, code: Iterable[str]) -> Iterator[Evaluated]:
        """The spawn (for a fresh process), then one Eval per code string, each as it completes."""
        proc = self.process
        pending = [] if self._spawned else [(0, proc.spawn_json())]
        self._spawned = True
        pending += [(self.slot + i, proc.message_json(self.slot + i, text)) for i, text in enumerate(code, 1)]
        for slot, msg in pending:
            yield self._handle(slot, msg)
            self.slot = slot
            self.instance.limits = self.limits

    def _handle(self, slot: int, msg: str) -> Evaluated:
        inst = self.instance
        try:
            raw = inst.handle(msg, self.process.env())
        except WasmError as err:
            return Evaluated(slot, "", f"{type(err).__name__}: {err}", [], [], inst.memory_sha256(), failed=True)
        out = parse_result(raw or "")
        return Evaluated(slot, out.output, out.error, out.messages, out.spawns, inst.memory_sha256())

    def snapshot(self) -> bytes:
        """The memory after the last message, with the slot to continue from."""
        snap = self.instance.snapshot()
        return dataclasses.replace(snap, host_state=dict(snap.host_state, eval_slot=self.slot)).to_bytes()
