"""Commitments inside multipart bodies (HyperBEAM's `body/commitments/<id>` parts): the committed
`body` message is the one a request carries, its key-based commitment is its authority, and one
flipped byte anywhere it covers is refused.

The b2743e4a-shape vectors are made by `httpsig.committed_request` and checked against HyperBEAM's
layout as its source (dev_codec_httpsig_conv.erl, dev_codec_httpsig.erl at b2743e4a) describes it;
the later-main shape (`committed` list, `type`, `keyid: publickey:...`) is built here by hand from
that version's dev_codec_httpsig.erl / dev_codec_httpsig_siginfo.erl; no HyperBEAM node runs here.
The JS test signs the standalone message with the npm RFC 9421 library aoconnect uses.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path

import http_sfv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_commitments import signature_base, standalone_fields, verify_commitments
from aonode.engine.httpsig_fields import CRLF, join_parts
from aonode.engine.httpsig_signature import sign_base
from aonode.engine.message import b64url

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "hb_commitment_peer.mjs"
PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc"
FIELDS: dict[str, httpsig.Value] = {"action": b"Eval", "target": PID.encode(), "count": 3,
                                    "data": b"local x = 1\nreturn x + 41"}


def _replace(req: httpsig.Request, old: bytes, new: bytes) -> httpsig.Request:
    """The request with one run of bytes in its body changed, the (unsigned) digest kept honest."""
    assert old in req.body
    body = req.body.replace(old, new, 1)
    headers = tuple((k, httpsig.content_digest(body) if k == "content-digest" else v) for k, v in req.headers)
    return httpsig.Request(req.method, req.url, headers, body)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_committed_body_round_trips_and_is_its_own_authority(kind: str) -> None:
    wallet = Wallet.generate(kind)
    req = httpsig.committed_request(wallet, FIELDS, url="http://x/push")
    assert b"content-disposition: inline\r\n" in req.body and b'name="body/commitments/' in req.body
    assert dict(req.headers)["body-keys"] == '"body"' and "signature" not in dict(req.headers)
    assert req.body.count(b'name="body/commitments/') == 2  # the key's commitment and the hmac id, as HB sends
    decoded = httpsig.decode(req)
    assert decoded.inner is not None and {c.alg for c in decoded.inner.commitments} == {
        "hmac-sha256", "rsa-pss-sha512" if kind == "rsa" else "ed25519"}
    assert decoded.signer is None  # the request itself is unsigned
    inner = decoded.committed()
    assert inner is decoded.inner and inner is not None and inner.fields == FIELDS
    assert inner.signer is not None and inner.signer.committer == wallet.address
    msg = inner.to_message()
    assert msg.owner == msg.from_ == wallet.address and msg.target == PID and msg.data == FIELDS["data"].decode()
    assert msg.id == b64url(hashlib.sha256(inner.signer.signature).digest())
    assert msg.tag("Action") == "Eval" and msg.tag("Count") == "3"


def test_a_large_value_makes_the_standalone_body_multipart() -> None:
    """Over 4 KiB a value is not a field: with `data` it forms a multipart standalone body (HyperBEAM's
    part layout), still bound by the commitment's content-digest."""
    fields = {**FIELDS, "big": b"x" * 5000}
    assert "content-type" in standalone_fields({k: v for k, v in fields.items() if k != "count"})
    req = httpsig.committed_request(Wallet.generate("ed25519"), fields)
    inner = httpsig.decode(req).committed()
    assert inner is not None and inner.fields == fields
    with pytest.raises(BadInput, match="does not (verify|match)"):
        httpsig.decode(_replace(req, b"x" * 10, b"x" * 9 + b"y"))


def test_the_body_message_wins_over_a_signed_envelope() -> None:
    """A request signed by a relay (its fields and digest) carrying a body message committed by its
    author: the author's message is the one scheduled (HyperBEAM schedules the body)."""
    author, relay = Wallet.generate("ed25519"), Wallet.generate("ed25519")
    inner_req = httpsig.committed_request(author, FIELDS)
    headers = httpsig.sign(relay, [(k, v) for k, v in inner_req.headers if k != "body-keys"], body=inner_req.body)
    decoded = httpsig.decode(httpsig.Request("POST", "/", tuple(headers), inner_req.body))
    assert decoded.signer is not None and decoded.signer.committer == relay.address
    committed = decoded.committed()
    assert committed is not None and committed.signer is not None and committed.signer.committer == author.address


