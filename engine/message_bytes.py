"""A stored message's bytes read without decoding them: Message.to_cbor's layout, its `sum`, its id.

Why: the node schedules an ingest worker's message as the bytes the worker encoded (server/sequencer_socket.py);
the schedule path needs only their id and that they are whole. Checking the `sum` on the bytes is one
sha256 (a few us) where decoding the fields and encoding them again took ~20, and the id is read where
to_cbor put it, so the fields are decoded only when something reads them (engine/message.py from_own_cbor).
Bytes in another layout (rows from before, other encoders) are checked on their decoded fields instead.
"""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2

NINE_ENTRIES, TEN_ENTRIES = b"\xa9", b"\xaa"  # CBOR map heads (to_cbor)
SUM_KEY = b"\x63sum\x58\x20"  # "sum" and the head of its 32-byte value
_ID_KEY, _RAW_KEY, _NULL = b"\x62id", b"\x63raw", b"\xf6"
_WIDTHS = {24: 1, 25: 2, 26: 4, 27: 8}  # a CBOR head's extra bytes by its low 5 bits


def _string_at(raw: bytes, at: int, major: int) -> tuple[int, int]:
    """Where the content of the CBOR byte or text string (`major` 2 or 3) at `at` starts and ends;
    (-1, -1) when there is none."""
    if at >= len(raw) or raw[at] >> 5 != major:
        return -1, -1
    info = raw[at] & 31
    if info < 24:
        return at + 1, at + 1 + info
    width = _WIDTHS.get(info)
    if width is None:
        return -1, -1
    start = at + 1 + width
    return start, start + int.from_bytes(raw[at + 1 : start], "big")


def own_id(raw: bytes) -> str | None:
    """The message id when `raw` has to_cbor's layout (10 entries: id, raw, sum, then the rest) and its
    `sum` is the sha256 of the bytes of the other entries under a 9-entry head (what to_cbor computes);
    None otherwise. A check on the bytes alone, for bytes this node's own code encoded (an ingest
    worker's), where the encoding is to_cbor's by construction."""
    if raw[:1] != TEN_ENTRIES or raw[1:4] != _ID_KEY:
        return None
    id_start, id_end = _string_at(raw, 4, 3)
    at = id_end
    if at < 0 or raw[at : at + 4] != _RAW_KEY:
        return None
    at += 4
    at = at + 1 if raw[at : at + 1] == _NULL else _string_at(raw, at, 2)[1]
    if at < 0 or raw[at : at + len(SUM_KEY)] != SUM_KEY:
        return None
    digest_at = at + len(SUM_KEY)
    if len(raw) < digest_at + 32:
        return None
    view = memoryview(raw)
    digest = hashlib.sha256(NINE_ENTRIES)
    digest.update(view[1:at])
    digest.update(view[digest_at + 32 :])
    if digest.digest() != raw[digest_at : digest_at + 32]:
        return None
    try:
        return str(view[id_start:id_end], "utf-8")
    except UnicodeDecodeError:
        return None


def fields_sum_matches(fields: dict[str, Any], digest: bytes, plain_tags: bool) -> bool:
    """True when `digest` is the sha256 of `fields`' canonical CBOR. Fields decoded from canonical CBOR
    keep its key order, so their plain encoding is the canonical one (made without sorting) when the
    keys are in canonical order and every value encodes one way (no float, no map)."""
    canonical = _plainly_canonical(fields, plain_tags)
    return hashlib.sha256(cbor2.dumps(fields, canonical=not canonical)).digest() == digest


_SCALARS = (str, bytes, int, bool, type(None))
_KEY_ORDERS: dict[tuple[str, ...], bool] = {}  # key tuple -> in canonical order (the few shapes rows have)


def _plainly_canonical(fields: dict[str, Any], plain_tags: bool) -> bool:
    keys = tuple(fields)
    ordered = _KEY_ORDERS.get(keys)
    if ordered is None:
        encoded = [cbor2.dumps(key) for key in keys]
        ordered = encoded == sorted(encoded, key=lambda key: (len(key), key))
        if len(_KEY_ORDERS) < 64:
            _KEY_ORDERS[keys] = ordered
    if not ordered:
        return False
    for key, value in fields.items():
        if type(value) is list:
            if key != "tags" or not plain_tags:  # (tags of str pairs encode one way)
                return False
        elif type(value) not in _SCALARS:
            return False
    return True
