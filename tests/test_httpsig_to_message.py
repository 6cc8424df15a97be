"""engine/httpsig.Decoded.to_message of a signed message builds the Message directly (no content id
that the commitment's id then replaces): it must equal what Message.create + replace gave, field for
field, for messages with and without target, anchor, data, a body and several tags."""

from __future__ import annotations

import pytest

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet
from aonode.engine.message import Message, b64url

PID = "P" * 43


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("ed25519")


def _reference(decoded: httpsig.Decoded) -> Message:
    """The message as create + replace made it before."""
    signer = decoded.signer
    assert signer is not None and signer.committer is not None
    fields = dict(decoded.fields)
    data, body = fields.pop("data", None), fields.pop("body", None)
    if data is None:
        data = body
    elif body is not None:
        fields["body"] = body
    target, anchor = fields.pop("target", None), fields.pop("anchor", None)
    tags = [(httpsig.title_case(k), httpsig._tag_text(v)) for k, v in fields.items() if k not in httpsig.ENVELOPE]
    msg = Message.create(
        owner=signer.committer,
        target=httpsig._text(target),
        anchor=httpsig._text(anchor),
        tags=tags,
        data=httpsig._text(data) or "",
    )
    return msg.replace(id=signer.id, signature=b64url(signer.signature))


@pytest.mark.parametrize(
    "fields",
    [
        {"action": b"Ping", "target": PID.encode(), "data": b"hello"},
        {"action": b"Transfer", "recipient": b"r" * 43, "quantity": b"10", "target": PID.encode()},
        {"action": b"Eval", "data": "caf\u00e9 \u2603".encode(), "anchor": b"a" * 32, "from": b"claimed"},
        {"x-multi-word-name": b"v", "data": b"\xff\xfe not utf-8"},
        {"action": b"Ping"},
    ],
)
def test_a_signed_message_is_what_create_and_replace_made(wallet: Wallet, fields: dict[str, bytes]) -> None:
    decoded = httpsig.decode(httpsig.signed_message(wallet, fields))
    msg = decoded.to_message()
    assert msg == _reference(decoded)
    assert msg.owner == msg.from_ == wallet.address  # the signer's, never the `from` the sender claims
    assert msg.to_cbor() == _reference(decoded).to_cbor()
