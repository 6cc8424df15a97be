"""`aonode eval MODULE 'lua' ...`: spawn an in-memory process, Eval each argument, print one JSON line each.

MODULE is a .wasm path or a catalogue name; the process itself runs in `aonode.engine.sandbox`.
The exit status is 1 when a message failed in wasm (its line says why), 2 when nothing could run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from aonode.engine.errors import AONodeError
from aonode.modules.catalogue import resolve
from aonode.modules.fetch import aonode_home


@dataclass
class Module:
    path: Path
    id: str


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = subparsers.add_parser("eval", help="spawn an in-memory process and Eval Lua code in it")
    ev.add_argument("module", help="a .wasm path or a catalogue name (aonode module list)")
    ev.add_argument("code", nargs="*", help="Lua code, one Eval message each")
    ev.add_argument("--snapshot-in", help="continue from this snapshot instead of spawning: an aonode snapshot "
                    "(GET /<pid>~process@1.0/snapshot) or a linear-memory dump from ao-loader / a legacy CU "
                    "checkpoint (raw or gzip)")
    ev.add_argument("--snapshot-out", help="write the final snapshot here")
    ev.add_argument("--owner", default=None, help="the process owner the Evals come from (a snapshot of "
                    "another node's process answers only its own owner's Evals)")
    ev.add_argument("--memory-limit", default=None, help='e.g. "1-gb"')
    ev.add_argument("--compute-limit", type=int, default=None, help="fuel per message")
    ev.set_defaults(func=run)


def resolve_module(name: str) -> Module:
    """A .wasm file (its id follows from its bytes) or a catalogue image (its Arweave id, if any)."""
    from aonode.engine.sandbox import content_id

    path = Path(name)
    if path.exists():
        return Module(path, content_id("module", hashlib.sha256(path.read_bytes()).hexdigest()))
    image = resolve(name)
    return Module(Path(image.path), image.id or content_id("module", name))


def run(args: argparse.Namespace) -> int:
    from aonode.engine.sandbox import OWNER, Sandbox  # wasmtime loads only for this command

    try:
        module = resolve_module(args.module)
        snapshot = Path(args.snapshot_in).read_bytes() if args.snapshot_in else None
        sandbox = Sandbox(module.path.read_bytes(), module.id, aonode_home() / "wasm",
                          memory_limit=args.memory_limit, compute_limit=args.compute_limit, snapshot=snapshot,
                          owner=args.owner or OWNER)
    except (AONodeError, ValueError, OSError) as err:
        print(f"aonode eval: {err}", file=sys.stderr)
        return 2
    failed = False
    for line in sandbox.run(args.code):
        print(json.dumps(line.to_json(), ensure_ascii=False), flush=True)
        failed = failed or line.failed
    if args.snapshot_out:
        Path(args.snapshot_out).write_bytes(sandbox.snapshot())
    return 1 if failed else 0
