"""ANS-104 data items: the signed envelope every AO client (aoconnect, arbundles) sends.

Layout (integers little-endian), as arbundles writes it:
  u16 signature type | signature | owner | target presence byte (+32 bytes) |
  anchor presence byte (+32 bytes) | u64 tag count | u64 tag bytes | Avro tags | data (to the end)
Signature lengths and owner lengths depend on the type (see `crypto.KEY_LENGTHS`).

What is signed is the Arweave deep hash (SHA-384) of
  ["dataitem", "1", str(signature type), owner, target, anchor, raw Avro tag bytes, data]
with absent target/anchor as empty byte strings. This is what arbundles and HyperBEAM sign; the
spec's prose (tags as a nested list, no signature type) does not match any deployed signer.

Conversion to `Message` (see `to_message`): owner and From are the signer's address; target is
base64url; anchor and data are text when they are valid UTF-8, otherwise base64url of the bytes.
The exact bytes are always kept in `raw`, so no information is lost by that choice.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aonode.engine import crypto
from aonode.engine.crypto import KEY_LENGTHS, Wallet, address_of, b64url_decode, b64url_encode
from aonode.engine.errors import BadInput

if TYPE_CHECKING:
    from aonode.engine.message import Message

Tag = tuple[str, str]

# ANS-104 §2.1 tag limits; arbundles also refuses more than 4096 bytes of encoded tags, so we never
# build such an item (other peers could not verify it), but accept one when parsing.
MAX_TAGS = 128
MAX_TAG_NAME = 1024
MAX_TAG_VALUE = 3072
MAX_BUILT_TAG_BYTES = 4096
ID_LENGTH = 32
_VARINT_MAX_BYTES = 10


# -- Avro: an array of records {name: string, value: string}, zigzag varint lengths ---------------


def _write_long(out: bytearray, n: int) -> None:
    zz = (n << 1) ^ (n >> 63)
    while True:
        byte = zz & 0x7F
        zz >>= 7
        if zz:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode_tags(tags: Sequence[Tag]) -> bytes:
    """Avro bytes for `tags`: one block with all tags, then the 0 terminator; empty for no tags."""
    if not tags:
        return b""
    out = bytearray()
    _write_long(out, len(tags))
    for name, value in tags:
        for text in (name, value):
            raw = text.encode("utf-8")
            _write_long(out, len(raw))
            out += raw
    _write_long(out, 0)
    return bytes(out)


class _AvroReader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def long(self) -> int:
        if self.pos < len(self.buf) and self.buf[self.pos] < 0x80:  # one byte: lengths under 64, counts
            byte = self.buf[self.pos]
            self.pos += 1
            return (byte >> 1) ^ -(byte & 1)
        zz = shift = 0
        for _ in range(_VARINT_MAX_BYTES):
            if self.pos >= len(self.buf):
                raise BadInput("bad tag Avro: truncated varint")
            byte = self.buf[self.pos]
            self.pos += 1
            zz |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return (zz >> 1) ^ -(zz & 1)
        raise BadInput("bad tag Avro: varint longer than 10 bytes")

    def text(self, what: str, limit: int) -> str:
        size = self.long()
        if size < 0 or self.pos + size > len(self.buf):
            raise BadInput(f"bad tag Avro: {what} length {size} runs past the tag bytes")
        if size > limit:
            raise BadInput(f"tag {what} is {size} bytes (at most {limit})")
        raw = self.buf[self.pos : self.pos + size]
        self.pos += size
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadInput(f"tag {what} is not UTF-8") from err


def decode_tags(raw: bytes) -> list[Tag]:
    """Parse Avro tag bytes; every byte must belong to the array (no trailing garbage)."""
    if not raw:
        return []
    reader = _AvroReader(raw)
    tags: list[Tag] = []
    while True:
        count = reader.long()
        if count == 0:
            break
        if count < 0:  # a block with a byte size: skip the size, read |count| items
            count = -count
            reader.long()
        if len(tags) + count > MAX_TAGS:
            raise BadInput(f"more than {MAX_TAGS} tags")
        for _ in range(count):
            name = reader.text("name", MAX_TAG_NAME)
            value = reader.text("value", MAX_TAG_VALUE)
            if not name:
                raise BadInput("a tag has an empty name")
            tags.append((name, value))
    if reader.pos != len(raw):
        raise BadInput(f"bad tag Avro: {len(raw) - reader.pos} trailing bytes after the tag array")
    return tags


# -- Arweave deep hash (SHA-384) ---------------------------------------------------------------------


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def deep_hash(chunk: bytes | Sequence[object]) -> bytes:
    """Arweave 2.0 deep hash: blobs tagged with their length, lists folded left with their count."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        blob = bytes(chunk)
        return _sha384(_sha384(b"blob" + str(len(blob)).encode()) + _sha384(blob))
    acc = _sha384(b"list" + str(len(chunk)).encode())
    for item in chunk:
        acc = _sha384(acc + deep_hash(item))  # type: ignore[arg-type]
    return acc


