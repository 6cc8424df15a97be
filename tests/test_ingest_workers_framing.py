"""`aonode serve --ingest-workers 2`: requests framed as hypercorn (the node's own server, h11)
takes them get the same answers from a worker's lean HTTP/1.1 server (server/ingest_http.py): a client
that half-closes after its requests (shutdown(SHUT_WR), as `nc -N` does) is answered, each request in
order; a head with bare LF line ends is answered (llhttp refuses those, h11 reads them); a request
without Host gets h11's 400, a head past h11's limit its 431 and a target llhttp's URL parser refuses the
node's answer, as on the node's own port. Real CLI, raw sockets, loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from aonode.engine.crypto import Wallet
from aonode.server.cli.client import build_message, new_anchor
from tests.helpers.ingest import _answers, served_with_workers

pytestmark = pytest.mark.slow  # a served node with worker processes

WALLET = Wallet.generate("ed25519")
CONNECTIONS = 6  # new connections: the kernel spreads them over both workers


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with served_with_workers(tmp_path_factory.mktemp("framing") / "node", WALLET) as running:
        yield running


def _schedule(pid: str, n: int) -> tuple[str, bytes]:
    """A signed schedule POST (its message id, the request's bytes)."""
    item = build_message(WALLET, process=pid, tags=[("Action", "Ping")], data=f"f{n}", anchor=new_anchor())
    head = f"POST /~scheduler@1.0/schedule?target={pid} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    head += f"content-type: application/ans104\r\ncontent-length: {len(item.raw)}\r\n\r\n"
    return item.id, head.encode() + item.raw


def _exchange(url: str, request: bytes, count: int, half_close: bool = False) -> list[tuple[int, bytes]]:
    """(status, body) of the first `count` answers on one connection, in order (a timeout fails the test)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return [(status, body) for status, _, body in _answers(sock, count)]


def test_a_client_that_half_closes_gets_every_answer_then_the_close(served: tuple[str, str]) -> None:
    url, pid = served
    read = b"GET /~meta@1.0/info/address HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    for n in range(CONNECTIONS):
        (first, one), (second, two) = _schedule(pid, 2 * n), _schedule(pid, 2 * n + 1)
        answers = _exchange(url, one + two + read, 3, half_close=True)  # two taken, one tunnelled
        assert [status for status, _ in answers] == [200, 200, 200], answers
        assert [json.loads(body)["message"] for _, body in answers[:2]] == [first, second]
        assert _exchange(url, read, 1, half_close=True)[0][0] == 200  # tunnelled from the first request


def test_a_head_with_bare_lf_line_ends_is_answered(served: tuple[str, str]) -> None:
    url, pid = served
    for n in range(CONNECTIONS):
        mid, request = _schedule(pid, 100 + n)
        head, body = request.split(b"\r\n\r\n", 1)
        answers = _exchange(url, head.replace(b"\r\n", b"\n") + b"\n\n" + body, 1)
        assert [status for status, _ in answers] == [200] and json.loads(answers[0][1])["message"] == mid


def test_a_request_without_host_gets_the_nodes_400(served: tuple[str, str]) -> None:
    url, pid = served
    for n in range(CONNECTIONS):
        _, request = _schedule(pid, 200 + n)
        assert _exchange(url, request.replace(b"host: 127.0.0.1\r\n", b""), 1) == [(400, b"")]  # h11's answer


def test_a_head_past_the_nodes_limit_gets_the_nodes_431(served: tuple[str, str]) -> None:
    """A head longer than h11 takes (hypercorn's 16 KiB) is refused as on the node's own port, even when
    it arrives whole in one read (the worker's limit only held for a head still incomplete)."""
    url, pid = served
    for n in range(CONNECTIONS):
        _, request = _schedule(pid, 300 + n)
        padded = request.replace(b"host: 127.0.0.1\r\n", b"host: 127.0.0.1\r\nx-pad: " + b"a" * 70_000 + b"\r\n")
        assert _exchange(url, padded, 1) == [(431, b"")]  # h11's answer


def test_a_target_the_url_parser_refuses_gets_the_nodes_answer(served: tuple[str, str]) -> None:
    """`http://` (or a bad port, an open IPv6 bracket) passes llhttp's request line but not its URL parser:
    the worker raised inside its protocol, so the connection closed unanswered, or hung when the request
    followed a taken one. The node's server answers it (404 here)."""
    url, pid = served
    odd = b"POST http:// HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    for n in range(CONNECTIONS):
        mid, request = _schedule(pid, 400 + n)
        assert _exchange(url, odd, 1)[0][0] == 404
        answers = _exchange(url, request + odd, 2)
        assert [status for status, _ in answers] == [200, 404] and json.loads(answers[0][1])["message"] == mid
