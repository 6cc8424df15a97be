"""RFC 9421 HTTP message signatures as httpsig@1.0 makes them: the signature base, verifying and signing.

A commitment is one signature: `signature-input` names the covered components and the parameters
`alg` and `keyid`, `signature` holds the bytes, both dictionaries keyed by the label
(`http-sig-<hex of address bytes 1..8>`). Algorithms:
  rsa-pss-sha512  keyid = base64url RSA modulus (Arweave key, e = 65537), PSS with MGF1-SHA-512
  ed25519         keyid = base64url 32-byte public key
  hmac-sha256     keyid "ao", HMAC keyed with "ao": a content id anyone can make, never an owner
The signer's address is base64url(sha256(key)); a commitment's id is base64url(sha256(signature)).
`content-digest` (RFC 9530, sha-256) binds a body to the signed fields.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import http_sfv
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from aonode.engine import httpsig_canonical
from aonode.engine.crypto import Wallet, key_address, rsa_public_key
from aonode.engine.errors import BadInput
from aonode.engine.message import b64url, b64url_decode

RSA_PSS_SHA512 = "rsa-pss-sha512"
ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
_SIGN_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
_VERIFY_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.AUTO)


@dataclass(frozen=True)
class Request:
    """One HTTP request or response as the codec sees it (field names any case)."""

    method: str = "POST"
    url: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    status: int | None = None  # set for responses

    def field_values(self) -> dict[str, str]:
        """Fields by lowercased name; repeated fields joined with ", " (RFC 9421 §2.1)."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            key = name.lower()
            out[key] = f"{out[key]}, {value.strip()}" if key in out else value.strip()
        return out


@dataclass(frozen=True)
class Commitment:
    label: str
    alg: str
    keyid: str
    components: tuple[str, ...]
    signature: bytes
    committer: str | None  # the signer's address; None for hmac
    tag: str | None = None  # the signature's `tag` parameter (RFC 9421 §2.3): what it was made for

    @property
    def id(self) -> str:
        return b64url(hashlib.sha256(self.signature).digest())


# -- the signature base (RFC 9421 §2.5) -------------------------------------------------------------


def _derived(name: str, req: Request) -> str:
    parts = urlsplit(req.url)
    if name == "@method":
        return req.method.upper()
    if name == "@path":
        return parts.path or "/"
    if name == "@query":
        return "?" + parts.query
    if name == "@authority":
        return parts.netloc.lower()
    if name == "@scheme":
        return parts.scheme.lower()
    if name == "@target-uri":
        return req.url
    if name == "@request-target":
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if name == "@status" and req.status is not None:
        return str(req.status)
    raise BadInput(f"the signature covers {name}, which this message does not have")


def signature_base(req: Request, components: Iterable[http_sfv.Item], params_line: str) -> bytes:
    fields = req.field_values()
    lines = []
    for item in components:
        name = str(item.value)
        if name.startswith("@"):
            value = _derived(name, req)
        elif name in fields:
            value = fields[name]
            key = item.params.get("key")
            if key is not None:
                d = http_sfv.Dictionary()
                d.parse(value.encode("latin-1"))
                if key not in d:
                    raise BadInput(f"the signature covers {name};key={key}, which is absent")
                value = str(d[key])
        else:
            raise BadInput(f"the signature covers the field {name!r}, which the message does not have")
        lines.append(f"{item}: {value}")
    lines.append(f'"@signature-params": {params_line}')
    return "\n".join(lines).encode("utf-8")


def sig_label(address: str) -> str:
    return "http-sig-" + b64url_decode(address)[1:9].hex()


# -- verification -----------------------------------------------------------------------------------


def verify(req: Request, fields: Mapping[str, str] | None = None) -> tuple[Commitment, ...]:
    """Every signature on `req`, verified; BadInput names the first that fails (none: empty tuple).
    `fields`: `req.field_values()` when the caller has them already."""
    fields = req.field_values() if fields is None else fields
    raw_sig, raw_input = fields.get("signature"), fields.get("signature-input")
    if raw_sig is None and raw_input is None:
        return ()
    if raw_sig is None or raw_input is None:
        raise BadInput("signature and signature-input must come together")
    canonical = httpsig_canonical.parse(raw_sig, raw_input)
    if canonical is not None:  # the usual shape, read without http_sfv (httpsig_canonical.py says why)
        return tuple(_verify_canonical(req, one, fields) for one in canonical)
    sigs, inputs = http_sfv.Dictionary(), http_sfv.Dictionary()
    try:
        sigs.parse(raw_sig.encode("latin-1"))
        inputs.parse(raw_input.encode("latin-1"))
    except (ValueError, UnicodeEncodeError) as err:
        raise BadInput(f"signature fields are not structured-field dictionaries: {err}") from err
    out = []
    for label, member in inputs.items():
        if label not in sigs or not isinstance(sigs[label].value, bytes):
            raise BadInput(f"signature-input {label!r} has no signature")
        out.append(_verify_one(req, label, member, sigs[label].value))
    return tuple(out)


def _verify_one(req: Request, label: str, member: http_sfv.InnerList, signature: bytes) -> Commitment:
    if not isinstance(member, http_sfv.InnerList):
        raise BadInput(f"signature-input {label!r} is not an inner list")
    alg = str(member.params.get("alg", "")).lower()
    keyid = str(member.params.get("keyid", ""))
    tag = member.params.get("tag")
    base = signature_base(req, list(member), str(member))
    found = verify_base(label, alg, keyid, tuple(str(i.value) for i in member), base, signature)
    return replace(found, tag=None if tag is None else str(tag))