@functools.lru_cache(maxsize=256)
def _length_tag(kind: bytes, size: int) -> bytes:
    """sha384(b"blob<size>") or sha384(b"list<size>"): an item's field sizes repeat (keys, ids, empty)."""
    return hashlib.sha384(kind + str(size).encode()).digest()


@functools.lru_cache(maxsize=16)
def _constant_blob(blob: bytes) -> bytes:
    return deep_hash(blob)


def _blob_hash(blob: bytes) -> bytes:
    """deep_hash(blob), with its length tag's hash remembered."""
    return hashlib.sha384(_length_tag(b"blob", len(blob)) + hashlib.sha384(blob).digest()).digest()


# An owner's key signs many items: its blob hash and address are made once per key (by its exact bytes).
_owner_hash = functools.lru_cache(maxsize=1024)(_blob_hash)
_owner_address = functools.lru_cache(maxsize=1024)(address_of)
# A client's items often carry the same tags (its SDK's, the action's): short tag bytes are decoded and
# hashed once per exact bytes (decode + hash were ~10% of a worker's item check); longer ones each time.
MAX_REMEMBERED_TAGS = 1024
_tags_hash = functools.lru_cache(maxsize=256)(_blob_hash)


@functools.lru_cache(maxsize=256)
def _remembered_tags(raw: bytes) -> tuple[Tag, ...]:
    return tuple(decode_tags(raw))


def _signature_data(
    signature_type: int, owner: bytes, target: bytes | None, anchor: bytes | None, raw_tags: bytes, data: bytes
) -> bytes:
    """deep_hash([b"dataitem", b"1", type, owner, target, anchor, tags, data]) folded in place: the
    constant fields' hashes and the length tags are remembered (deep_hash made 33 SHA-384 calls an item
    in Python; this is on every signed message's ingest path). tests/test_ans104.py compares the two."""
    acc = _length_tag(b"list", 8)
    for part in (
        _constant_blob(b"dataitem"),
        _constant_blob(b"1"),
        _constant_blob(str(signature_type).encode()),
        _owner_hash(owner),
        _blob_hash(target or b""),
        _blob_hash(anchor or b""),
        _tags_hash(raw_tags) if len(raw_tags) <= MAX_REMEMBERED_TAGS else _blob_hash(raw_tags),
        _blob_hash(data),
    ):
        acc = hashlib.sha384(acc + part).digest()
    return acc


# -- the item ----------------------------------------------------------------------------------------


