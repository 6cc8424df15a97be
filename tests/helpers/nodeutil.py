"""Helpers to drive a real Node (real SQLite file, real AOS image) from tests."""
from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Callable

from aonode.engine.crypto import Wallet
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.server.compose import make_node as compose_node

OWNER = "OWNER-0000000000000000000000000000000000000"[:43]
OTHER = "OTHER-0000000000000000000000000000000000000"[:43]
_NODE_WALLET = Wallet.generate("ed25519")  # fast; the RSA default is exercised by the server tests


def ticking_clock(start: int = 1_700_000_000_000, step: int = 1000) -> Callable[[], int]:
    """A deterministic scheduler clock: every assignment is `step` ms after the previous one."""
    ticks = count()
    return lambda: start + step * next(ticks)


def make_node(data_dir: Path, **kwargs) -> Node:
    kwargs.setdefault("clock", ticking_clock())
    kwargs.setdefault("wallet", _NODE_WALLET)
    return compose_node(data_dir, **kwargs)


def definition(*tags: tuple[str, str], data: str = "", owner: str = OWNER, module: str = "aos2_0_6") -> Message:
    return Message.create(owner=owner, tags=(("Module", module), *tags), data=data)


def eval_msg(pid: str, code: str, owner: str = OWNER, nonce: str | None = None) -> Message:
    return Message.create(owner=owner, target=pid, tags=(("Action", "Eval"),), data=code, nonce=nonce or code)


def action(pid: str, name: str, *tags: tuple[str, str], data: str = "", owner: str = OWNER,
           nonce: str | None = None) -> Message:
    return Message.create(owner=owner, target=pid, tags=(("Action", name), *tags), data=data, nonce=nonce)


def output(view: dict) -> str:
    out = view["results"].get("Output") or {}
    return out.get("data", "") if isinstance(out, dict) else str(out)
