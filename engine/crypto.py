"""Arweave-style keys: the wallets that sign ANS-104 data items and the checks that verify them.

Signature types are numbered as ANS-104 numbers them: 1 = Arweave RSA-PSS (4096-bit key, SHA-256,
MGF1-SHA-256), 2 = ed25519, 3 = Ethereum (secp256k1 ECDSA over the EIP-191 "personal message" hash of
the signature data, as ethers' signMessage makes it), 4 = Solana (ed25519 too). Types 3 and 4 are
verified, not produced by `Wallet`. keccak-256 comes from pycryptodome (neither the standard library
nor `cryptography` has it; sha3_256 pads differently), the curve from `cryptography`.
Every type's address is the Arweave one, base64url(sha256(owner)), as ANS-104 bundlers and the
legacy ao units file owners.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from aonode.engine.errors import BadInput
from aonode.engine.message import b64url as b64url_encode, b64url_decode  # noqa: F401  (re-exported)

RSA = 1
ED25519 = 2
ETHEREUM = 3
SOLANA = 4

RSA_BITS = 4096
RSA_EXPONENT = 65537
# What each signature type puts in an item: (owner length, signature length) in bytes.
KEY_LENGTHS: dict[int, tuple[int, int]] = {RSA: (512, 512), ED25519: (32, 64), ETHEREUM: (65, 65), SOLANA: (32, 64)}
# secp256k1's group order; libsecp256k1 (what arbundles verifies with) accepts only s <= ORDER/2.
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# Arweave nodes sign with a 32-byte salt; arweave-js (Node) signs with the maximum salt length, so
# verification must accept any salt length the PSS encoding allows.
_SIGN_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_VERIFY_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def address_of(owner: bytes) -> str:
    """The Arweave address of a public key (any signature type): base64url(sha256(owner))."""
    return b64url_encode(hashlib.sha256(owner).digest())


def key_address(owner: bytes) -> str:
    """`address_of`, remembered for 4096-bit keys (rsa_public_key's rule, for the same reason): a client
    signs many messages with one key, and a signer's address was ~10 us of each httpsig check."""
    return _wallet_address(owner) if len(owner) == 512 else address_of(owner)


_wallet_address = functools.lru_cache(maxsize=1024)(address_of)


def _int_to_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _b64_to_int(jwk: dict[str, Any], name: str) -> int:
    if name not in jwk:
        raise BadInput(f"JWK lacks the '{name}' field")
    return int.from_bytes(b64url_decode(jwk[name]), "big")


@dataclass(frozen=True)
class Wallet:
    """A private key able to sign items; `owner` is the public key exactly as items carry it."""

    key: PrivateKey = field(repr=False)

    @property
    def signature_type(self) -> int:
        return RSA if isinstance(self.key, rsa.RSAPrivateKey) else ED25519

    @property
    def owner(self) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.public_key().public_numbers().n.to_bytes(KEY_LENGTHS[RSA][0], "big")
        return self.key.public_key().public_bytes_raw()

    @property
    def address(self) -> str:
        return address_of(self.owner)

    @classmethod
    def generate(cls, kind: str = "rsa") -> Wallet:
        if kind == "rsa":
            return cls(rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS))
        if kind == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        raise BadInput(f"unknown wallet kind {kind!r} (expected 'rsa' or 'ed25519')")

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any], *, known_valid: bool = False) -> Wallet:
        """Arweave JWK (kty RSA, 4096-bit) or an OKP/Ed25519 JWK (x, d). An RSA key is checked in full
        (OpenSSL tests the primes: ~0.3-0.6 CPU-s for 4096 bits) unless `known_valid`: only for bytes
        this program made or checked itself (engine/first_start.py keeps that record)."""
        if not isinstance(jwk, dict):
            raise BadInput("a JWK must be a JSON object")
        kty = jwk.get("kty")
        if kty == "RSA":
            return cls(_rsa_from_jwk(jwk, known_valid))
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            seed = b64url_decode(jwk.get("d", ""))
            if len(seed) != 32:
                raise BadInput("Ed25519 JWK 'd' must be 32 bytes")
            key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            if "x" in jwk and b64url_decode(jwk["x"]) != key.public_key().public_bytes_raw():
                raise BadInput("Ed25519 JWK 'x' does not match 'd'")
            return cls(key)
        raise BadInput(f"unsupported JWK (kty={kty!r}, crv={jwk.get('crv')!r})")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, known_valid: bool = False) -> Wallet:
        return cls.from_jwk_bytes(Path(path).read_bytes(), str(path), known_valid=known_valid)

    @classmethod
    def from_jwk_bytes(cls, data: bytes, where: str, *, known_valid: bool = False) -> Wallet:
        """A wallet file's contents (`where` names it in errors); `known_valid` as in from_jwk."""
        try:
            jwk = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadInput(f"wallet file {where} is not JSON: {err}") from err
        return cls.from_jwk(jwk, known_valid=known_valid)

    def to_jwk(self) -> dict[str, str]:
        if isinstance(self.key, rsa.RSAPrivateKey):
            priv = self.key.private_numbers()
            pub = priv.public_numbers
            return {
                "kty": "RSA",
                "n": _int_to_b64(pub.n, KEY_LENGTHS[RSA][0]),
                "e": _int_to_b64(pub.e),
                "d": _int_to_b64(priv.d),
                "p": _int_to_b64(priv.p),
                "q": _int_to_b64(priv.q),
                "dp": _int_to_b64(priv.dmp1),
                "dq": _int_to_b64(priv.dmq1),
                "qi": _int_to_b64(priv.iqmp),
            }
        seed = self.key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.owner), "d": b64url_encode(seed)}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JWK readable by the owner only: it is a private key."""
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_jwk(), fh)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, _SIGN_PSS, hashes.SHA256())
        return self.key.sign(data)


def _rsa_from_jwk(jwk: dict[str, Any], known_valid: bool = False) -> rsa.RSAPrivateKey:
    n, e, d = (_b64_to_int(jwk, name) for name in ("n", "e", "d"))
    if n.bit_length() != RSA_BITS:
        raise BadInput(f"Arweave keys are {RSA_BITS}-bit RSA; this one is {n.bit_length()}-bit")
    if all(name in jwk for name in ("p", "q")):
        p, q = _b64_to_int(jwk, "p"), _b64_to_int(jwk, "q")
    else:
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    )
    try:
        return numbers.private_key(unsafe_skip_rsa_key_validation=known_valid)
    except ValueError as err:
        raise BadInput(f"inconsistent RSA JWK: {err}") from err


def verify(signature_type: int, owner: bytes, data: bytes, signature: bytes) -> bool:
    """True iff `signature` over `data` was made by the key `owner`; False for any mismatch.

    Raises BadInput only for signature types this node cannot check at all.
    """
    if signature_type not in KEY_LENGTHS:
        raise BadInput(f"unsupported signature type {signature_type}")
    owner_len, sig_len = KEY_LENGTHS[signature_type]
    if len(owner) != owner_len or len(signature) != sig_len:
        return False
    try:
        if signature_type == RSA:
            if owner[0] < 0x80:  # a 4096-bit modulus has its top bit set
                return False
            rsa_public_key(owner).verify(signature, data, _VERIFY_PSS, hashes.SHA256())
        elif signature_type == ETHEREUM:
            return _verify_ethereum(owner, data, signature)
        else:
            ed25519.Ed25519PublicKey.from_public_bytes(owner).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def rsa_public_key(modulus: bytes) -> rsa.RSAPublicKey:
    """The RSA key (e = 65537) whose modulus is these big-endian bytes, made once per modulus: a
    client signs many items with one key, and making the key object cost a tenth of a verify.
    Keyed by the exact bytes, so a cached key only ever checks signatures claimed by that key. Only
    4096-bit moduli (Arweave's) are kept: an httpsig keyid can be as long as a request head, and 1,024
    of those would hold ~26 MB per process."""
    if len(modulus) == 512:
        return _wallet_key(modulus)
    return _key_of(modulus)


def _key_of(modulus: bytes) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(RSA_EXPONENT, int.from_bytes(modulus, "big")).public_key()


_wallet_key = functools.lru_cache(maxsize=1024)(_key_of)


def eip191_digest(data: bytes) -> bytes:
    """keccak-256 of "\x19Ethereum Signed Message:\n<len>" + data: what an Ethereum wallet signs."""
    from Crypto.Hash import keccak

    prefix = b"\x19Ethereum Signed Message:\n" + str(len(data)).encode()
    return keccak.new(digest_bits=256, data=prefix + data).digest()


def _verify_ethereum(owner: bytes, data: bytes, signature: bytes) -> bool:
    """r || s || v over eip191_digest(data) by the uncompressed secp256k1 key `owner`; v (the
    recovery id) is not needed when the key is known, and is ignored as arbundles ignores it."""
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if owner[0] != 4 or not (0 < r < _SECP256K1_ORDER and 0 < s <= _SECP256K1_ORDER // 2):
        return False
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), owner)
    public.verify(encode_dss_signature(r, s), eip191_digest(data), ec.ECDSA(Prehashed(hashes.SHA256())))
    return True
