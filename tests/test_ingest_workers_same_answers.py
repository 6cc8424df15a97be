"""The same signed requests answered the same by `aonode serve --ingest-workers 0` (the node's process
answers the schedule POSTs itself) and `--ingest-workers 2` (its worker processes answer them): on each
schedule route (legacy MU `POST /`, `~scheduler@1.0/schedule`, `<pid>~process@1.0/schedule` as ANS-104 and
as httpsig) the same status, header field names and JSON but for the assignment's timestamp (each node's clock), so
the same slots and the same hash chain; and the same refusals, byte for byte, for bad input. Two real
CLIs on loopback sharing one node wallet (so one process id), real SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from aonode.engine import httpsig
from aonode.engine.answer_signature import verify_answer
from aonode.engine.crypto import Wallet
from aonode.modules import catalogue
from aonode.server.cli.client import build_message, build_spawn, new_anchor
from tests.helpers.httpnode import cli_node
from tests.helpers.ingest import ANS104, OCTET, _workers

pytestmark = pytest.mark.slow  # two served nodes, one with worker processes

CLIENT = Wallet.generate("ed25519")
Post = tuple[str, dict[str, str], bytes]
CLOCKED = {"timestamp"}  # fields each node fills from its own clock


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, str]]:
    """(url of --ingest-workers 0, url of --ingest-workers 2, the node address, a process both hold)."""
    root = tmp_path_factory.mktemp("same")
    key = root / "node-key.json"
    Wallet.generate("rsa").save(key)
    with ExitStack() as stack:
        urls, workers = [], []
        for n, count in enumerate(("0", "2")):
            args = ("--wallet", str(key), "--cron-every", "0", "--ingest-workers", count)
            url, proc = stack.enter_context(cli_node(root / f"node{n}", *args))
            urls.append(url)
            workers.append((proc, url, int(count)))
        address = httpx.get(f"{urls[0]}/~meta@1.0/info/address").text
        assert httpx.get(f"{urls[1]}/~meta@1.0/info/address").text == address
        module = catalogue.lookup("aos2_0_6")
        assert module is not None and module.id
        spawn = build_spawn(CLIENT, module=module.id, scheduler=address).raw
        pids = {httpx.post(f"{url}/", content=spawn, headers=OCTET, timeout=300).json()["process"] for url in urls}
        assert len(pids) == 1
        for proc, url, count in workers:
            if count:
                _workers(proc, url, count)
        yield urls[0], urls[1], address, pids.pop()


def _posts(pid: str, n: int) -> list[Post]:
    def item() -> bytes:
        return build_message(CLIENT, process=pid, tags=[("Action", "Ping")], data=str(n), anchor=new_anchor()).raw

    fields = {"action": b"Ping", "target": pid.encode(), "data": str(n).encode(), "nonce": new_anchor().encode()}
    signed = httpsig.signed_message(CLIENT, fields)
    return [
        ("/", OCTET, item()),
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, item()),
        (f"/{pid}~process@1.0/schedule", dict(signed.headers), signed.body),
        (f"/{pid}~process@1.0/schedule", ANS104, item()),
    ]


def _answer(url: str, post: Post, address: str) -> tuple[int, bytes, list[str]]:
    """(status, body, the answer's header field names), its signature checked."""
    path, headers, body = post
    got = httpx.post(url + path, content=body, headers=headers, timeout=60)
    assert verify_answer(got.headers.multi_items(), got.content) == address
    return got.status_code, got.content, sorted(k for k, _ in got.headers.multi_items())


def _unclocked(body: bytes) -> dict[str, object]:
    answer = json.loads(body)
    assert isinstance(answer, dict)
    return {k: v for k, v in answer.items() if k not in CLOCKED}


def test_every_schedule_route_answers_the_same_slots_and_chain_with_or_without_workers(
    nodes: tuple[str, str, str, str],
) -> None:
    alone, with_workers, address, pid = nodes
    urls = (alone, with_workers)
    for n in range(3):
        for post in _posts(pid, n):
            (status, body, names), (status_w, body_w, names_w) = (_answer(url, post, address) for url in urls)
            assert status == status_w == 200, (post[0], body, body_w)
            assert _unclocked(body) == _unclocked(body_w), (post[0], body, body_w)
            assert sorted(json.loads(body)) == sorted(json.loads(body_w))
            assert names == names_w, post[0]
            again = _answer(with_workers, post, address)  # a repeat: its one slot, from either
            assert (again[0], _unclocked(again[1])) == (200, _unclocked(body)), post[0]


def test_refusals_are_byte_for_byte_the_same_with_or_without_workers(nodes: tuple[str, str, str, str]) -> None:
    alone, with_workers, address, pid = nodes
    good = _posts(pid, 100)
    tampered = bytearray(good[0][2])
    tampered[-1] ^= 1  # the data's last byte: the signature no longer covers it
    path, headers, body = good[2]
    unknown = "N" * 43
    cases: list[Post] = [
        ("/", OCTET, bytes(tampered)),
        ("/", OCTET, b"not a data item"),
        ("/", OCTET, b""),
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, bytes(tampered)),
        (f"/~scheduler@1.0/schedule?target={unknown}", ANS104, _posts(unknown, 101)[1][2]),
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, _posts("M" * 43, 102)[1][2]),  # another Target
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, b"\x01\x00" + b"\x00" * 40),
        (path, {**headers, "signature": headers["signature"][:-4] + "AAA="}, body),
        (path, headers, body + b"x"),  # the body its content-digest does not name
        (f"/{unknown}~process@1.0/schedule", ANS104, _posts(unknown, 103)[3][2]),
        (f"/{pid}~process@1.0/schedule", ANS104, bytes(tampered)),
        (f"/{pid}~process@1.0/schedule", ANS104, b""),
        ("/", OCTET, _posts(unknown, 104)[0][2]),  # the legacy MU: no such process
        ("/~scheduler@1.0/schedule", ANS104, _posts(pid, 105)[1][2]),  # no target in the query
        (path, {k: v for k, v in headers.items() if k.lower() != "signature"}, body),
        (path, {**headers, "data": "changed"}, body),  # a signed field changed
        (path, {"content-type": "multipart/form-data; boundary=x"}, b"--x\r\nnot a part\r\n--x--\r\n"),
    ]
    for post in cases:
        answers = [_answer(url, post, address) for url in (alone, with_workers)]
        assert 400 <= answers[0][0] < 500, (post[0], answers[0])
        assert answers[0] == answers[1], post[0]
