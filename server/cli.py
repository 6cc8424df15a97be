"""The `aonode` command: one sub-command per user task, each implemented where its logic lives."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aonode.engine.client import add_commands as add_client_commands
from aonode.modules.cli import add_commands as add_module_commands


def _serve(args: argparse.Namespace) -> int:
    from aonode.server.serve import serve

    serve(host=args.host, port=args.port, data_dir=Path(args.data_dir), dev=args.dev, demo=args.demo,
          cron_every=args.cron_every)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from aonode.engine.eval import main as eval_main

    return eval_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aonode", description="An AO compute node.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP node")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8734)
    serve.add_argument("--data-dir", default=".aonode", help="embedded store directory (created on first start)")
    serve.add_argument("--dev", action="store_true", help="accept unsigned JSON messages, signed by the node wallet")
    serve.add_argument("--demo", action="store_true",
                       help="spawn a token process from the default AOS module on first start and print how to read it")
    serve.add_argument("--cron-every", type=float, default=1.0, metavar="SECONDS",
                       help="how often cron processes are ticked without any traffic (0: only when messages come)")
    serve.set_defaults(func=_serve)

    ev = sub.add_parser("eval", help="spawn an in-memory process and Eval Lua code in it")
    ev.add_argument("module", help="a .wasm path or a catalogue name (aonode module list)")
    ev.add_argument("code", nargs="*", help="Lua code, one Eval message each")
    ev.add_argument("--snapshot-in", help="continue from this snapshot instead of spawning")
    ev.add_argument("--snapshot-out", help="write the final snapshot here")
    ev.add_argument("--memory-limit", default=None, help='e.g. "1-gb"')
    ev.add_argument("--compute-limit", type=int, default=None, help="fuel per message")
    ev.set_defaults(func=_eval)

    add_module_commands(sub)
    add_client_commands(sub)
    return parser


def _log_to_stderr() -> None:
    """aonode's own notices (one-time preparations, warnings) on stderr; stdout stays for results."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aonode: %(message)s"))
    root = logging.getLogger("aonode")
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _log_to_stderr()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "eval" and not any(e.startswith("-") for e in extra):
        args.code += extra  # Lua code after an option: `eval MODULE --snapshot-in F 'return X'`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
