"""`aonode serve --ingest-workers 2` at its edges, answered by a worker as the node's process answers:
a body declared over the limit gets its 413 at once (the node's read_body says so without reading it;
a worker tunnelling the request must not first buffer the whole body), a tunnelled answer has one `date`
and one `server` field, the schedule requests the workers answer are counted in the node's /metrics
like the ones it answers itself, and a worker's lean HTTP/1.1 server (server/ingest_http.py) keeps a
connection's order: pipelined schedule POSTs answered by the worker, then a read and a chunked upload on
the same connection answered by the node through the tunnel. Real CLI, loopback."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from aonode.engine.crypto import Wallet
from aonode.server.cli.client import build_message, new_anchor
from aonode.server.gates import Limits
from tests.helpers.ingest import ANS104, _answers, served_with_workers
from tests.helpers.threads import started

pytestmark = pytest.mark.slow  # a served node with worker processes

CONNECTIONS = 12  # new connections: the kernel spreads them over the node's and both workers' sockets
WALLET = Wallet.generate("ed25519")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with served_with_workers(tmp_path_factory.mktemp("edges") / "node", WALLET) as running:
        yield running


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


def test_one_connection_pipelined_schedules_then_a_read_and_a_chunked_upload(served: tuple[str, str]) -> None:
    url, pid = served
    host, port = url.removeprefix("http://").rsplit(":", 1)
    items = [build_message(WALLET, process=pid, tags=[("Action", "Ping")], data=f"p{n}", anchor=new_anchor())
             for n in range(4)]  # fmt: skip
    path = f"/~scheduler@1.0/schedule?target={pid}"

    def post(raw: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/ans104\r\n"
        return f"{head}content-length: {len(raw)}\r\n\r\n".encode() + raw

    chunked = (
        (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/ans104\r\n"
            "transfer-encoding: chunked\r\n\r\n"
        ).encode()
        + f"{len(items[3].raw):x}\r\n".encode()
        + items[3].raw
        + b"\r\n0\r\n\r\n"
    )
    read = f"GET /{pid}~process@1.0/slot HTTP/1.1\r\nhost: {host}\r\naccept: application/json\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"".join(post(item.raw) for item in items[:3]) + read + chunked)  # one write: pipelined
        answers = _answers(sock, 5)
    assert [status for status, _, _ in answers] == [200] * 5, answers
    slots = [json.loads(body)["slot"] for _, _, body in answers[:3]]
    assert [json.loads(body)["message"] for _, _, body in answers[:3]] == [item.id for item in items[:3]]
    assert slots == sorted(slots) and len(set(slots)) == 3  # answered in the order they were sent
    assert json.loads(answers[3][2])["current"] >= slots[-1]  # the read came after the three were durable
    assert json.loads(answers[4][2])["message"] == items[3].id  # the chunked upload: the node's own route
    assert all("signature" in fields and "date" in fields for _, fields, _ in answers)


PIPELINED = 20_000  # refused schedule POSTs on one connection: their answers (~1 KiB each) outgrow any socket buffer


def test_a_client_that_pipelines_without_reading_is_not_answered_into_the_workers_memory(
    served: tuple[str, str],
) -> None:
    """A worker answers a connection's pipelined requests one after another; a client that sends them and
    reads no answer must stop being served once the answers wait for it (as hypercorn did: a write
    waited for the socket), not have every answer piled up in the worker's memory (one client could make
    a worker hold hundreds of MB). Once it reads, the rest are answered, in order, none lost."""
    url, pid = served
    host, port = url.removeprefix("http://").rsplit(":", 1)
    refused = (
        f"POST /{pid}~process@1.0/schedule HTTP/1.1\r\nhost: {host}\r\n"
        "content-type: application/ans104\r\ncontent-length: 4\r\n\r\njunk"
    ).encode()
    before = _count(url, "process/schedule", 400)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.settimeout(120)
        sock.connect((host, int(port)))
        sender = started(lambda: sock.sendall(refused * PIPELINED), "sender")
        answered, stable_since, deadline = -1.0, time.monotonic(), time.monotonic() + 120
        while time.monotonic() - stable_since < 3 and time.monotonic() < deadline:
            time.sleep(0.25)
            now = _count(url, "process/schedule", 400) - before
            if now != answered:
                answered, stable_since = now, time.monotonic()
        assert 0 < answered < PIPELINED / 2, f"{answered} of {PIPELINED} answered to a client that read none"
        answers = _answers(sock, PIPELINED)
        sender.join(60)
    assert [status for status, _, _ in answers] == [400] * PIPELINED
