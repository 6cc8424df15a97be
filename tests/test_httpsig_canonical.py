"""engine/httpsig_canonical.py: the signature fields read without http_sfv must read exactly as http_sfv
reads them (same components, parameters, signature bytes, and the member's serialization as its
`@signature-params` line), and anything outside the canonical shape must go to http_sfv (None)."""

from __future__ import annotations

import http_sfv
import pytest

from aonode.engine import httpsig, httpsig_canonical
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_signature import Request, verify

SIG = "sig=:" + "QUJD" * 8 + ":"


def _sfv(signature: str, signature_input: str) -> list[tuple[str, tuple[str, ...], dict, str, bytes]]:
    sigs, inputs = http_sfv.Dictionary(), http_sfv.Dictionary()
    sigs.parse(signature.encode())
    inputs.parse(signature_input.encode())
    return [
        (label, tuple(str(i.value) for i in m), dict(m.params), str(m), sigs[label].value)
        for label, m in inputs.items()
    ]


def _ours(signature: str, signature_input: str) -> list[tuple[str, tuple[str, ...], dict, str, bytes]] | None:
    got = httpsig_canonical.parse(signature, signature_input)
    if got is None:
        return None
    return [(i.label, i.components, i.params, i.params_line, i.signature) for i in got]


@pytest.mark.parametrize(
    "signature_input",
    [
        '("@method" "@path" "content-digest");alg="rsa-pss-sha512";keyid="abc-_09";created=1700000000',
        '();alg="ed25519";keyid="k";tag="ao-answer"',
        '("a" "b c" "d)e(");keyid="x y,z";expires=-5;nonce=0',
    ],
)
def test_canonical_members_read_as_http_sfv_reads_them(signature_input: str) -> None:
    signature = SIG
    assert _ours(signature, "sig=" + signature_input) == _sfv(signature, "sig=" + signature_input)
    two_sigs = SIG + ",  other=:QUJD:"
    two = f'sig={signature_input}, other=("x");keyid="k"'
    assert _ours(two_sigs, two) == _sfv(two_sigs, two)


@pytest.mark.parametrize(
    ("signature", "signature_input"),
    [
        (SIG, 'sig=("content-digest";key="sha-256");keyid="k"'),  # a component with parameters
        (SIG, 'sig=("a");alg=rsa'),  # a token
        (SIG, 'sig=("a");flag'),  # a boolean
        (SIG, 'sig=("a");keyid="q\\"uote"'),  # an escape
        (SIG, 'sig=("a");created=007'),  # serialized as 7
        (SIG, 'sig=("a");created=-0'),
        (SIG, 'sig=("a"  "b")'),  # two spaces: serialized with one
        (SIG, 'sig=("a");keyid="k";keyid="l"'),  # repeated parameter
        (SIG + ", " + SIG, 'sig=("a")'),  # repeated label
        (SIG, 'sig=("a"), sig=("b")'),
        (SIG, 'sig=("a"),'),  # trailing comma
        ("sig=:QUJ:", 'sig=("a")'),  # not base64
        (SIG, 'other=("a")'),  # no signature for the input
    ],
)
def test_anything_else_goes_to_http_sfv(signature: str, signature_input: str) -> None:
    assert httpsig_canonical.parse(signature, signature_input) is None


def _decode(request: httpsig.Request) -> httpsig.Decoded:
    return httpsig.decode(httpsig.Request("POST", "http://node/x", request.headers, request.body))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_signed_messages_verify_the_same_both_ways(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wallet = Wallet.generate(kind)
    request = httpsig.signed_message(wallet, {"action": b"Ping", "target": b"P" * 43, "data": b"hello", "count": 3})
    headers = dict(request.headers)
    assert httpsig_canonical.parse(headers["signature"], headers["signature-input"]) is not None
    req = Request("POST", "http://node/x", request.headers, request.body)
    fast, fast_msg = verify(req), _decode(request).committed()
    with monkeypatch.context() as m:
        m.setattr(httpsig_canonical, "parse", lambda *_: None)
        slow, slow_msg = verify(req), _decode(request).committed()
    assert fast == slow and len(fast) == 1 and fast[0].committer == wallet.address
    assert fast_msg is not None and slow_msg is not None
    assert (fast_msg.to_message().id, fast_msg.to_message().owner) == (
        slow_msg.to_message().id,
        slow_msg.to_message().owner,
    )


def test_a_changed_field_fails_on_the_canonical_path() -> None:
    wallet = Wallet.generate("ed25519")
    request = httpsig.signed_message(wallet, {"action": b"Ping", "data": b"hello"})
    headers = tuple((k, "Pong" if k.lower() == "action" else v) for k, v in request.headers)
    assert httpsig_canonical.parse(dict(headers)["signature"], dict(headers)["signature-input"]) is not None
    with pytest.raises(BadInput, match="does not verify"):
        verify(Request("POST", "http://node/x", headers, request.body))


def test_a_remembered_signature_input_reads_each_signature_anew() -> None:
    """The same signature-input text (remembered after its first read) with other signatures: each read
    carries its own signature bytes and parameters of its own; a signature without its label is still refused."""
    signature_input = 'sig=("a" "b");alg="ed25519";keyid="k"'
    first = httpsig_canonical.parse(SIG, signature_input)
    second = httpsig_canonical.parse("sig=:QUJD:", signature_input)
    assert first is not None and second is not None
    assert (first[0].signature, second[0].signature) == (b"ABC" * 8, b"ABC")
    first[0].params["alg"] = "changed"
    again = httpsig_canonical.parse(SIG, signature_input)
    assert again is not None and again[0].params == {"alg": "ed25519", "keyid": "k"}
    assert httpsig_canonical.parse("other=:QUJD:", signature_input) is None