@pytest.mark.parametrize("old, new", [
    (b"action: Eval", b"action: Evil"),                     # a committed field of the inline part
    (b"x + 41", b"x + 42"),                                  # the body part (under content-digest)
    (b"count: 3", b"count: 4"),
    (b"ao-types: count=integer", b"ao-types: count=float"),  # the types, committed too
])
def test_a_flipped_committed_byte_is_refused(old: bytes, new: bytes) -> None:
    req = httpsig.committed_request(Wallet.generate("rsa"), FIELDS)
    with pytest.raises(BadInput, match="does not (verify|match)"):
        httpsig.decode(_replace(req, old, new))


@pytest.mark.parametrize("field", ["signature", "signature-input", "committer", "hmac"])
def test_a_flipped_commitment_byte_is_refused(field: str) -> None:
    req = httpsig.committed_request(Wallet.generate("ed25519"), FIELDS)
    part = req.body.index(b"\r\nalg: ed25519" if field != "hmac" else b"\r\nalg: hmac-sha256")
    field = "signature" if field == "hmac" else field
    start = req.body.index(f"\r\n{field}: ".encode(), part) + len(field) + 24
    flipped = req.body[start:start + 1].replace(b"A", b"B") if req.body[start:start + 1] == b"A" else b"A"
    with pytest.raises(BadInput):
        httpsig.decode(_replace(req, req.body[start - 20:start + 1], req.body[start - 20:start] + flipped))


def test_a_renamed_hmac_commitment_is_refused() -> None:
    req = httpsig.committed_request(Wallet.generate("ed25519"), FIELDS)
    ids = [part.split(b'"')[0] for part in req.body.split(b'name="body/commitments/')[1:]]
    decoded = httpsig.decode(req)
    assert decoded.inner is not None
    mac = next(c for c in decoded.inner.commitments if c.alg == "hmac-sha256")
    assert mac.committer is None and b64url(mac.signature).encode() in ids
    with pytest.raises(BadInput, match="hmac"):
        httpsig.decode(_replace(req, b64url(mac.signature).encode(), b"A" * 43))


def test_an_uncommitted_field_added_to_the_inline_part_is_not_part_of_the_message() -> None:
    wallet = Wallet.generate("ed25519")
    req = _replace(httpsig.committed_request(wallet, FIELDS), b"action: Eval", b"action: Eval\r\nfrom: mallory")
    inner = httpsig.decode(req).committed()
    assert inner is not None and "from" not in inner.fields and inner.to_message().owner == wallet.address


def _hmac_only(fields: dict[str, bytes]) -> httpsig.Request:
    """A body message with only b2743e4a's hmac commitment (no signature-input: every field counts)."""
    names = sorted(standalone_fields(fields))
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in names])
    inner.params["alg"], inner.params["keyid"] = "hmac-sha256", "ao"
    cid = b64url(hmac.new(b"ao", signature_base(standalone_fields(fields), names, str(inner)),
                          hashlib.sha256).digest())
    parts = [CRLF.join([b"content-disposition: inline", *(k.encode() + b": " + v for k, v in fields.items())]),
             CRLF.join([f'content-disposition: form-data;name="body/commitments/{cid}"'.encode(),
                        b"alg: hmac-sha256", b"commitment-device: httpsig@1.0"])]
    content_type, body = join_parts(parts)
    return httpsig.Request(headers=(("content-type", content_type),), body=body)


def test_hmac_commitments_are_ids_never_authority() -> None:
    fields = {"action": b"Ping", "target": PID.encode()}
    decoded = httpsig.decode(_hmac_only(fields))
    assert decoded.inner is not None and decoded.inner.commitments[0].alg == "hmac-sha256"
    assert decoded.committed() is None  # no owner: the server answers 401 without --dev
    with pytest.raises(BadInput, match="hmac"):
        httpsig.decode(_replace(_hmac_only(fields), b"action: Ping", b"action: Pong"))


def _later_main_shape(wallet: Wallet, msg: dict[str, bytes]) -> dict[str, httpsig.Value]:
    """A commitment as HyperBEAM's later main writes it: the base lists the standalone fields of the
    committed keys, sorted, with `alg` (= type) and `keyid` params; signature in base64url."""
    keyid = "publickey:" + base64.b64encode(wallet.owner).decode()
    fields = standalone_fields(msg, "ao-body-key")
    names = sorted(fields)
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in names])
    inner.params["alg"], inner.params["keyid"] = "rsa-pss-sha512", keyid
    signature = sign_base(wallet, signature_base(fields, names, str(inner)))
    committed = ", ".join(json.dumps(k) for k in sorted(msg))
    return {**msg, "commitments": {b64url(hashlib.sha256(signature).digest()): {
        "commitment-device": b"httpsig@1.0", "type": b"rsa-pss-sha512", "keyid": keyid.encode(),
        "committer": wallet.address.encode(), "committed": committed.encode(), "signature": b64url(signature).encode()}}}


