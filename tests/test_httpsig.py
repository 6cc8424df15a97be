"""httpsig@1.0 codec: requests signed by the unmodified JS client verify here, ours verify there, and
one flipped byte anywhere that is signed is refused."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_fields import Atom, build_multipart

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "httpsig_peer.mjs"
PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc"

needs_node = pytest.mark.peers  # runs the JS client or its RFC 9421 library under node


def _req(item: dict) -> httpsig.Request:
    return httpsig.Request(item["method"], item["url"], tuple(tuple(h) for h in item["headers"]),
                           base64.b64decode(item["body_b64"]))


def _flip_header(req: httpsig.Request, name: str) -> httpsig.Request:
    headers = []
    for k, v in req.headers:
        if k.lower() == name:
            i = len(v) // 2
            v = v[:i] + ("B" if v[i] != "B" else "C") + v[i + 1:]
        headers.append((k, v))
    return httpsig.Request(req.method, req.url, tuple(headers), req.body)


@pytest.fixture(scope="module")
def js_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, dict]]:
    assert shutil.which("node"), "node is required for the peers tests (npm ci installs the JS peers)"
    out = tmp_path_factory.mktemp("httpsig-js")
    subprocess.run(["node", str(PEER), "sign", str(out)], check=True, cwd=ROOT, timeout=120)
    jwk = json.loads((out / "rsa.jwk.json").read_text())
    return jwk, {r["case"]: r for r in json.loads((out / "requests.json").read_text())}


def _js_verify(tmp_path: Path, reqs: list[httpsig.Request], statuses: list[int | None] | None = None) -> list[dict]:
    items = [{"method": r.method, "url": r.url, "headers": list(r.headers), "status": s,
              "body_b64": base64.b64encode(r.body).decode()}
             for r, s in zip(reqs, statuses or [None] * len(reqs))]
    path = tmp_path / "to-verify.json"
    path.write_text(json.dumps(items))
    out = subprocess.run(["node", str(PEER), "verify", str(path)], check=True, cwd=ROOT, timeout=60,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


@needs_node
def test_js_signed_requests_verify_and_decode(js_signed: tuple[dict, dict[str, dict]]) -> None:
    jwk, cases = js_signed
    address = Wallet.from_jwk(jwk).address
    plain = httpsig.decode(_req(cases["headers"]))
    assert plain.signer is not None and plain.signer.committer == address and plain.signer.alg == "rsa-pss-sha512"
    assert plain.fields == {"action": b"Balance", "target": PID.encode(), "data": b"one line",
                            "signing-format": b"httpsig"}
    msg = plain.to_message()
    assert msg.owner == address and msg.target == PID and msg.data == "one line"
    assert msg.tag("Action") == "Balance" and ("Action", "Balance") in msg.tags
    assert msg.id == base64.urlsafe_b64encode(hashlib.sha256(plain.signer.signature).digest()).rstrip(b"=").decode()
    typed = httpsig.decode(_req(cases["typed"])).fields
    assert typed["count"] == 42 and typed["ratio"] == 1.5 and typed["items"] == [1, b"two", 3]
    assert typed["empty"] == b"" and typed["none"] == []


@needs_node
def test_js_signed_digest_without_body_is_a_message_without_body(js_signed: tuple[dict, dict[str, dict]]) -> None:
    """aoconnect 0.0.98 signs the digest of its body, then sends none: the signature still holds."""
    _, cases = js_signed
    req = _req(cases["multiline"])
    assert req.body == b"" and "content-digest" in req.field_values()
    decoded = httpsig.decode(req)
    assert decoded.fields["action"] == b"Eval" and "data" not in decoded.fields
    with pytest.raises(BadInput, match="content-digest does not match"):
        httpsig.decode(httpsig.Request(req.method, req.url, req.headers, b"local x = 2\nreturn x"))


@needs_node
@pytest.mark.parametrize("field", ["action", "target", "signature", "signature-input"])
def test_one_flipped_byte_in_a_js_signed_request_is_refused(js_signed: tuple[dict, dict[str, dict]],
                                                            field: str) -> None:
    _, cases = js_signed
    with pytest.raises(BadInput):
        httpsig.decode(_flip_header(_req(cases["headers"]), field))


@needs_node
def test_flipped_digest_is_refused(js_signed: tuple[dict, dict[str, dict]]) -> None:
    _, cases = js_signed
    with pytest.raises(BadInput):
        httpsig.decode(_flip_header(_req(cases["multiline"]), "content-digest"))


FIELDS = {"action": b"Eval", "target": PID.encode(), "count": 7, "ratio": 0.25, "flag": Atom("true"),
          "items": [1, b"two"], "nothing": [], "blank": b"", "data": b"line1\nline2",
          "nested": {"inner": b"yes", "n": 3}, "unicode": "héllo ✓".encode()}


def _signed_and_flipped(kind: str) -> tuple[Wallet, httpsig.Request, httpsig.Request]:
    wallet = Wallet.generate(kind)
    req = httpsig.signed_message(wallet, FIELDS, url="http://127.0.0.1:9/push")
    flipped = httpsig.Request(req.method, req.url, req.headers, req.body.replace(b"line1", b"lime1"))
    return wallet, req, flipped


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_python_signed_requests_round_trip_and_flips_are_refused(kind: str) -> None:
    wallet, req, flipped = _signed_and_flipped(kind)
    decoded = httpsig.decode(req)
    assert decoded.fields == FIELDS
    assert decoded.signer is not None and decoded.signer.committer == wallet.address
    with pytest.raises(BadInput, match="content-digest"):
        httpsig.decode(flipped)
    for name in ("signature", "count", "ao-types", "content-digest", "signature-input"):
        with pytest.raises(BadInput):
            httpsig.decode(_flip_header(req, name))


@needs_node
@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_python_signed_requests_verify_in_js(tmp_path: Path, kind: str) -> None:
    _, req, flipped = _signed_and_flipped(kind)
    assert _js_verify(tmp_path, [req, flipped, _flip_header(req, "count")]) == [
        {"valid": True, "digest_ok": True}, {"valid": True, "digest_ok": False}, {"valid": False, "digest_ok": True}]


@needs_node
def test_signed_responses_verify_in_js(tmp_path: Path) -> None:
    wallet = Wallet.generate("rsa")
    headers, body = httpsig.encode({"ao-result": b"body", "body": b'{"a":1}'})
    signed = httpsig.sign(wallet, headers, body=body, status=200)
    resp = httpsig.Request("GET", "http://127.0.0.1:9/x", tuple(signed), body, status=200)
    assert httpsig.decode(resp).fields == {"ao-result": b"body", "body": b'{"a":1}'}
    assert _js_verify(tmp_path, [resp], [200]) == [{"valid": True, "digest_ok": True}]


def _multipart_request(wallet: Wallet, nested: str) -> httpsig.Request:
    content_type, body = build_multipart([
        (f"body/{nested}/abc", {"alg": b"hmac-sha256", "commitment-device": b"httpsig@1.0"}, b""),
        (f"body/{nested}/def", {"alg": b"rsa-pss-sha512", "ao-types": b"n=integer", "n": b"5"}, b""),
        ("data", {}, b"print(1)\nprint(2)"),
    ])
    body = body.replace(b'form-data;name="data"', b"inline")
    headers = [("body-keys", '"body", "data"'), ("content-type", content_type), ("inline-body-key", "data"),
               ("action", "Eval"), ("ao-types", "slot=integer"), ("slot", "9"),
               ("content-digest", f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:")]
    return httpsig.Request("POST", "http://x/push", tuple(httpsig.sign(wallet, headers, body=body)), body)


def test_hyperbeam_multipart_with_inline_and_nested_parts() -> None:
    """The shape HyperBEAM sends: body-keys, an `inline` part, `body/<key>/<id>` parts, each level typed;
    under `body/commitments/` the same parts are commitments, checked (tests/test_httpsig_commitments.py)."""
    wallet = Wallet.generate("rsa")
    fields = httpsig.decode(_multipart_request(wallet, "extra")).fields
    assert fields["data"] == b"print(1)\nprint(2)" and fields["slot"] == 9 and fields["action"] == b"Eval"
    nested = fields["body"]
    assert isinstance(nested, dict)
    assert nested["extra"] == {"abc": {"alg": b"hmac-sha256", "commitment-device": b"httpsig@1.0"},
                               "def": {"alg": b"rsa-pss-sha512", "n": 5}}
    with pytest.raises(BadInput, match="commitment"):
        httpsig.decode(_multipart_request(wallet, "commitments"))


def test_hmac_commitment_is_an_id_not_an_owner() -> None:
    import hmac as hmac_mod

    import http_sfv

    headers = [("action", "Ping"), ("target", PID)]
    inner = http_sfv.InnerList([http_sfv.Item("action"), http_sfv.Item("target")])
    inner.params["alg"] = "hmac-sha256"
    inner.params["keyid"] = "ao"
    base = httpsig.signature_base(httpsig.Request(headers=tuple(headers)), list(inner), str(inner))
    mac = hmac_mod.new(b"ao", base, hashlib.sha256).digest()
    signed = (*headers, ("signature-input", f"hmac={inner}"),
              ("signature", f"hmac=:{base64.b64encode(mac).decode()}:"))
    decoded = httpsig.decode(httpsig.Request(headers=signed))
    assert decoded.commitments[0].committer is None and decoded.signer is None
    with pytest.raises(BadInput, match="needs an owner"):
        decoded.to_message()
    with pytest.raises(BadInput, match="hmac"):
        httpsig.decode(_flip_header(httpsig.Request(headers=signed), "action"))


def test_unsigned_request_keeps_message_fields_only() -> None:
    req = httpsig.Request("POST", "http://x/push", (("Host", "x"), ("Action", "Eval"), ("User-Agent", "curl"),
                                                    ("content-length", "3")), b"1+1")
    decoded = httpsig.decode(req)
    assert decoded.commitments == () and decoded.fields == {"action": b"Eval", "body": b"1+1"}
    assert decoded.to_message(owner="me").data == "1+1"


def test_uncovered_encoding_fields_and_envelope_claims_do_not_count() -> None:
    """A header added after signing cannot retype, rename or split the signed message, nor claim a sender."""
    wallet = Wallet.generate("ed25519")
    req = httpsig.signed_message(wallet, {"count": b"7", "from": b"someone-else", "body": b"a\nb"})
    assert {k for k, _ in req.headers} == {"count", "from", "content-digest", "signature", "signature-input"}
    extra = (("ao-types", "count=integer, ghost=empty-list"), ("inline-body-key", "target"),
             ("content-type", 'multipart/form-data; boundary="x"'))
    decoded = httpsig.decode(httpsig.Request(req.method, req.url, req.headers + extra, req.body))
    assert decoded.fields == {"count": b"7", "from": b"someone-else", "body": b"a\nb"}
    msg = decoded.to_message()
    assert msg.owner == msg.from_ == wallet.address and msg.tag("From") is None and msg.target is None