def _verify_canonical(req: Request, one: httpsig_canonical.Input, fields: Mapping[str, str]) -> Commitment:
    """`_verify_one` of a canonical member: the same base, the same checks."""
    lines = []
    for name in one.components:
        if name.startswith("@"):
            value = _derived(name, req)
        elif name in fields:
            value = fields[name]
        else:
            raise BadInput(f"the signature covers the field {name!r}, which the message does not have")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {one.params_line}')
    base = "\n".join(lines).encode("utf-8")
    alg, keyid, tag = (str(one.params.get(k, "")) for k in ("alg", "keyid", "tag"))
    return verify_base(
        one.label, alg.lower(), keyid, one.components, base, one.signature, tag if "tag" in one.params else None
    )


def verify_base(
    label: str,
    alg: str,
    keyid: str,
    components: tuple[str, ...],
    base: bytes,
    signature: bytes,
    tag: str | None = None,
) -> Commitment:
    """One signature over `base`, verified: an owner's commitment, or (hmac-sha256) an id only."""
    if alg == HMAC_SHA256:
        if not hmac.compare_digest(hmac.new(b"ao", base, hashlib.sha256).digest(), signature):
            raise BadInput(f"hmac commitment {label!r} does not match the message")
        return Commitment(label, alg, keyid, components, signature, None, tag)
    key = public_key_bytes(keyid)
    try:
        if alg == RSA_PSS_SHA512 or (not alg and len(key) == 512):
            rsa_public_key(key).verify(signature, base, _VERIFY_PSS, hashes.SHA512())
            alg = RSA_PSS_SHA512
        elif alg == ED25519 or (not alg and len(key) == 32):
            ed25519.Ed25519PublicKey.from_public_bytes(key).verify(signature, base)
            alg = ED25519
        else:
            raise BadInput(f"unsupported signature algorithm {alg!r}")
    except (InvalidSignature, ValueError) as err:
        raise BadInput(f"signature {label!r} does not verify") from err
    return Commitment(label, alg, keyid, components, signature, key_address(key), tag)


def public_key_bytes(keyid: str) -> bytes:
    """The key a `keyid` names: base64url, or `publickey:` + base64 (HyperBEAM writes both); remembered
    for keyids up to an RSA key's length (a client names its key in every message: ~3 us each)."""
    return _remembered_key(keyid) if len(keyid) <= MAX_REMEMBERED_KEYID else _key_bytes(keyid)


MAX_REMEMBERED_KEYID = 700  # characters: a base64url RSA-4096 modulus (683), `publickey:` + base64 (694)


def _key_bytes(keyid: str) -> bytes:
    text = keyid.removeprefix("publickey:")
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadInput(f"keyid is not a base64 public key: {keyid[:40]!r}") from err


_remembered_key = functools.lru_cache(maxsize=256)(_key_bytes)  # an error is not remembered: raised again


def wallet_alg(wallet: Wallet) -> str:
    return RSA_PSS_SHA512 if isinstance(wallet.key, rsa.RSAPrivateKey) else ED25519


def sign_base(wallet: Wallet, base: bytes) -> bytes:
    """The wallet's signature over a signature base (RSA-PSS-SHA512, salt 64, or ed25519)."""
    if isinstance(wallet.key, rsa.RSAPrivateKey):
        return wallet.key.sign(base, _SIGN_PSS, hashes.SHA512())
    return wallet.key.sign(base)


def check_digest(fields: Mapping[str, str], body: bytes) -> bool:
    """True when a content-digest is present and matches; BadInput when it does not match."""
    raw = fields.get("content-digest")
    if raw is None or not body:
        return False  # no body sent: nothing to bind (aoconnect 0.0.98 signs a digest, then sends no body)
    for member in raw.split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        text = value.strip().strip(":")
        try:  # RFC 9530 writes standard base64; aoconnect writes base64url
            given = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as err:
            raise BadInput("content-digest is not base64") from err
        if not hmac.compare_digest(given, hashlib.sha256(body).digest()):
            raise BadInput("content-digest does not match the body")
        return True
    raise BadInput("content-digest has no sha-256 member")


def content_digest(body: bytes) -> str:
    """The RFC 9530 `content-digest` field of `body` (sha-256, standard base64)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def sign(
    wallet: Wallet,
    headers: list[tuple[str, str]],
    *,
    method: str = "POST",
    url: str = "/",
    body: bytes = b"",
    status: int | None = None,
) -> list[tuple[str, str]]:
    """`headers` plus signature-input and signature by `wallet` over every one of them (sorted)."""
    names = sorted({k.lower() for k, _ in headers})
    alg = wallet_alg(wallet)
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in names])
    inner.params["alg"] = alg
    inner.params["keyid"] = b64url(wallet.owner)
    params_line = str(inner)
    req = Request(method=method, url=url, headers=tuple(headers), body=body, status=status)
    base = signature_base(req, list(inner), params_line)
    signature = sign_base(wallet, base)
    label = sig_label(wallet.address)
    return [
        *headers,
        ("signature-input", f"{label}={params_line}"),
        ("signature", f"{label}=:{base64.b64encode(signature).decode()}:"),
    ]
