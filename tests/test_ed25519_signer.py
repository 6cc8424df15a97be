"""engine/ed25519_signer.py: libsodium's Ed25519 signature of a message is `cryptography`'s, byte for byte
(the answers' session signatures must not change with the library that makes them), and verifies."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import ed25519

from aonode.engine.answer_signature import BodySigner, SessionKey
from aonode.engine.crypto import Wallet
from aonode.engine.ed25519_signer import Ed25519Signer
from aonode.server import codec


def test_the_same_signature_as_cryptography_for_any_message() -> None:
    for _ in range(8):
        key = ed25519.Ed25519PrivateKey.generate()
        signer = Ed25519Signer(key)
        for data in (b"", b"x", os.urandom(63), os.urandom(64), os.urandom(1000), b'"ao-result": body\n' * 40):
            signature = signer.sign(data)
            assert signature == key.sign(data)
            key.public_key().verify(signature, data)  # raises if it does not verify


def test_the_answers_body_signer_signs_with_libsodium() -> None:
    session = SessionKey.start(Wallet.generate("ed25519"))
    signer = BodySigner(session, codec.JSON)
    assert isinstance(signer.key, Ed25519Signer)
    digest = "sha-256=:" + "A" * 43 + "=:"
    assert signer.signature(digest) == dict(session.sign([("ao-result", "body"), ("content-digest", digest),
                                                          ("content-type", codec.JSON)]))["signature"]  # fmt: skip
