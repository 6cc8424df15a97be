"""server/ingest_answer.py: an ingest worker's JSON answers, made with their constant parts encoded once,
are byte for byte what the general path (ingest_front.json_headers + ingest_http.encode) gives, for
any status, body and extra fields; they verify (engine/answer_signature.verify_answer) as the node's,
and an edited body does not. engine/answer_signature.BodySigner gives SessionKey.sign's signature."""

from __future__ import annotations

import asyncio

import pytest

from aonode.engine.answer_signature import BodySigner, SessionKey, verify_answer
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.server import codec, ingest_front, ingest_http
from aonode.server.app import cors_headers
from aonode.server.ingest_answer import JsonAnswers
from aonode.server.signing import SessionSigner, WalletSigner, answer_fields

BODIES = [b"{}", b'{"slot":1,"id":"x"}', '{"error":"caf\u00e9 \u2603"}'.encode(), b"[" + b"1," * 5000 + b"1]"]
EXTRAS: list[list[tuple[bytes, bytes]]] = [[], [(b"retry-after", b"1")]]


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("ed25519")


def _general(status: int, body: bytes, extra: list[tuple[bytes, bytes]], signer: object) -> bytes:
    headers = asyncio.run(ingest_front.json_headers(body, extra, signer, cors_headers()))  # type: ignore[arg-type]
    return ingest_http.encode(ingest_http.Answer(status, headers, body))


def _parts(raw: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = [(k, v) for k, _, v in (line.partition(": ") for line in lines)]
    return status.encode(), fields, body


@pytest.mark.parametrize("status", [200, 400, 503, 599])
def test_the_answer_is_the_general_paths_bytes(wallet: Wallet, status: int) -> None:
    signer = SessionSigner(wallet)
    answers = JsonAnswers(signer, cors_headers())
    for body in BODIES:
        for extra in EXTRAS:
            for _ in range(3):  # the Date field may change between the two: then make both again
                fast = asyncio.run(answers.answer(status, body, extra))
                if fast == _general(status, body, extra, signer):
                    break
            else:
                raise AssertionError(f"the answers differ for {status} {body[:40]!r} {extra}")


def test_the_answer_verifies_and_an_edited_body_does_not(wallet: Wallet) -> None:
    answers = JsonAnswers(SessionSigner(wallet), cors_headers())
    raw = asyncio.run(answers.answer(200, b'{"slot":7}', []))
    status, fields, body = _parts(raw)
    assert status == b"HTTP/1.1 200 OK" and body == b'{"slot":7}'
    assert verify_answer(fields, body) == wallet.address
    with pytest.raises(BadInput):
        verify_answer(fields, b'{"slot":8}')
    other = asyncio.run(JsonAnswers(SessionSigner(wallet), cors_headers()).answer(200, b'{"slot":8}', []))
    _, other_fields, _ = _parts(other)
    swapped = [(k, v) for k, v in fields if k != "content-digest"] + [
        (k, v) for k, v in other_fields if k == "content-digest"
    ]
    with pytest.raises(BadInput):  # another answer's digest does not match this session signature
        verify_answer(swapped, b'{"slot":8}')


def test_a_wallet_signer_keeps_the_general_path() -> None:
    wallet = Wallet.generate("ed25519")
    signer = WalletSigner(wallet)
    answers = JsonAnswers(signer, cors_headers())
    assert answers.body_signer is None
    raw = asyncio.run(answers.answer(200, b'{"slot":1}', []))
    _, fields, body = _parts(raw)
    assert verify_answer(fields, body) == wallet.address


def test_body_signer_gives_session_key_signs_signature(wallet: Wallet) -> None:
    session = SessionKey.start(wallet)
    fast = BodySigner(session, codec.JSON)
    for body in BODIES:
        fields = answer_fields(codec.JSON.encode(), body)
        general = dict(session.sign(fields))
        digest = dict(fields)["content-digest"]
        assert fast.signature(digest) == general["signature"]
        assert fast.signature_input == general["signature-input"]
        assert fast.public == general["ao-session-key"]
