"""Answers signed in batches (server/batch_signing.py): one RSA signature for the distinct answers
that wait together, each still bound to its own body; a lone answer is signed as before."""
from __future__ import annotations

import base64
import hashlib

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.server.batch_signing import covers_body
from aonode.server.signing import SignatureCache

JSON = b"application/json"


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("rsa")


def _text(headers: list[tuple[bytes, bytes]], content_type: bytes = JSON) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in [*headers, (b"content-type", content_type)]}


def _sign_together(cache: SignatureCache, bodies: list[bytes]) -> list[dict[str, str]]:
    out: dict[int, dict[str, str]] = {}

    async def one(index: int) -> None:
        out[index] = _text(await cache.headers_for(200, JSON, bodies[index]))

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for index in range(len(bodies)):
                tasks.start_soon(one, index)

    anyio.run(main)
    return [out[i] for i in range(len(bodies))]


def _independent(headers: dict[str, str], body: bytes, *, digest_signed: bool = True) -> tuple[str, ...]:
    """Checked by `http-message-signatures` (not our code): the covered components. With
    `digest_signed` it also checks the signed content-digest against the body; a batch signature
    binds the body through `ao-batch` instead, which covers_body checks."""

    class Keys(HTTPSignatureKeyResolver):
        def resolve_public_key(self, key_id: str) -> rsa.RSAPublicKey:
            n = int.from_bytes(base64.urlsafe_b64decode(key_id + "=" * (-len(key_id) % 4)), "big")
            return rsa.RSAPublicNumbers(65537, n).public_key()

    response = httpx.Response(200, headers=headers, content=body, request=httpx.Request("GET", "http://node/"))
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.RSA_PSS_SHA512, key_resolver=Keys())
    verifier.require_created = False
    [result] = verifier.verify(response, max_age=None, body=body if digest_signed else None)
    return tuple(n for n in (str(c).strip('"') for c in result.covered_components) if not n.startswith("@"))


def _ours(headers: dict[str, str], status: int = 200) -> str:
    """Our RFC 9421 verifier on the signature alone: the signer's address."""
    [commitment] = httpsig.verify(httpsig.Request("GET", "/", tuple(headers.items()), b"", status=status))
    return commitment.committer


def test_answers_waiting_together_share_one_signature_each_bound_to_its_body(wallet: Wallet) -> None:
    bodies = [f'{{"slot":{i}}}'.encode() for i in range(10)]
    answers = _sign_together(SignatureCache(wallet, batching=True), bodies)
    # the first is signed alone, the nine that waited meanwhile share the next signature
    assert '"content-digest"' in answers[0]["signature-input"] and "ao-batch" not in answers[0]
    shared = answers[1:]
    assert len({a["signature"] for a in shared}) == 1
    for body, headers in zip(bodies, answers, strict=True):
        assert covers_body(headers, body)
        assert _ours(headers) == wallet.address
    for body, headers in zip(bodies[1:], shared, strict=True):
        assert set(_independent(headers, body, digest_signed=False)) == {"ao-batch", "ao-result", "content-type"}
        assert headers["content-digest"] == httpsig.content_digest(body)
    # another answer's body, or a body with one byte changed, is not covered by this answer's headers
    assert not covers_body(shared[0], bodies[2])
    assert not covers_body(shared[0], bodies[1][:-1] + b"]")
    # a body smuggled into ao-batch breaks the signature
    forged = {**shared[0], "ao-batch": shared[0]["ao-batch"] + ", :" + base64.b64encode(
        hashlib.sha256(b"evil").digest()).decode() + ":"}
    with pytest.raises(BadInput):
        _ours(forged)


def test_by_default_answers_waiting_together_are_each_signed_over_their_own_digest(
        wallet: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AONODE_BATCH_SIGNING", raising=False)
    bodies = [f'{{"slot":{i}}}'.encode() for i in range(4)]
    answers = _sign_together(SignatureCache(wallet), bodies)
    assert len({a["signature"] for a in answers}) == 4
    for body, headers in zip(bodies, answers, strict=True):
        assert "ao-batch" not in headers
        assert set(_independent(headers, body)) == {"ao-result", "content-digest", "content-type"}
    monkeypatch.setenv("AONODE_BATCH_SIGNING", "1")
    assert SignatureCache(wallet).batching


def test_a_lone_answer_is_signed_over_its_own_digest(wallet: Wallet) -> None:
    [headers] = _sign_together(SignatureCache(wallet, batching=True), [b'{"alone":true}'])
    assert "ao-batch" not in headers
    assert set(_independent(headers, b'{"alone":true}')) == {"ao-result", "content-digest", "content-type"}
    assert covers_body(headers, b'{"alone":true}') and not covers_body(headers, b'{"alone":false}')


def test_answers_of_different_status_are_never_in_one_batch(wallet: Wallet) -> None:
    cache = SignatureCache(wallet, batching=True)
    out: list[tuple[int, dict[str, str]]] = []

    async def one(status: int, body: bytes) -> None:
        out.append((status, _text(await cache.headers_for(status, JSON, body))))

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for i in range(6):
                tasks.start_soon(one, 200 if i % 2 else 400, f"{i}".encode())

    anyio.run(main)
    for status, headers in out:
        assert _ours(headers, status) == wallet.address
    by_signature: dict[str, set[int]] = {}
    for status, headers in out:
        by_signature.setdefault(headers["signature"], set()).add(status)
    assert all(len(statuses) == 1 for statuses in by_signature.values())
