"""`aonode eval MODULE 'lua' ...`: spawn an in-memory process, Eval each argument, print one JSON line each.

MODULE is a .wasm path or a catalogue name; the process itself runs in `aonode.engine.sandbox`.
The exit status is 1 when a message errored (a Lua error, or a wasm failure such as the compute
limit: its line says why), 2 when nothing could run, 130 on Ctrl-C (which stops even a message
stuck in a loop: the messages run in a worker thread the main thread waits on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aonode.server.cli.ansi as ansi
from aonode.engine.errors import AONodeError
from aonode.modules.catalogue import resolve
from aonode.modules.fetch import aonode_home

# Fuel is wasmtime's count of executed wasm instructions (roughly one per instruction). 10^10 is
# seconds of Lua on this engine, far above any ordinary Eval; a `while true do end` ends with an error.
DEFAULT_COMPUTE_LIMIT = 10_000_000_000


@dataclass
class Module:
    path: Path
    id: str


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = subparsers.add_parser("eval", help="spawn an in-memory process and Eval Lua code in it")
    ev.add_argument("module", help="a .wasm path or a catalogue name (aonode module list)")
    ev.add_argument("code", nargs="*", help="Lua code, one Eval message each")
    ev.add_argument(
        "--snapshot-in",
        help="continue from this snapshot instead of spawning: an aonode snapshot "
        "(GET /<pid>~process@1.0/snapshot) or a linear-memory dump from ao-loader / a legacy CU "
        "checkpoint (raw or gzip)",
    )
    ev.add_argument("--snapshot-out", help="write the final snapshot here")
    ev.add_argument(
        "--owner",
        default=None,
        help="the process owner the Evals come from (a snapshot of "
        "another node's process answers only its own owner's Evals)",
    )
    ev.add_argument("--memory-limit", default=None, help='e.g. "1-gb"')
    ev.add_argument(
        "--compute-limit",
        type=int,
        default=DEFAULT_COMPUTE_LIMIT,
        metavar="FUEL",
        help="the most wasm instructions (wasmtime fuel) each Eval may run; the spawn (slot 0) "
        "is not limited. A message past it fails with ComputeLimitExceeded, its state "
        "rolled back",
    )
    ev.add_argument(
        "--raw", action="store_true", help="keep AOS's ANSI colour codes in output and error (stripped by default)"
    )
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
        sandbox = Sandbox(
            module.path.read_bytes(),
            module.id,
            aonode_home() / "wasm",
            memory_limit=args.memory_limit,
            compute_limit=args.compute_limit,
            snapshot=snapshot,
            owner=args.owner or OWNER,
            name=args.module,
        )
    except (AONodeError, ValueError, OSError) as err:
        print(f"aonode eval: {err}", file=sys.stderr)
        return 2
    failed = False

    def evaluate() -> None:
        nonlocal failed
        for line in sandbox.run(args.code):
            answer = line.to_json()
            print(json.dumps(answer if args.raw else ansi.strip(answer), ensure_ascii=False), flush=True)
            failed = failed or line.failed or line.error is not None
        if args.snapshot_out:
            Path(args.snapshot_out).write_bytes(sandbox.snapshot())

    if not until_interrupted(evaluate):
        print("aonode eval: interrupted", file=sys.stderr, flush=True)
        os._exit(130)  # the worker may be inside wasm, where no Python exception reaches it
    return 1 if failed else 0


def until_interrupted(work: Callable[[], None]) -> bool:
    """Run `work` in a daemon thread; False when Ctrl-C came first. The main thread only waits, so
    Python sees the SIGINT at once even while the worker is inside a long wasm call."""
    worker = threading.Thread(target=work, name="aonode-eval", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        return False
    return True