def test_later_main_commitment_shape_verifies() -> None:
    wallet = Wallet.generate("rsa")
    msg = {"action": b"Eval", "data": b"return 1", "target": PID.encode()}
    committed = verify_commitments(_later_main_shape(wallet, msg))
    assert committed.commitments[0].committer == wallet.address and committed.covered == set(msg)
    tampered = _later_main_shape(wallet, msg)
    tampered["data"] = b"return 2"
    with pytest.raises(BadInput, match="does not (verify|match)"):
        verify_commitments(tampered)


def test_later_main_siginfo_commitment_part_verifies() -> None:
    """Later main writes a `body/commitments/<id>` part as `signature`/`signature-input` fields alone
    (label `sig-<id>`, keyid `publickey:<base64>`), the body's key as `ao-body-key: data`."""
    wallet = Wallet.generate("rsa")
    msg = {"action": b"Eval", "data": b"return 1", "target": PID.encode()}
    fields = standalone_fields(msg, "ao-body-key")
    names = sorted(fields)
    assert "ao-body-key" in names and "content-digest" in names
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in names])
    inner.params["alg"] = "rsa-pss-sha512"
    inner.params["keyid"] = "publickey:" + base64.b64encode(wallet.owner).decode()
    signature = sign_base(wallet, signature_base(fields, names, str(inner)))
    cid = b64url(hashlib.sha256(signature).digest())
    label = "sig-" + cid.lower().replace("_", "-")[:20].strip("-")
    entry = {"signature": f"{label}=:{base64.b64encode(signature).decode()}:".encode(),
             "signature-input": f"{label}={inner}".encode()}
    committed = verify_commitments({**msg, "commitments": {cid: entry}})
    assert committed.commitments[0].committer == wallet.address and committed.covered == set(msg)
    with pytest.raises(BadInput, match="does not verify"):
        verify_commitments({**msg, "action": b"Evil", "commitments": {cid: entry}})


@pytest.mark.peers
def test_a_body_message_signed_in_js_verifies(tmp_path: Path) -> None:
    """The standalone message's signature base as the npm `http-message-signatures` library (the
    RFC 9421 code aoconnect uses) builds and signs it with an arweave-js key, sent in HyperBEAM's
    multipart layout: verified here, its committer the JS wallet's address; a flipped byte fails."""
    assert shutil.which("node"), "node is required for the peers tests"
    subprocess.run(["node", str(PEER), str(tmp_path)], check=True, cwd=ROOT, timeout=120)
    out = json.loads((tmp_path / "committed.json").read_text())
    req = httpsig.Request("POST", "http://x/push", tuple(tuple(h) for h in out["headers"]),
                          base64.b64decode(out["body_b64"]))
    inner = httpsig.decode(req).committed()
    assert inner is not None and inner.signer is not None and inner.signer.committer == out["address"]
    assert inner.fields["action"] == b"Eval" and inner.fields["data"] == b"local x = 1\nreturn x + 41"
    with pytest.raises(BadInput):
        httpsig.decode(_replace(req, b"x + 41", b"x + 40"))


_SIGNED = httpsig.committed_request(Wallet.generate("ed25519"), FIELDS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0, max_value=len(_SIGNED.body) - 1), bit=st.integers(0, 7))
def test_no_flipped_bit_forges_a_message_or_breaks_the_decoder(position: int, bit: int) -> None:
    """Any one bit flipped anywhere in the body: a 400, or (a byte nothing reads) the same message."""
    body = bytearray(_SIGNED.body)
    body[position] ^= 1 << bit
    headers = tuple((k, httpsig.content_digest(bytes(body)) if k == "content-digest" else v)
                    for k, v in _SIGNED.headers)
    try:
        decoded = httpsig.decode(httpsig.Request("POST", "/", headers, bytes(body)))
    except BadInput:
        return
    inner = decoded.committed()
    assert inner is None or (inner.fields == FIELDS and inner.to_message().id == _ORIGINAL_ID)


_ORIGINAL = httpsig.decode(_SIGNED).committed()
assert _ORIGINAL is not None
_ORIGINAL_ID = _ORIGINAL.to_message().id
