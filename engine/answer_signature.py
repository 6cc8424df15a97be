"""Node answers signed by a session key the node wallet vouches for: two RFC 9421 signatures each.

Why: an RSA-4096 signature costs ~8 ms of a core, so signing every answer with the wallet caps a
2-core node near 120 answers/s. At start the node makes a fresh Ed25519 key (~0.1 ms per signature)
and its wallet signs, once, a vouch for it. Every answer then carries two labels in `signature` /
`signature-input`, each a plain RFC 9421 signature any verifier checks:
  session  alg="ed25519", keyid = base64url of the 32-byte public key, tag="ao-answer", over the
           answer's own fields (`ao-result`, `content-digest`, `content-type`, ...): binds the body;
  vouch    by the wallet (alg as the wallet's, keyid = its public key, tag="ao-session-key",
           created = the node start), over `ao-session-key: <base64url public key>` only: the same
           bytes on every answer of a run, made once.
`verify_answer` is the client's whole check: the vouch verifies, the session signature's keyid is the
vouched key, it verifies and covers the body's content-digest; the answer is the node's address
(base64url(sha256(wallet key))). It also accepts an answer signed directly by one key (an operator's
`AONODE_ANSWER_KEY=wallet`), whose signer's address it returns.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import http_sfv
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from aonode.engine.crypto import Wallet, address_of
from aonode.engine.ed25519_signer import Ed25519Signer
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_signature import (
    ED25519,
    Commitment,
    Request,
    content_digest,
    sig_label,
    sign_base,
    signature_base,
    verify,
    wallet_alg,
)
from aonode.engine.message import b64url

SESSION_FIELD = "ao-session-key"
ANSWER_TAG = "ao-answer"
VOUCH_TAG = "ao-session-key"
Fields = list[tuple[str, str]]


@dataclass
class SessionKey:
    """This run's answer key and the wallet's vouch for it (made once, by `start`)."""

    key: ed25519.Ed25519PrivateKey
    public: str  # base64url of the raw public key: the session keyid and the `ao-session-key` value
    label: str
    vouch_input: str  # `<label>=<inner list>`: the vouch's signature-input member
    vouch_signature: str  # `<label>=:<base64>:`
    _params: dict[tuple[str, ...], str] = field(default_factory=dict)  # covered names -> params line

    @classmethod
    def start(cls, wallet: Wallet, created: int | None = None) -> SessionKey:
        """A fresh Ed25519 key, vouched for by `wallet` at `created` (default: now)."""
        key = ed25519.Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        public = b64url(raw)
        inner = http_sfv.InnerList([http_sfv.Item(SESSION_FIELD)])
        inner.params["created"] = int(time.time()) if created is None else created
        inner.params["alg"] = wallet_alg(wallet)
        inner.params["keyid"] = b64url(wallet.owner)
        inner.params["tag"] = VOUCH_TAG
        base = signature_base(Request(headers=((SESSION_FIELD, public),)), list(inner), str(inner))
        signature = base64.b64encode(sign_base(wallet, base)).decode()
        vouch_label = sig_label(wallet.address)
        return cls(key, public, sig_label(address_of(raw)), f"{vouch_label}={inner}", f"{vouch_label}=:{signature}:")

    def sign(self, fields: Fields) -> Fields:
        """The headers that sign `fields` (lowercase names, values as sent): `ao-session-key`,
        `signature-input` and `signature`, each with the session signature and the vouch."""
        fields = sorted(fields)
        params = self.params_line(tuple(name for name, _ in fields))
        lines = [f'"{name}": {value.strip()}' for name, value in fields]
        lines.append(f'"@signature-params": {params}')
        signature = base64.b64encode(self.key.sign("\n".join(lines).encode("utf-8"))).decode()
        return [
            (SESSION_FIELD, self.public),
            ("signature-input", f"{self.label}={params}, {self.vouch_input}"),
            ("signature", f"{self.label}=:{signature}:, {self.vouch_signature}"),
        ]

    def params_line(self, names: tuple[str, ...]) -> str:
        """The session signature's `@signature-params` over the fields `names` (sorted), made once per names."""
        params = self._params.get(names)
        if params is None:
            inner = http_sfv.InnerList([http_sfv.Item(n) for n in names])
            inner.params["alg"] = ED25519
            inner.params["keyid"] = self.public
            inner.params["tag"] = ANSWER_TAG
            params = self._params[names] = str(inner)
        return params


class BodySigner:
    """`SessionKey.sign` of an answer's fields (`ao-result: body`, its content-digest, one content type)
    with every line but the digest made once: the same bytes (ed25519 signatures are deterministic),
    less work per answer on the ingest workers' path (tests/test_answer_signature.py compares them), signed
    by libsodium (engine/ed25519_signer.py: the same signature in less CPU)."""

    NAMES = ("ao-result", "content-digest", "content-type")  # sorted, as `sign` sorts them

    def __init__(self, session: SessionKey, content_type: str) -> None:
        self.key = Ed25519Signer(session.key)
        params = session.params_line(self.NAMES)
        self.head = b'"ao-result": body\n"content-digest": '
        self.tail = f'\n"content-type": {content_type.strip()}\n"@signature-params": {params}'.encode()
        self.public = session.public
        self.signature_input = f"{session.label}={params}, {session.vouch_input}"
        self.before, self.after = f"{session.label}=:", f":, {session.vouch_signature}"

    def signature(self, digest: str) -> str:
        """The `signature` field of an answer whose `content-digest` is `digest`."""
        signed = self.key.sign(self.head + digest.encode("latin-1") + self.tail)
        return self.before + base64.b64encode(signed).decode() + self.after


def verify_answer(headers: Iterable[tuple[str, str]], body: bytes) -> str:
    """The address of the node that signed this answer; BadInput when a signature fails, the body is
    not the signed one, or the session key is not the one the wallet vouched for."""
    req = Request(headers=tuple(headers), body=body)
    fields = req.field_values()
    if fields.get("content-digest") != content_digest(body):
        raise BadInput("the answer's content-digest does not match its body")
    commitments = verify(req)  # every label, or BadInput
    bodies = [c for c in commitments if "content-digest" in c.components and c.committer is not None]
    if len(bodies) != 1:
        raise BadInput(f"the answer has {len(bodies)} key signatures over its content-digest (one expected)")
    [answer] = bodies
    if SESSION_FIELD not in fields and len(commitments) == 1:
        assert answer.committer is not None
        return answer.committer  # signed by one key directly
    vouch = _vouch(commitments)
    if answer.alg != ED25519 or answer.keyid != fields.get(SESSION_FIELD) or answer.tag != ANSWER_TAG:
        raise BadInput("the answer is not signed by the session key its vouch names")
    assert vouch.committer is not None
    return vouch.committer


def _vouch(commitments: tuple[Commitment, ...]) -> Commitment:
    """The wallet's one vouch for the session key. Its tag must say it is one: a wallet signature over
    a field named `ao-session-key` made for anything else (another protocol, a request the wallet
    signed) vouches for nothing (RFC 9421 §2.3: a tag scopes a signature to one application)."""
    found = [c for c in commitments if c.components == (SESSION_FIELD,) and c.committer is not None]
    if len(found) != 1:
        raise BadInput(f"the answer has {len(found)} signatures vouching for its session key (one expected)")
    if found[0].tag != VOUCH_TAG:
        raise BadInput(f"the signature over {SESSION_FIELD} is not tagged {VOUCH_TAG!r}: it vouches for nothing")
    return found[0]
