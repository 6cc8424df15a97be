"""`aonode serve --ingest-workers 2` at its edges, answered by a worker as the node's process answers:
a body declared over the limit gets its 413 at once (the node's read_body says so without reading it;
a worker relaying the request must not first buffer the whole body), a relayed answer has one `date`
and one `server` field (not the node's and the worker's), and the schedule requests the workers answer
are counted in the node's /metrics like the ones it answers itself. Real CLI, loopback."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from aonode.engine.crypto import Wallet
from aonode.server.cli.client import build_message, new_anchor
from aonode.server.gates import Limits
from tests.helpers.httpnode import cli_node
from tests.helpers.ingest import ANS104, _spawned, _workers

pytestmark = pytest.mark.slow  # a served node with worker processes

CONNECTIONS = 12  # new connections: the kernel spreads them over the node's and both workers' sockets
WALLET = Wallet.generate("ed25519")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("edges") / "node"
    with cli_node(data, "--ingest-workers", "2", "--cron-every", "0") as (url, proc):
        pid = _spawned(url, WALLET)
        _workers(proc, url)
        yield url, pid


def _raw_answer(url: str, request: bytes, timeout: float) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        got = b""
        try:
            while chunk := sock.recv(65536):  # the 413 closes the connection
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return got


def test_a_body_declared_over_the_limit_is_refused_at_once_on_every_connection(served: tuple[str, str]) -> None:
    url, pid = served
    huge = 100 * Limits().max_body  # past what the node drains: it answers without reading the body
    request = (
        f"POST /~scheduler@1.0/schedule?target={pid} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/ans104\r\ncontent-length: {huge}\r\n\r\n"
    ).encode() + b"x" * 1024
    answers = [_raw_answer(url, request, 10) for _ in range(CONNECTIONS)]
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers), [a[:40] for a in answers]
    assert all(b"over the limit" in a for a in answers)


def test_a_read_through_any_connection_has_one_date_and_one_server_field(served: tuple[str, str]) -> None:
    url, _pid = served
    for _ in range(CONNECTIONS):
        answer = httpx.get(f"{url}/~meta@1.0/info", headers={"accept": "application/json"}, timeout=30)
        names = [name for name, _ in answer.headers.multi_items()]
        assert answer.status_code == 200 and names.count("date") == 1 and names.count("server") == 1, names


def _count(url: str, route: str, status: int) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    want = {'method="POST"', f'route="{route}"', f'status="{status}"'}
    for labels, value in re.findall(r"^aonode_http_requests_total\{(.*)\} (\S+)$", text, re.M):
        if set(labels.split(",")) == want:
            return float(value)
    return 0.0


def test_the_schedules_workers_answer_are_counted_in_the_nodes_metrics(served: tuple[str, str]) -> None:
    url, pid = served
    before = _count(url, "process/schedule", 200), _count(url, "process/schedule", 400)
    for n in range(CONNECTIONS):
        item = build_message(WALLET, process=pid, tags=[("Action", "Ping")], data=str(n), anchor=new_anchor())
        good = httpx.post(f"{url}/{pid}~process@1.0/schedule", content=item.raw, headers=ANS104, timeout=60)
        assert good.status_code == 200, good.text
        bad = httpx.post(f"{url}/{pid}~process@1.0/schedule", content=item.raw[:-1] + b"!", headers=ANS104)
        assert bad.status_code == 400 and "error" in bad.json()
    want = (before[0] + CONNECTIONS, before[1] + CONNECTIONS)
    deadline = time.monotonic() + 10  # a worker's count reaches the node over its own socket, not the answer's
    while (after := (_count(url, "process/schedule", 200), _count(url, "process/schedule", 400))) != want:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after == want
