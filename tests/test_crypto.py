"""Wallets and signatures with real keys: RSA-4096 (Arweave) and ed25519."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from aonode.engine import crypto
from aonode.engine.crypto import Wallet, address_of, b64url_decode, b64url_encode, verify
from aonode.engine.errors import BadInput


@pytest.fixture(scope="module")
def rsa_wallet() -> Wallet:
    return Wallet.generate("rsa")


@pytest.fixture(scope="module")
def ed_wallet() -> Wallet:
    return Wallet.generate("ed25519")


def test_rsa_wallet_shape(rsa_wallet: Wallet) -> None:
    assert rsa_wallet.signature_type == 1
    assert len(rsa_wallet.owner) == 512
    assert rsa_wallet.owner[0] & 0x80  # a full 4096-bit modulus
    assert rsa_wallet.address == b64url_encode(hashlib.sha256(rsa_wallet.owner).digest())
    assert len(rsa_wallet.address) == 43
    jwk = rsa_wallet.to_jwk()
    assert set(jwk) == {"kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"}
    assert jwk["e"] == "AQAB"
    assert b64url_decode(jwk["n"]) == rsa_wallet.owner


def test_ed25519_wallet_shape(ed_wallet: Wallet) -> None:
    assert ed_wallet.signature_type == 2
    assert len(ed_wallet.owner) == 32
    assert ed_wallet.address == address_of(ed_wallet.owner)


@pytest.mark.parametrize("name", ["rsa_wallet", "ed_wallet"])
def test_sign_verify_and_tamper(request: pytest.FixtureRequest, name: str) -> None:
    wallet: Wallet = request.getfixturevalue(name)
    data = b"hello ao"
    sig = wallet.sign(data)
    assert verify(wallet.signature_type, wallet.owner, data, sig)
    assert not verify(wallet.signature_type, wallet.owner, data + b"!", sig)
    bad = bytearray(sig)
    bad[len(bad) // 2] ^= 1
    assert not verify(wallet.signature_type, wallet.owner, data, bytes(bad))
    assert not verify(wallet.signature_type, wallet.owner, data, sig[:-1])
    assert not verify(wallet.signature_type, wallet.owner[:-1], data, sig)


def test_signatures_do_not_cross_keys(rsa_wallet: Wallet) -> None:
    other = Wallet.generate("ed25519")
    sig = other.sign(b"x")
    assert verify(2, other.owner, b"x", sig)
    assert not verify(2, Wallet.generate("ed25519").owner, b"x", sig)
    assert not verify(1, rsa_wallet.owner, b"x", rsa_wallet.sign(b"y"))


def test_rsa_verify_accepts_any_salt_length(rsa_wallet: Wallet) -> None:
    """arweave-js on Node signs with the maximum salt; Arweave nodes with 32 bytes. Both must pass."""
    for salt in (padding.PSS.MAX_LENGTH, 0, 32):
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
        sig = rsa_wallet.key.sign(b"payload", pad, hashes.SHA256())
        assert verify(1, rsa_wallet.owner, b"payload", sig)


def test_jwk_round_trip_and_file(tmp_path, rsa_wallet: Wallet, ed_wallet: Wallet) -> None:
    for wallet in (rsa_wallet, ed_wallet):
        again = Wallet.from_jwk(wallet.to_jwk())
        assert again.owner == wallet.owner
        assert verify(wallet.signature_type, wallet.owner, b"m", again.sign(b"m"))
        path = tmp_path / f"{wallet.signature_type}.json"
        wallet.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Wallet.load(path).address == wallet.address


def test_rsa_jwk_without_crt_parts(rsa_wallet: Wallet) -> None:
    jwk = {k: v for k, v in rsa_wallet.to_jwk().items() if k in ("kty", "n", "e", "d")}
    again = Wallet.from_jwk(jwk)
    assert verify(1, rsa_wallet.owner, b"z", again.sign(b"z"))


def test_bad_jwks_are_refused(tmp_path, rsa_wallet: Wallet, ed_wallet: Wallet) -> None:
    with pytest.raises(BadInput, match="lacks"):
        Wallet.from_jwk({"kty": "RSA", "n": rsa_wallet.to_jwk()["n"]})
    small = crypto.rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(BadInput, match="4096"):
        Wallet.from_jwk(Wallet(small).to_jwk())
    mismatched = dict(ed_wallet.to_jwk(), x=b64url_encode(Wallet.generate("ed25519").owner))
    with pytest.raises(BadInput, match="does not match"):
        Wallet.from_jwk(mismatched)
    with pytest.raises(BadInput, match="unsupported JWK"):
        Wallet.from_jwk({"kty": "EC", "crv": "secp256k1"})
    broken = dict(rsa_wallet.to_jwk(), q=rsa_wallet.to_jwk()["p"])
    with pytest.raises(BadInput):
        Wallet.from_jwk(broken)
    (tmp_path / "w.json").write_text("{not json")
    with pytest.raises(BadInput, match="not JSON"):
        Wallet.load(tmp_path / "w.json")
    with pytest.raises(BadInput):
        Wallet.generate("dsa")


def test_unsupported_signature_type_is_an_error() -> None:
    with pytest.raises(BadInput, match="signature type 9"):
        verify(9, b"\x04" * 65, b"m", b"\x00" * 65)


def test_ethereum_signatures_verify_over_the_eip191_digest() -> None:
    """A secp256k1 key made here signs eip191_digest(data); verify accepts it and nothing nearby."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

    from aonode.engine.crypto import _SECP256K1_ORDER, ETHEREUM, eip191_digest

    key = ec.generate_private_key(ec.SECP256K1())
    owner = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    data = b"deep hash stand-in" * 3
    r, s = decode_dss_signature(key.sign(eip191_digest(data), ec.ECDSA(Prehashed(hashes.SHA256()))))
    s = min(s, _SECP256K1_ORDER - s)  # low-s, as Ethereum wallets sign
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + b"\x1b"
    assert verify(ETHEREUM, owner, data, signature)
    assert not verify(ETHEREUM, owner, data + b"!", signature)
    assert not verify(ETHEREUM, owner, data, signature[:32] + (_SECP256K1_ORDER - s).to_bytes(32, "big") + b"\x1b")
    # keccak-256 with Ethereum's prefix, not SHA3-256: a known vector of the bare hash
    from Crypto.Hash import keccak
    assert keccak.new(digest_bits=256, data=b"").hexdigest().startswith("c5d2460186f7233c927e7db2dcc703c0")


def test_b64url() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    assert json.dumps(b64url_encode(b"")) == '""'
    with pytest.raises(BadInput):
        b64url_decode("a")
    with pytest.raises(BadInput):
        b64url_decode("ab+/")
