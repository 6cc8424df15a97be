"""An independent check of the node's signed answers: the `http-message-signatures` package (not
aonode's own httpsig code) verifies an answer's RFC 9421 signature and its content-digest."""
from __future__ import annotations

import base64
import hashlib

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms


class _ModulusKeys(HTTPSignatureKeyResolver):
    """HyperBEAM's `keyid` is the RSA public modulus (base64url); the exponent is 65537."""

    def resolve_public_key(self, key_id: str) -> rsa.RSAPublicKey:
        n = int.from_bytes(base64.urlsafe_b64decode(key_id + "=" * (-len(key_id) % 4)), "big")
        return rsa.RSAPublicNumbers(65537, n).public_key()


def verified_signer(response: httpx.Response) -> str:
    """The address (base64url sha-256 of the key) that signed `response`; raises when it does not
    verify, or when the signature does not cover a content-digest that matches the body."""
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.RSA_PSS_SHA512, key_resolver=_ModulusKeys())
    verifier.require_created = False  # HyperBEAM-style signatures carry no `created`
    body = response.content
    [result] = verifier.verify(response, max_age=None, body=body)  # body: checks content-digest too
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert response.headers["content-digest"] == f"sha-256=:{digest}:"
    assert "content-digest" in result.covered_components or '"content-digest"' in result.covered_components
    key = base64.urlsafe_b64decode(result.parameters["keyid"] + "==")
    return base64.urlsafe_b64encode(hashlib.sha256(key).digest()).rstrip(b"=").decode()
