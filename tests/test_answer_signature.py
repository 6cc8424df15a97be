"""Answers signed by a session key the wallet vouches for (engine/answer_signature.py), on a real
hypercorn node: `verify_answer`, the `http-message-signatures` package and its JS namesake all accept
them; a flipped body, a swapped session key or a vouch by another wallet fail or name another node.
AONODE_ANSWER_KEY=wallet gives one wallet signature per answer, as before."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import http_sfv
import httpx
import pytest

from aonode.engine.answer_signature import SESSION_FIELD, VOUCH_TAG, SessionKey, verify_answer
from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput, StartupRefused
from aonode.engine.httpsig_signature import Request, sign_base, signature_base, wallet_alg
from aonode.engine.message import b64url
from aonode.server.app import create_app
from aonode.server.signing import answer_fields, answer_signer
from tests.helpers.httpnode import serving
from tests.helpers.nodeutil import make_node
from tests.helpers.rfc9421 import verified_signer

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "peers" / "httpsig_peer.mjs"
Headers = list[tuple[str, str]]


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("rsa")


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory, wallet: Wallet) -> Iterator[tuple[str, str]]:
    """A served node (default answer key) and its address."""
    node = make_node(tmp_path_factory.mktemp("answers"), dev=True, wallet=wallet)
    try:
        with serving(create_app(node, dev=True, cron_every=0)) as url:
            yield url, node.address
    finally:
        node.close()


def _answers(url: str) -> list[httpx.Response]:
    """An info answer, a 404 and a 400 error, each as the node sends it."""
    with httpx.Client(base_url=url, timeout=60) as http:
        return [
            http.get("/~meta@1.0/info"),
            http.get(f"/{'U' * 43}~process@1.0/now/cache/x"),
            http.post(f"/{'U' * 43}~process@1.0/schedule", content=b"not json", headers={"content-type": "text/plain"}),
        ]


def _forged(answer: httpx.Response, headers: Headers, body: bytes | None = None) -> httpx.Response:
    return httpx.Response(
        answer.status_code,
        headers=headers,
        content=answer.content if body is None else body,
        request=httpx.Request("GET", "http://node/"),
    )


def _replace(headers: Headers, **values: str) -> Headers:
    named = {k.replace("_", "-"): v for k, v in values.items()}
    return [(k, named.get(k, v)) for k, v in headers]


def test_served_answers_carry_a_session_signature_and_its_vouch(node_url: tuple[str, str]) -> None:
    url, address = node_url
    answers = _answers(url)
    assert [a.status_code for a in answers] == [200, 404, 400]
    vouches = set()
    for answer in answers:
        assert verify_answer(answer.headers.multi_items(), answer.content) == address
        assert verified_signer(answer) == address  # http-message-signatures, not our code
        session, vouch = answer.headers["signature-input"].split(", ")
        assert 'alg="ed25519"' in session and f'keyid="{answer.headers[SESSION_FIELD]}"' in session
        assert '"content-digest"' in session and vouch.split("=", 1)[1].startswith('("ao-session-key");created=')
        vouches.add((vouch, answer.headers["signature"].split(", ")[1]))
    assert len(vouches) == 1  # made once: the same vouch on every answer


def test_a_flipped_body_fails(node_url: tuple[str, str]) -> None:
    answer = _answers(node_url[0])[0]
    flipped = bytearray(answer.content)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(BadInput, match="content-digest"):
        verify_answer(answer.headers.multi_items(), bytes(flipped))
    with pytest.raises(Exception):  # noqa: B017 - the library raises its own InvalidSignature
        verified_signer(_forged(answer, answer.headers.multi_items(), bytes(flipped)))


def test_a_swapped_session_key_fails(node_url: tuple[str, str], wallet: Wallet) -> None:
    """Another key signs the answer: kept vouch (names the node's key) or its own `ao-session-key`."""
    answer = _answers(node_url[0])[0]
    other = SessionKey.start(wallet)  # even one the same wallet vouched for in another run
    fields = answer_fields(answer.headers["content-type"].encode(), answer.content)
    own_key, own_input, own_signature = other.sign(fields)
    node_vouch_input = answer.headers["signature-input"].split(", ")[1]
    node_vouch = answer.headers["signature"].split(", ")[1]
    session_input, session_signature = own_input[1].split(", ")[0], own_signature[1].split(", ")[0]
    base = answer.headers.multi_items()
    kept_vouch = _replace(
        base, signature_input=f"{session_input}, {node_vouch_input}", signature=f"{session_signature}, {node_vouch}"
    )
    own_field = _replace(kept_vouch, ao_session_key=own_key[1])
    for headers, why in ((kept_vouch, "not signed by the session key"), (own_field, "does not verify")):
        with pytest.raises(BadInput, match=why):
            verify_answer(headers, answer.content)
        with pytest.raises(Exception):  # noqa: B017 - an assertion or the library's InvalidSignature
            verified_signer(_forged(answer, headers))


def test_a_vouch_from_another_wallet_names_another_node_or_fails(node_url: tuple[str, str]) -> None:
    answer = _answers(node_url[0])[0]
    stranger = SessionKey.start(Wallet.generate("ed25519"))
    fields = answer_fields(answer.headers["content-type"].encode(), answer.content)
    whole = dict(stranger.sign(fields))
    resigned = _replace(answer.headers.multi_items(), **{k.replace("-", "_"): v for k, v in whole.items()})
    assert verify_answer(resigned, answer.content) != node_url[1]  # valid, but another node's answer
    vouch_input, vouch = whole["signature-input"].split(", ")[1], whole["signature"].split(", ")[1]
    session_input, session = (answer.headers[n].split(", ")[0] for n in ("signature-input", "signature"))
    transplanted = _replace(
        answer.headers.multi_items(), signature_input=f"{session_input}, {vouch_input}", signature=f"{session}, {vouch}"
    )
    with pytest.raises(BadInput, match="does not verify"):  # that vouch covers another key
        verify_answer(transplanted, answer.content)
    unvouched = _replace(answer.headers.multi_items(), signature_input=session_input, signature=session)
    with pytest.raises(BadInput, match="vouching"):  # the session key alone names no node
        verify_answer(unvouched, answer.content)


def _vouch_by(wallet: Wallet, public: str, tag: str | None) -> tuple[str, str]:
    """A signature-input and signature member: `wallet` signing `ao-session-key: <public>` with `tag`
    (None: no tag), built here with the RFC 9421 primitives, not by SessionKey."""
    inner = http_sfv.InnerList([http_sfv.Item(SESSION_FIELD)])
    inner.params["created"] = 1
    inner.params["alg"] = wallet_alg(wallet)
    inner.params["keyid"] = b64url(wallet.owner)
    if tag is not None:
        inner.params["tag"] = tag
    base = signature_base(Request(headers=((SESSION_FIELD, public),)), list(inner), str(inner))
    signature = base64.b64encode(sign_base(wallet, base)).decode()
    return f"vouch={inner}", f"vouch=:{signature}:"


def test_a_vouch_without_its_tag_vouches_for_nothing(node_url: tuple[str, str], wallet: Wallet) -> None:
    """The node's own wallet signing the answer's own session key, but not as a vouch (another tag, or
    none): a signature made for something else is refused; the same with the right tag is accepted."""
    answer = _answers(node_url[0])[0]
    session_input, session = (answer.headers[n].split(", ")[0] for n in ("signature-input", "signature"))
    results = {}
    for tag in (VOUCH_TAG, None, "ao-answer", "ao-session-key-v0"):
        vouch_input, vouch = _vouch_by(wallet, answer.headers[SESSION_FIELD], tag)
        headers = _replace(
            answer.headers.multi_items(),
            signature_input=f"{session_input}, {vouch_input}",
            signature=f"{session}, {vouch}",
        )
        try:
            results[tag] = verify_answer(headers, answer.content)
        except BadInput as err:
            results[tag] = str(err)
    assert results[VOUCH_TAG] == node_url[1] == wallet.address
    for tag in (None, "ao-answer", "ao-session-key-v0"):
        assert "vouches for nothing" in results[tag], (tag, results[tag])


def test_wallet_answer_key_signs_each_answer_with_the_wallet(
    tmp_path: Path, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AONODE_ANSWER_KEY", "wallet")
    node = make_node(tmp_path, dev=True, wallet=wallet)
    try:
        with serving(create_app(node, dev=True, cron_every=0)) as url:
            answers = _answers(url)
    finally:
        node.close()
    for answer in answers:
        assert SESSION_FIELD not in answer.headers and 'alg="rsa-pss-sha512"' in answer.headers["signature-input"]
        assert verify_answer(answer.headers.multi_items(), answer.content) == wallet.address
        assert verified_signer(answer) == wallet.address
    monkeypatch.setenv("AONODE_ANSWER_KEY", "hsm")
    with pytest.raises(StartupRefused, match="AONODE_ANSWER_KEY"):
        answer_signer(wallet)


@pytest.mark.peers
def test_the_js_library_accepts_the_answers_and_refuses_forgeries(node_url: tuple[str, str], tmp_path: Path) -> None:
    """`http-message-signatures` (npm, what aoconnect uses) checks the vouch, the key and the body."""
    url, address = node_url
    answers = _answers(url)
    flipped = answers[0].content[:-1] + bytes([answers[0].content[-1] ^ 1])
    other_key = SessionKey.start(Wallet.generate("ed25519")).public
    items = [(a.status_code, a.headers.multi_items(), a.content) for a in answers]
    items += [
        (200, answers[0].headers.multi_items(), flipped),
        (200, _replace(answers[0].headers.multi_items(), ao_session_key=other_key), answers[0].content),
    ]
    path = tmp_path / "answers.json"
    path.write_text(
        json.dumps([{"status": s, "headers": h, "body_b64": base64.b64encode(b).decode()} for s, h, b in items])
    )
    out = subprocess.run(
        ["node", str(PEER), "answers", str(path)], check=True, cwd=ROOT, timeout=60, capture_output=True, text=True
    )
    seen = json.loads(out.stdout)
    assert [s["address"] for s in seen[:3]] == [address] * 3, seen
    assert [s["address"] for s in seen[3:]] == [None, None], seen
