"""`aonode wallet new|address`: an Arweave JWK to sign with (`aonode spawn|send --wallet`), and its address."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aonode.engine.crypto import Wallet
from aonode.engine.errors import AONodeError


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wallet = subparsers.add_parser("wallet", help="make a wallet (Arweave JWK) or print a wallet's address")
    sub = wallet.add_subparsers(dest="wallet_command", required=True)
    new = sub.add_parser("new", help="write a new private key as a JWK file (mode 0600) and print its address")
    new.add_argument("path", help="where to write the JWK (refused if the file exists)")
    new.add_argument("--kind", choices=("rsa", "ed25519"), default="rsa", help="RSA-4096 (Arweave's own) or Ed25519")
    new.set_defaults(func=_new)
    address = sub.add_parser("address", help="print the address of a JWK file")
    address.add_argument("path", help="a JWK file (RSA or Ed25519)")
    address.set_defaults(func=_address)


def _new(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.exists():
        print(f"aonode wallet new: {target} exists; not overwriting a key", file=sys.stderr)
        return 2
    try:
        wallet = Wallet.generate(args.kind)
        wallet.save(target)
    except OSError as err:
        print(f"aonode wallet new: cannot write {target}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(wallet.address)
    return 0


def _address(args: argparse.Namespace) -> int:
    try:
        print(Wallet.load(args.path).address)
    except OSError as err:
        print(f"aonode wallet address: {args.path}: {err.strerror or err}", file=sys.stderr)
        return 2
    except AONodeError as err:
        print(f"aonode wallet address: {err}", file=sys.stderr)
        return 2
    return 0
