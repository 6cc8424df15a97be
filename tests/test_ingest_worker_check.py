"""The ingest worker reads an ANS-104 body on the process routes without building the request's
Incoming (server/ingest_front.carries_data_item): it must take exactly the requests that
hyperbeam.signed_message reads as a data item (the last of repeated fields counting), and the
worker's check gives the same message either way; a tampered item is refused (400, its error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.message import b64url, b64url_decode
from aonode.server import codec, ingest_front, ingest_http
from aonode.server.hyperbeam import signed_message
from aonode.server.ingest_worker import _check, answer_body, node_wallet
from aonode.server.legacy.mu import data_item_answer
from aonode.server.sequencer_socket import rendered

PID = b64url(bytes(range(32)))
HEADS = [
    [(b"content-type", b"application/ans104")],
    [(b"content-type", b"Application/ANS104; charset=x")],
    [(b"content-type", b"application/octet-stream")],
    [(b"content-type", b"application/json"), (b"codec-device", b"ANS104@1.0")],
    [(b"content-type", b"application/ans104"), (b"content-type", b"application/json")],
    [(b"content-type", b"application/json"), (b"content-type", b"application/ans104")],
    [(b"codec-device", b"ans104@1.0"), (b"codec-device", b"httpsig@1.0")],
    [(b"content-type", b"text/plain")],
    [],
]


@pytest.fixture(scope="module")
def item() -> bytes:
    return build_and_sign(Wallet.generate("ed25519"), data="hi", tags=[("Action", "Ping")], target=PID).raw


def _scope(headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, object]:
    head = [b"POST /" + PID.encode() + b"~process@1.0/schedule HTTP/1.1", b"host: h"]
    head += [k + b": " + v for k, v in headers] + [b"content-length: %d" % len(body)]
    scope = ingest_http.parse_head(b"\r\n".join(head) + b"\r\n\r\n", ("127.0.0.1", 1))
    assert scope is not None
    return scope


@pytest.mark.parametrize("headers", HEADS)
def test_the_same_requests_are_read_as_data_items(item: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    scope = _scope(headers, item)
    _, decoded = signed_message(ingest_front.incoming(scope, item))
    assert ingest_front.carries_data_item(scope) == (decoded is None)
    if decoded is None:
        checked = _check(scope, item, PID)
        assert checked is not None
        msg, _ = signed_message(ingest_front.incoming(scope, item))
        assert checked[1] == msg


def test_a_tampered_item_is_refused(item: bytes) -> None:
    tampered = item[:-1] + bytes([item[-1] ^ 1])
    with pytest.raises(BadInput, match="signature"):
        _check(_scope(HEADS[0], tampered), tampered, PID)


@pytest.mark.parametrize("item_id", [None, "an-item-id"])
def test_the_answer_body_is_the_rendered_assignment_or_the_mus_answer(item: bytes, item_id: str | None) -> None:
    """The legacy MU's answer made from the node's fields is the one read back from the rendered assignment."""
    msg = _check(_scope(HEADS[0], item), item, PID)[1]  # type: ignore[index]
    fields: list[object] = [7, 1_764_000_000_123, 1_500_000, "blockhash", 0, "chain"]
    whole = rendered(PID, msg, fields)
    expected = whole if item_id is None else codec.dump_json(data_item_answer(item_id, json.loads(whole)))
    assert answer_body(PID, msg, item_id, 200, fields) == expected
    assert answer_body(PID, msg, item_id, 200, whole) == expected  # a repeat, answered whole by the node
    assert answer_body(PID, msg, item_id, 400, b'{"error":"x"}') == b'{"error":"x"}'
    with pytest.raises(ValueError, match="no assignment"):
        answer_body(PID, msg, item_id, 200, fields[:5])


def test_a_worker_takes_only_the_nodes_own_working_wallet(tmp_path: Path) -> None:
    """node_wallet skips OpenSSL's full RSA check (the node's process made it): the key must be the
    node's (its address) and must sign what its public key verifies (a damaged `d` does not)."""
    wallet, other = Wallet.generate("rsa"), Wallet.generate("rsa")
    path = tmp_path / "wallet.json"
    wallet.save(path)
    assert node_wallet(str(path), wallet.address).address == wallet.address
    with pytest.raises(SystemExit, match="not the node's"):
        node_wallet(str(path), other.address)
    jwk = wallet.to_jwk()
    d = bytearray(b64url_decode(jwk["d"]))
    d[-1] ^= 2
    path.write_text(json.dumps({**jwk, "d": b64url(bytes(d))}))
    with pytest.raises(BadInput, match="inconsistent"):  # what the node's own full check says
        Wallet.load(path)
    with pytest.raises(SystemExit, match="does not sign"):
        node_wallet(str(path), wallet.address)
