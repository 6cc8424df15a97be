"""The `aonode` command: one module per command group, each registering its sub-commands.

- serve.py   `aonode serve`: the HTTP node (the composition root is server/serve.py)
- eval.py    `aonode eval`: an in-memory process for trying Lua against an image
- client.py  `aonode spawn` / `aonode send`: sign items with a wallet and post them to a node
- module.py  `aonode module list|fetch|add`: the image catalogue on this machine
- wallet.py  `aonode wallet new|address`: make an Arweave JWK, print its address
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from aonode.engine.progress import PROGRESS
from aonode.engine.startup import mark
from aonode.server.cli.checks import UserError

GROUPS = ("serve", "eval", "module", "client", "wallet")  # the command modules, in --help order


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every group's commands, or `only` one group's: `aonode serve` imports no other command's module
    (their imports would delay the warm-up a first start begins: server/warmup.py)."""
    parser = argparse.ArgumentParser(prog="aonode", description="An AO compute node.")
    parser.add_argument("--version", action="version", version=f"aonode {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (only,) if only else GROUPS:
        importlib.import_module(f"aonode.server.cli.{name}").add_commands(sub)
    for command in sub.choices.values():  # every --help shows each option's default
        _show_defaults(command)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _show_defaults(nested)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aonode")
    except PackageNotFoundError:
        return "unknown"


def _log_to_stderr() -> None:
    """aonode's own notices (one-time preparations, warnings) on stderr; stdout stays for results."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aonode: %(message)s"))
    root = logging.getLogger("aonode")
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    mark("cli-imports")
    _log_to_stderr()
    PROGRESS.report_to(sys.stderr)  # long work shows: a bar on a terminal, plain lines in a log
    try:
        return _run(argv)
    except UserError as err:  # the user's mistake: one line, no traceback
        print(f"aonode: {err}", file=sys.stderr)
        return 2


def _run(argv: list[str] | None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    parser = build_parser("serve" if args_given[:1] == ["serve"] else None)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "eval" and not any(e.startswith("-") for e in extra):
        args.code += extra  # Lua code after an option: `eval MODULE --snapshot-in F 'return X'`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)