def _text_or_b64(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return b64url_encode(raw)


@dataclass(frozen=True)
class DataItem:
    """A parsed (or freshly built) data item; `raw` is the exact wire bytes the signature covers."""

    signature_type: int
    signature: bytes
    owner: bytes
    target: bytes | None
    anchor: bytes | None
    tags: tuple[Tag, ...]
    data: bytes
    raw: bytes = field(repr=False)
    raw_tags: bytes = field(repr=False, default=b"")

    @property
    def id(self) -> str:
        return b64url_encode(hashlib.sha256(self.signature).digest())

    @property
    def signer_address(self) -> str:
        return address_of(self.owner)

    def signature_data(self) -> bytes:
        """The deep hash the owner signed."""
        return _signature_data(self.signature_type, self.owner, self.target, self.anchor, self.raw_tags, self.data)

    def verify(self) -> bool:
        return crypto.verify(self.signature_type, self.owner, self.signature_data(), self.signature)

    def tag(self, name: str) -> str | None:
        """First value of a tag, name compared case-insensitively (as AO compares tag names)."""
        wanted = name.lower()
        return next((v for k, v in self.tags if k.lower() == wanted), None)

    @classmethod
    def parse(cls, raw: bytes) -> DataItem:
        """Parse wire bytes; BadInput names the first field that is malformed. Does not verify."""
        raw = bytes(raw)
        cur = _Cursor(raw)
        sig_type = int.from_bytes(cur.take(2, "signature type"), "little")
        if sig_type not in KEY_LENGTHS:
            raise BadInput(f"unsupported signature type {sig_type}")
        owner_len, sig_len = KEY_LENGTHS[sig_type]
        signature = cur.take(sig_len, "signature")
        owner = cur.take(owner_len, "owner")
        target = cur.optional(ID_LENGTH, "target")
        anchor = cur.optional(ID_LENGTH, "anchor")
        tag_count = int.from_bytes(cur.take(8, "tag count"), "little")
        tag_bytes = int.from_bytes(cur.take(8, "tag byte length"), "little")
        if tag_count > MAX_TAGS:
            raise BadInput(f"item declares {tag_count} tags (at most {MAX_TAGS})")
        raw_tags = cur.take(tag_bytes, "tags")
        tags = _remembered_tags(raw_tags) if len(raw_tags) <= MAX_REMEMBERED_TAGS else tuple(decode_tags(raw_tags))
        if len(tags) != tag_count:
            raise BadInput(f"item declares {tag_count} tags but its tag bytes hold {len(tags)}")
        return cls(
            signature_type=sig_type,
            signature=signature,
            owner=owner,
            target=target,
            anchor=anchor,
            tags=tags,
            data=raw[cur.pos :],
            raw=raw,
            raw_tags=raw_tags,
        )

    def to_message(self) -> Message:
        """The node's Message for this item (see the module docstring for the encoding choices)."""
        from aonode.engine.message import Message

        address = _owner_address(self.owner)
        return Message(
            id=self.id,
            owner=address,
            from_=address,
            target=b64url_encode(self.target) if self.target is not None else None,
            anchor=_text_or_b64(self.anchor) if self.anchor is not None else None,
            tags=self.tags,
            data=_text_or_b64(self.data),
            signature=b64url_encode(self.signature),
            raw=self.raw,
        )


class _Cursor:
    """Sequential reader that reports which field ran out of bytes."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.raw):
            raise BadInput(
                f"data item truncated: {what} needs {size} bytes at offset {self.pos}, {len(self.raw) - self.pos} left"
            )
        out = self.raw[self.pos : self.pos + size]
        self.pos += size
        return out

    def optional(self, size: int, what: str) -> bytes | None:
        flag = self.take(1, f"{what} presence byte")[0]
        if flag == 0:
            return None
        if flag != 1:
            raise BadInput(f"{what} presence byte is {flag} (must be 0 or 1)")
        return self.take(size, what)


def _field_bytes(value: str | bytes | None, what: str, *, text_is_b64: bool) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = b64url_decode(value) if text_is_b64 else value.encode("utf-8")
    if len(value) != ID_LENGTH:
        raise BadInput(f"{what} must be {ID_LENGTH} bytes, got {len(value)}")
    return bytes(value)


def _check_tags(tags: Sequence[Tag]) -> tuple[Tag, ...]:
    out = tuple((name, value) for name, value in tags)
    if len(out) > MAX_TAGS:
        raise BadInput(f"{len(out)} tags (at most {MAX_TAGS})")
    for name, value in out:
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise BadInput(f"tag {name!r} must have a non-empty string name and a string value")
        if len(name.encode()) > MAX_TAG_NAME or len(value.encode()) > MAX_TAG_VALUE:
            raise BadInput(f"tag {name[:40]!r} exceeds {MAX_TAG_NAME}/{MAX_TAG_VALUE} bytes")
    return out


def build_and_sign(
    wallet: Wallet,
    *,
    data: bytes | str,
    tags: Sequence[Tag] = (),
    target: str | bytes | None = None,
    anchor: str | bytes | None = None,
) -> DataItem:
    """Build and sign an item byte-for-byte the way arbundles `createData` + `sign` lays it out.

    `target` is a base64url id (or 32 raw bytes); `anchor` is 32 bytes, or a 32-byte UTF-8 string
    as aoconnect passes it.
    """
    checked = _check_tags(tags)
    raw_tags = encode_tags(checked)
    if len(raw_tags) > MAX_BUILT_TAG_BYTES:
        raise BadInput(f"tags encode to {len(raw_tags)} bytes (at most {MAX_BUILT_TAG_BYTES})")
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    target_b = _field_bytes(target, "target", text_is_b64=True)
    anchor_b = _field_bytes(anchor, "anchor", text_is_b64=False)
    owner = wallet.owner
    sig_type = wallet.signature_type
    signature = wallet.sign(_signature_data(sig_type, owner, target_b, anchor_b, raw_tags, payload))
    raw = b"".join(
        [
            struct.pack("<H", sig_type),
            signature,
            owner,
            b"\x01" + target_b if target_b is not None else b"\x00",
            b"\x01" + anchor_b if anchor_b is not None else b"\x00",
            struct.pack("<QQ", len(checked), len(raw_tags)),
            raw_tags,
            payload,
        ]
    )
    return DataItem(
        signature_type=sig_type,
        signature=signature,
        owner=owner,
        target=target_b,
        anchor=anchor_b,
        tags=checked,
        data=payload,
        raw=raw,
        raw_tags=raw_tags,
    )
