"""`aonode serve --ingest-workers 2`: a worker relays a read to the node's process as it streams; a
client that leaves mid-answer must end that relay, not leave the worker pulling the rest of the node's
answer. A legacy `/state` answer (the whole process memory, here ~300 MiB) holds one of the node's
STATE_STREAMS places for as long as it is read, and a reader that waits 5 s for a place gets a 503: a
worker that went on pulling answers its readers had left held those places for seconds each, so the
next wave of readers was refused.
Real CLI, loopback, raw sockets (a reader that leaves is one that closes its connection)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from aonode.engine.crypto import Wallet
from aonode.server.cli.client import build_message, new_anchor
from aonode.server.legacy.cu import STATE_STREAMS
from tests.helpers.httpnode import cli_node
from tests.helpers.ingest import ANS104, _spawned, _workers
from tests.helpers.threads import Threads

pytestmark = pytest.mark.slow  # a served node with worker processes and a ~300 MiB process memory

WALLET = Wallet.generate("ed25519")
WAVES = 4  # of STATE_STREAMS readers leaving mid-body at once, each through a worker: never more readers
# at a time than the node has places, so none waits for one unless a reader that left still holds it
GROW = "Blob = string.rep('z', 128 * 1024 * 1024); return #Blob"  # the memory grows to ~300 MiB


def _served_by(node_pid: int, port: int, sock: socket.socket) -> str:
    """'node' if the node's own process holds the server end of this connection, else 'worker'
    (SO_REUSEPORT: the kernel spreads connections over the node's socket and its workers')."""
    client_port = sock.getsockname()[1]
    want = f"0100007F:{port:04X}", f"0100007F:{client_port:04X}"
    inodes = {
        row.split()[9]
        for row in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if tuple(row.split()[1:3]) == want
    }
    held = {os.readlink(f"/proc/{node_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{node_pid}/fd")}
    return "node" if any(f"socket:[{inode}]" in held for inode in inodes) else "worker"


def _leave_mid_body(url: str, pid: str, node_pid: int) -> int:
    """GET /state through a worker; once part of the body came, close the connection (leave). The
    status it got; a connection the node's own process took is closed and tried again."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for _ in range(30):
        with socket.create_connection((host, int(port)), timeout=120) as sock:
            sock.sendall(f"GET /state/{pid} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got or len(got) < 256 * 1024:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
                if got.startswith(b"HTTP/1.1 503"):
                    break
            status = int(got.split(b" ", 2)[1])
            if status != 200 or _served_by(node_pid, int(port), sock) == "worker":
                return status
    raise AssertionError("30 connections in a row went to the node's own process, none to a worker")


def test_a_reader_leaving_a_relayed_stream_frees_the_nodes_place_at_once(tmp_path: Path) -> None:
    with cli_node(tmp_path / "node", "--ingest-workers", "2", "--cron-every", "0") as (url, proc):
        pid = _spawned(url, WALLET)
        _workers(proc, url)
        grow = build_message(WALLET, process=pid, tags=[("Action", "Eval")], data=GROW, anchor=new_anchor())
        assert httpx.post(f"{url}/{pid}~process@1.0/schedule", content=grow.raw, headers=ANS104).status_code == 200
        assert httpx.get(f"{url}/{pid}~process@1.0/now/at-slot", timeout=300).text == "1"
        with httpx.stream("GET", f"{url}/state/{pid}", timeout=300) as first:  # its snapshot, taken once
            size = int(first.headers["content-length"])
            assert first.status_code == 200 and size > 256 << 20

        for wave in range(WAVES):
            readers = Threads(lambda _n: _leave_mid_body(url, pid, proc.pid), STATE_STREAMS, "reader")
            statuses = readers.start().join(300)
            refused = len(statuses) - statuses.count(200)
            assert refused == 0, f"wave {wave}: {refused} readers refused ({statuses}): places held by readers that left"
        whole = httpx.get(f"{url}/state/{pid}", timeout=300)
        assert whole.status_code == 200 and len(whole.content) == size
