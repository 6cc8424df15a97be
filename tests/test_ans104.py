"""ANS-104 items built, parsed and verified in Python with real keys; malformed bytes are refused."""

from __future__ import annotations

import hashlib
import struct

import pytest

from aonode.engine.ans104 import DataItem, _signature_data, build_and_sign, decode_tags, deep_hash, encode_tags
from aonode.engine.crypto import Wallet, b64url_decode, b64url_encode
from aonode.engine.errors import BadInput
from aonode.engine.message import Message

PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc"
ANCHOR = "00000000000000000000000000000042"
TAGS = [("Data-Protocol", "ao"), ("Type", "Message"), ("Action", "Eval")]


@pytest.fixture(scope="module")
def wallets() -> dict[str, Wallet]:
    """One real key of each kind, shared by the module (RSA-4096 generation takes a second)."""
    return {kind: Wallet.generate(kind) for kind in ("rsa", "ed25519")}


@pytest.fixture(scope="module")
def ed_wallet(wallets: dict[str, Wallet]) -> Wallet:
    return wallets["ed25519"]


@pytest.fixture(scope="module")
def item(ed_wallet: Wallet) -> DataItem:
    return build_and_sign(ed_wallet, data="return 1 + 1", tags=TAGS, target=PID, anchor=ANCHOR)


def _flip(raw: bytes, offset: int) -> bytes:
    out = bytearray(raw)
    out[offset] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_round_trip(wallets: dict[str, Wallet], kind: str) -> None:
    wallet = wallets[kind]
    built = build_and_sign(wallet, data=b"\x00\xffbinary", tags=TAGS, target=PID, anchor=ANCHOR)
    parsed = DataItem.parse(built.raw)
    assert parsed == built
    assert parsed.verify()
    assert parsed.id == b64url_encode(hashlib.sha256(parsed.signature).digest())
    assert parsed.signer_address == wallet.address
    assert parsed.target == b64url_decode(PID)
    assert parsed.anchor == ANCHOR.encode()
    assert parsed.tag("action") == "Eval"


def test_layout_matches_arbundles(item: DataItem, ed_wallet: Wallet) -> None:
    raw = item.raw
    assert raw[:2] == b"\x02\x00"
    assert raw[2:66] == item.signature
    assert raw[66:98] == ed_wallet.owner
    assert raw[98] == 1 and raw[99:131] == b64url_decode(PID)
    assert raw[131] == 1 and raw[132:164] == ANCHOR.encode()
    count, size = struct.unpack("<QQ", raw[164:180])
    assert count == 3 and size == len(encode_tags(TAGS))
    assert raw[180 : 180 + size] == encode_tags(TAGS)
    assert raw[180 + size :] == b"return 1 + 1"


def test_bare_item_has_absent_fields_and_no_tag_bytes(ed_wallet: Wallet) -> None:
    bare = build_and_sign(ed_wallet, data=b"")
    assert bare.raw[98:100] == b"\x00\x00"
    assert bare.raw[100:116] == b"\x00" * 16
    assert len(bare.raw) == 116
    parsed = DataItem.parse(bare.raw)
    assert (parsed.target, parsed.anchor, parsed.tags, parsed.data) == (None, None, (), b"")
    assert parsed.verify()


def test_avro_encoding() -> None:
    assert encode_tags([]) == b""
    assert encode_tags([("A", "b")]) == b"\x02\x02A\x02b\x00"
    long_value = "x" * 200  # length 200 -> zigzag 400 -> varint 0x90 0x03
    assert encode_tags([("A", long_value)]) == b"\x02\x02A\x90\x03" + long_value.encode() + b"\x00"
    tags = [("Näme", "välue 🙂"), ("K", "")]
    assert decode_tags(encode_tags(tags)) == tags
    # Avro also allows a negative block count followed by the block's byte size.
    block = b"\x02A\x02b"
    assert decode_tags(b"\x01" + bytes([len(block) * 2]) + block + b"\x00") == [("A", "b")]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x02\x02A\x02b", "truncated varint"),
        (b"\x02\x02A\x02b\x00\x00", "trailing bytes"),
        (b"\x02\x02A\x0ab\x00", "runs past"),
        (b"\x02\x02\xff\x02b\x00", "not UTF-8"),
        (b"\x02\x00\x02b\x00", "empty name"),
        (b"\x02" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x82\x02" + b"\x02A\x02b" * 129 + b"\x00", "more than 128 tags"),
    ],
)
def test_bad_avro_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        decode_tags(raw)


