"""engine/crypto.rsa_public_key keeps one key object per modulus (and engine/ans104 an owner's blob
hash and address): with both keys cached, a signature
made by one RSA key never verifies as the other's, on both signed-message paths (an ANS-104 item whose
owner is swapped, an httpsig message whose keyid is swapped), and a tampered item is still refused."""

from __future__ import annotations

import dataclasses

import pytest

from aonode.engine import crypto, httpsig
from aonode.engine.ans104 import DataItem, build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.message import b64url


@pytest.fixture(scope="module")
def wallets() -> tuple[Wallet, Wallet]:
    return Wallet.generate("rsa"), Wallet.generate("rsa")


def test_an_item_verifies_only_under_its_own_key(wallets: tuple[Wallet, Wallet]) -> None:
    a, b = wallets
    item_a = build_and_sign(a, data="from a", tags=[("Action", "Ping")])
    item_b = build_and_sign(b, data="from b", tags=[("Action", "Ping")])
    for _ in range(2):  # the second round runs on cached key objects
        assert item_a.verify() and item_b.verify()
        assert crypto.rsa_public_key(a.owner) is crypto.rsa_public_key(a.owner)
        assert crypto.rsa_public_key(a.owner) is not crypto.rsa_public_key(b.owner)
        claimed = dataclasses.replace(item_a, owner=b.owner)  # a's signature, b named as its owner
        assert not claimed.verify()
        assert not crypto.verify(crypto.RSA, b.owner, item_a.signature_data(), item_a.signature)
        assert claimed.signature_data() != item_a.signature_data()  # the owner's cached blob hash is its own
        assert (item_a.to_message().owner, item_b.to_message().owner) == (a.address, b.address)


def test_a_tampered_item_is_refused_with_its_key_cached(wallets: tuple[Wallet, Wallet]) -> None:
    a, _ = wallets
    raw = bytearray(build_and_sign(a, data="pay 1", tags=[("Action", "Transfer")]).raw)
    assert DataItem.parse(bytes(raw)).verify()
    raw[-1] ^= 1  # the data's last byte
    assert not DataItem.parse(bytes(raw)).verify()
    short = bytearray(a.owner)
    short[0] = 0x7F  # a modulus under 4096 bits is refused before any key is made
    assert not crypto.verify(crypto.RSA, bytes(short), b"x", bytes(512))


def test_an_httpsig_message_verifies_only_under_its_own_key(wallets: tuple[Wallet, Wallet]) -> None:
    a, b = wallets
    req = httpsig.signed_message(a, {"action": b"Ping", "data": b"hello"})
    decoded = httpsig.decode(req)
    assert decoded.signer is not None and decoded.signer.committer == a.address
    httpsig.decode(httpsig.signed_message(b, {"action": b"Ping"}))  # b's key cached too
    swapped = tuple(
        (k, v.replace(b64url(a.owner), b64url(b.owner)) if k.lower() == "signature-input" else v)
        for k, v in req.headers
    )
    assert swapped != req.headers
    with pytest.raises(BadInput):
        httpsig.decode(dataclasses.replace(req, headers=swapped))


def test_only_4096_bit_keys_are_kept() -> None:
    """An httpsig keyid may carry any RSA modulus up to a request head's size: such keys are made
    afresh, so a client sending many long ones cannot fill the cache with ~12 KB entries."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    odd = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n.to_bytes(256, "big")
    crypto.rsa_public_key(odd)
    assert crypto.rsa_public_key(odd) is not crypto.rsa_public_key(odd)  # not kept
    assert crypto.rsa_public_key(odd).public_numbers().n == int.from_bytes(odd, "big")


def test_a_signers_address_is_its_own_key_s(wallets: tuple[Wallet, Wallet]) -> None:
    """crypto.key_address remembers 4096-bit keys' addresses (an httpsig check's committer): each
    key keeps its own, and other sizes are computed each time, the same as address_of."""
    a, b = wallets
    for _ in range(2):  # the second round reads the remembered addresses
        assert (crypto.key_address(a.owner), crypto.key_address(b.owner)) == (a.address, b.address)
        committers = {httpsig.decode(httpsig.signed_message(w, {"action": b"Ping"})).signer.committer for w in (a, b)}  # type: ignore[union-attr]
        assert committers == {a.address, b.address}
    ed = Wallet.generate("ed25519")
    assert crypto.key_address(ed.owner) == crypto.address_of(ed.owner) == ed.address
