"""Test helper: what the ingest tests share. A Node for server/ingest.py and the sequencer socket (a
process listed without loading its image, Ping messages), and for a served `aonode serve --ingest-workers`
its worker processes once they listen, and a process spawned over HTTP."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.modules import catalogue
from aonode.server.cli.client import build_spawn
from aonode.server.compose import make_node
from tests.helpers.httpnode import cli_node

OCTET = {"content-type": "application/octet-stream"}
ANS104 = {"content-type": "application/ans104", "codec-device": "ans104@1.0"}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path / "node")
    yield made
    made.close()


def spawned(node: Node) -> str:
    """A process listed on the node (its image never loaded: scheduling needs only its definition)."""
    definition = Message.create(owner=node.address, tags=[("Type", "Process"), ("Module", "m")], data="ingest")
    node.router.scheduler.spawn(definition.id, definition)
    return definition.id


def ping(node: Node, n: int) -> Message:
    return Message.create(owner=node.address, tags=[("Action", "Ping")], data=str(n))


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _workers(proc: subprocess.Popen[str], url: str, count: int = 2, timeout: float = 60) -> set[int]:
    """The node's worker processes once `count` of them listen on the node's port (its own process does not)."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _children(proc.pid)
        if len(found) == count and _listeners(port) == count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not start: {_children(proc.pid)}, {_listeners(port)} listening")


def _listeners(port: int) -> int:
    """Sockets listening on the loopback `port` (/proc/net/tcp: state 0A)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def _spawned(url: str, wallet: Wallet) -> str:
    address = httpx.get(f"{url}/~meta@1.0/info/address", timeout=60).text
    module = catalogue.lookup("aos2_0_6")
    assert module is not None and module.id
    spawn = build_spawn(wallet, module=module.id, scheduler=address)
    answer = httpx.post(f"{url}/", content=spawn.raw, headers=OCTET, timeout=300)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["process"])


@contextmanager
def served_with_workers(data: Path, wallet: Wallet) -> Iterator[tuple[str, str]]:
    """(url, pid): `aonode serve --ingest-workers 2` on `data` with one process of `wallet`'s, both workers up."""
    with cli_node(data, "--ingest-workers", "2", "--cron-every", "0") as (url, proc):
        pid = _spawned(url, wallet)
        _workers(proc, url)
        yield url, pid


def _answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` answers with Content-Length bodies read off one connection, in order: (status, fields, body)."""
    got, out = b"", list[tuple[int, dict[str, str], bytes]]()
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(out)} answers"
        got += chunk
        while b"\r\n\r\n" in got:
            head, rest = got.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.lower().split(": ", 1) for line in lines[1:])
            size = int(fields["content-length"])
            if len(rest) < size:
                break
            out.append((int(lines[0].split(" ")[1]), fields, rest[:size]))
            got = rest[size:]
    return out
