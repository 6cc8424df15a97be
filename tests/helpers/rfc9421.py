"""An independent check of the node's signed answers: the `http-message-signatures` package (not
aonode's own httpsig code) verifies an answer's RFC 9421 signatures and its content-digest.

By default an answer carries two signatures (engine/answer_signature.py): the session key's
(tag `ao-answer`, ed25519) over the answer's fields, and the wallet's vouch (tag `ao-session-key`)
over the `ao-session-key` field naming that key; with AONODE_ANSWER_KEY=wallet, one wallet signature."""
from __future__ import annotations

import base64
import hashlib

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureAlgorithm, HTTPSignatureKeyResolver, algorithms
from http_message_signatures.structures import VerifyResult


def _raw(key_id: str) -> bytes:
    return base64.urlsafe_b64decode(key_id + "=" * (-len(key_id) % 4))


class _ModulusKeys(HTTPSignatureKeyResolver):
    """HyperBEAM's `keyid` is the RSA public modulus (base64url); the exponent is 65537."""

    def resolve_public_key(self, key_id: str) -> rsa.RSAPublicKey:
        return rsa.RSAPublicNumbers(65537, int.from_bytes(_raw(key_id), "big")).public_key()


class _Ed25519Keys(HTTPSignatureKeyResolver):
    """The session key's `keyid` is its raw 32-byte public key (base64url)."""

    def resolve_public_key(self, key_id: str) -> ed25519.Ed25519PublicKey:
        return ed25519.Ed25519PublicKey.from_public_bytes(_raw(key_id))


def _verifier(algorithm: type[HTTPSignatureAlgorithm], keys: HTTPSignatureKeyResolver) -> HTTPMessageVerifier:
    verifier = HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=keys)
    verifier.require_created = False  # HyperBEAM-style signatures carry no `created`
    return verifier


def _address(key_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(_raw(key_id)).digest()).rstrip(b"=").decode()


def _covers_digest(result: VerifyResult, body: bytes) -> None:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert '"content-digest"' in result.covered_components, result.covered_components
    assert result.covered_components['"content-digest"'] == f"sha-256=:{digest}:"


def verified_signer(response: httpx.Response) -> str:
    """The node address (base64url sha-256 of the wallet key) that signed `response`; raises when a
    signature does not verify, the signed content-digest is not the body's, or the session key that
    signed the answer is not the one the wallet vouched for."""
    body = response.content
    if "ao-session-key" not in response.headers:  # AONODE_ANSWER_KEY=wallet: one wallet signature
        [result] = _verifier(algorithms.RSA_PSS_SHA512, _ModulusKeys()).verify(response, max_age=None, body=body)
        _covers_digest(result, body)
        return _address(result.parameters["keyid"])
    [vouch] = _verifier(algorithms.RSA_PSS_SHA512, _ModulusKeys()).verify(
        response, max_age=None, expect_tag="ao-session-key", require_components=("ao-session-key",)
    )
    covered = [name for name in vouch.covered_components if name != '"@signature-params"']
    assert covered == ['"ao-session-key"'], covered
    [answer] = _verifier(algorithms.ED25519, _Ed25519Keys()).verify(
        response, max_age=None, expect_tag="ao-answer", body=body
    )
    _covers_digest(answer, body)
    assert answer.parameters["keyid"] == vouch.covered_components['"ao-session-key"'], "not the vouched key"
    return _address(vouch.parameters["keyid"])
