"""`aonode eval MODULE 'lua' ...`: spawn an in-memory process, Eval each argument, print one JSON line each.

Like the legacy CU, the process first evaluates its own spawn message (slot 0); every code argument is
then an `Eval` from the owner (slots 1, 2, ...). Ids and timestamps are derived from the slot, so the
same command always prints the same memory hashes.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from aonode.engine.aos import ProcessSpec, parse_result
from aonode.engine.message import b64url
from aonode.engine.errors import AONodeError, WasmError
from aonode.engine.wasm.instance import Instance, Limits, parse_size
from aonode.engine.wasm.runtime import Runtime
from aonode.engine.wasm.snapshot import Snapshot

OWNER = "aonode-eval-owner-" + "0" * 25


def _id(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return b64url(digest)


@dataclass
class Module:
    path: Path
    id: str


def resolve_module(name: str) -> Module:
    path = Path(name)
    if path.exists():
        return Module(path, _id("module", hashlib.sha256(path.read_bytes()).hexdigest()))
    try:
        from aonode.modules.catalogue import resolve
    except ImportError as err:
        raise AONodeError(f"{name}: no such file (and the module catalogue is unavailable)") from err
    image = resolve(name)
    return Module(Path(image.path), image.id or _id("module", name))


def eval_process(module: Module) -> ProcessSpec:
    """The throwaway process: its id follows from the module, so runs are reproducible."""
    return ProcessSpec(pid=_id("process", module.id), owner=OWNER, module_id=module.id, name="aonode-eval")


def _cache_dir() -> Path:
    try:
        from aonode.modules.fetch import aonode_home
    except ImportError:
        return Path.home() / ".cache" / "aonode" / "wasm"
    return aonode_home() / "wasm"


def _line(slot: int, inst: Instance, raw: str | None, failure: Exception | None) -> dict:
    if failure is not None:
        return {"slot": slot, "output": "", "error": f"{type(failure).__name__}: {failure}", "messages": [],
                "spawns": [], "memory_sha256": inst.memory_sha256()}
    out = parse_result(raw or "")
    return {"slot": slot, "output": out.output, "error": out.error, "messages": out.messages,
            "spawns": out.spawns, "memory_sha256": inst.memory_sha256()}


def main(args: argparse.Namespace) -> int:
    try:
        module = resolve_module(args.module)
        limits = Limits(memory=parse_size(args.memory_limit), fuel=args.compute_limit)
        runtime = Runtime(_cache_dir())
        image = runtime.load(module.path.read_bytes())
        proc = eval_process(module)
        slot = 0
        if args.snapshot_in:
            snap = Snapshot.from_bytes(Path(args.snapshot_in).read_bytes())
            inst = Instance.restore(runtime, image, snap, limits)
            slot = int(snap.host_state.get("eval_slot", 0))
            pending = []
        else:
            inst = Instance(runtime, image, limits)
            pending = [(0, proc.spawn_json())]
    except (AONodeError, ValueError, OSError) as err:
        print(f"aonode eval: {err}", file=sys.stderr)
        return 2
    pending += [(slot + i, proc.message_json(slot + i, code)) for i, code in enumerate(args.code, 1)]
    failed = False
    for n, msg in pending:
        raw, failure = None, None
        try:
            raw = inst.handle(msg, proc.env())
        except WasmError as err:
            failure, failed = err, True
        print(json.dumps(_line(n, inst, raw, failure), ensure_ascii=False), flush=True)
        slot = n
    if args.snapshot_out:
        snap = inst.snapshot()
        snap = dataclasses.replace(snap, host_state=dict(snap.host_state, eval_slot=slot))
        Path(args.snapshot_out).write_bytes(snap.to_bytes())
    return 1 if failed else 0