def test_malformed_items_are_refused(item: DataItem) -> None:
    raw = item.raw
    cases = {
        "truncated": raw[:2],
        "signature": raw[:40],
        "owner": raw[:80],
        "presence byte is 2": raw[:98] + b"\x02" + raw[99:],
        "tag count": raw[:170],
        "unsupported signature type 9": b"\x09\x00" + raw[2:],
        "unsupported signature type 9": b"\x09\x00" + raw[2:],
        "declares 2 tags": raw[:164] + struct.pack("<Q", 2) + raw[172:],
        "tags needs": raw[:172] + struct.pack("<Q", 10_000) + raw[180:],
        "trailing bytes": raw[:172] + struct.pack("<Q", len(item.raw_tags) + 2) + raw[180:],
    }
    for message, bad in cases.items():
        with pytest.raises(BadInput, match=message):
            DataItem.parse(bad)


def test_tampering_is_detected(item: DataItem) -> None:
    raw = item.raw
    data_at = len(raw) - len(item.data)
    tag_value_at = raw.index(b"Eval")
    for offset in (data_at, tag_value_at, 10, 70, 100, 140):  # data, tag, signature, owner, target, anchor
        tampered = DataItem.parse(_flip(raw, offset))
        assert not tampered.verify(), offset
    assert DataItem.parse(_flip(raw, 10)).id != item.id
    assert not DataItem.parse(raw + b"!").verify()


def test_build_refuses_bad_fields(ed_wallet: Wallet) -> None:
    with pytest.raises(BadInput, match="target must be 32 bytes"):
        build_and_sign(ed_wallet, data="", target="abc")
    with pytest.raises(BadInput, match="anchor must be 32 bytes"):
        build_and_sign(ed_wallet, data="", anchor="short")
    with pytest.raises(BadInput, match="at most 4096"):
        build_and_sign(ed_wallet, data="", tags=[(f"T{i}", "v" * 1000) for i in range(5)])
    with pytest.raises(BadInput, match="non-empty"):
        build_and_sign(ed_wallet, data="", tags=[("", "v")])
    with pytest.raises(BadInput, match="exceeds"):
        build_and_sign(ed_wallet, data="", tags=[("n" * 1025, "v")])


def test_to_message(item: DataItem, ed_wallet: Wallet) -> None:
    msg = item.to_message()
    assert isinstance(msg, Message)
    assert msg.id == item.id
    assert msg.owner == msg.from_ == ed_wallet.address
    assert (msg.target, msg.anchor, msg.data) == (PID, ANCHOR, "return 1 + 1")
    assert msg.tags == tuple(TAGS)
    assert msg.signature == b64url_encode(item.signature)
    assert msg.raw == item.raw
    binary = build_and_sign(ed_wallet, data=b"\xff\x00", anchor=b"\xfe" * 32).to_message()
    assert binary.data == b64url_encode(b"\xff\x00")
    assert binary.anchor == b64url_encode(b"\xfe" * 32)
    assert binary.target is None


@pytest.mark.parametrize("size", [0, 1, 32, 512, 4096, 70_000])
@pytest.mark.parametrize("sig_type", [1, 2])
def test_signature_data_is_the_deep_hash_of_the_fields(size: int, sig_type: int) -> None:
    """_signature_data folds the deep hash in place with remembered constants: the same bytes as
    deep_hash over the field list, for any field sizes, absent target/anchor included."""
    blob = bytes(range(256)) * (size // 256 + 1)
    for target, anchor in ((None, None), (blob[:32], blob[1:33])):
        fields = [
            b"dataitem",
            b"1",
            str(sig_type).encode(),
            blob[:size],
            target or b"",
            anchor or b"",
            blob[:7],
            blob[:size],
        ]
        assert _signature_data(sig_type, blob[:size], target, anchor, blob[:7], blob[:size]) == deep_hash(fields)


@pytest.mark.parametrize("value_size", [1, 900, 3000])  # tag bytes remembered (<= 1 KiB) and not
def test_remembered_tags_read_and_hash_as_decoded(ed_wallet: Wallet, value_size: int) -> None:
    """Items sharing their tag bytes read the same tags and deep hash as the bytes decoded afresh, and
    verify (the remembered tags and their hash are those of these exact bytes); a bad copy is refused
    every time, never remembered."""
    tags = [("Action", "Eval"), ("Long", "v" * value_size)]
    items = [build_and_sign(ed_wallet, data=f"item {i}", tags=tags) for i in range(3)]
    for built in items:
        parsed = DataItem.parse(built.raw)
        assert list(parsed.tags) == decode_tags(parsed.raw_tags) == tags
        fields = [b"dataitem", b"1", b"2", parsed.owner, b"", b"", parsed.raw_tags, parsed.data]
        assert parsed.signature_data() == deep_hash(fields) and parsed.verify()
    bad = items[0].raw.replace(b"Eval", b"\xffval")
    for _ in range(2):
        with pytest.raises(BadInput, match="not UTF-8"):
            DataItem.parse(bad)
