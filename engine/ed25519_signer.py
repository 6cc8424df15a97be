"""Ed25519 signatures made by libsodium (PyNaCl): the same bytes as `cryptography`'s, in less CPU.

Why: every answer an ingest worker gives is signed with the run's session key (engine/answer_signature.py).
OpenSSL's Ed25519 is generic C (~40-50 us a signature here), libsodium's ~25-30 us: ~15-20 us of a
worker's CPU per item. Ed25519 signatures are deterministic (RFC 8032), so the signature of a message by
one key is the same bytes from either library (tests/test_ed25519_signer.py).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_seed_keypair


class Ed25519Signer:
    """`sign(data)`: `key.sign(data)`'s signature, made by libsodium with the same private key."""

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public, self._secret = crypto_sign_seed_keypair(seed)
        if public != key.public_key().public_bytes_raw():
            raise ValueError("libsodium derived another public key from this seed")

    def sign(self, data: bytes) -> bytes:
        return crypto_sign(data, self._secret)[:crypto_sign_BYTES]  # the signature, then the message
