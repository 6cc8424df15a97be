"""Message ids, the three wire forms and input validation."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

import cbor2
import pytest

from aonode.engine.errors import BadInput, DamagedRecord
from aonode.engine.message import (
    Message,
    b64url,
    b64url_decode,
    content_id,
    from_own_cbor,
    held_bytes,
    is_id,
)
from aonode.engine.message_bytes import own_id

OWNER = b64url(hashlib.sha256(b"owner").digest())
TARGET = b64url(hashlib.sha256(b"process").digest())


def make(**kw) -> Message:
    base = dict(owner=OWNER, target=TARGET, tags=[("Action", "Eval")], data="1 + 1")
    base.update(kw)
    return Message.create(**base)


def test_b64url_round_trip_and_rejects_garbage():
    for raw in (b"", b"\x00", bytes(range(32)), b"\xff" * 33):
        assert b64url_decode(b64url(raw)) == raw
        assert "=" not in b64url(raw)
    with pytest.raises(BadInput):
        b64url_decode("not base64!")


def test_ids_are_stable_43_chars_and_content_sensitive():
    a, b = make(), make()
    assert a.id == b.id and is_id(a.id) and len(b64url_decode(a.id)) == 32
    variants = [
        make(data="1 + 2"),
        make(tags=[("Action", "Other")]),
        make(target=None),
        make(anchor="00000001"),
        make(nonce=1),
        make(nonce="1"),
        make(owner=TARGET),
        make(tags=[("Action", "Eval"), ("X", "y")]),
    ]
    ids = {a.id} | {m.id for m in variants}
    assert len(ids) == len(variants) + 1
    # tag order is content: swapping two tags changes the id
    assert make(tags=[("A", "1"), ("B", "2")]).id != make(tags=[("B", "2"), ("A", "1")]).id


def test_id_is_sha256_of_canonical_cbor():
    import cbor2

    m = make()
    body = [OWNER, TARGET, None, [["Action", "Eval"]], "1 + 1", None]
    expected = b64url(hashlib.sha256(cbor2.dumps(body, canonical=True)).digest())
    assert m.id == expected == content_id(OWNER, TARGET, None, m.tags, m.data)


def test_tag_lookup_is_case_insensitive_first_match():
    m = make(tags=[("Action", "Eval"), ("action", "Second")])
    assert m.tag("ACTION") == "Eval"
    assert m.tag("missing") is None and m.tag("missing", "d") == "d"


def test_with_tags_sets_in_place_and_keeps_id():
    m = make(tags=[("Action", "Eval"), ("Type", "Message"), ("action", "dup")])
    m2 = m.with_tags(action="Transfer", **{"From-Process": TARGET})
    assert m2.tags == (("Action", "Transfer"), ("Type", "Message"), ("From-Process", TARGET))
    assert m2.id == m.id and m.tag("Action") == "Eval"  # original untouched


def test_legacy_json_round_trip():
    m = make(anchor="00000001", from_=TARGET)
    obj = m.to_legacy_json()
    assert obj == {
        "Id": m.id,
        "From": TARGET,
        "Owner": OWNER,
        "Target": TARGET,
        "Anchor": "00000001",
        "Tags": [{"name": "Action", "value": "Eval"}],
        "Data": "1 + 1",
    }
    assert Message.from_legacy_json(obj, owner=OWNER) == m
    # without Id the id is computed, and From defaults to the owner
    bare = {"Target": TARGET, "Tags": [{"name": "Action", "value": "Eval"}], "Data": "1 + 1"}
    parsed = Message.from_legacy_json(bare, owner=OWNER)
    assert parsed.id == make().id and parsed.from_ == OWNER


def test_flat_round_trip():
    flat = {"Action": "Eval", "Target": TARGET, "data": "1 + 1", "Type": "Message"}
    m = Message.from_flat(flat, owner=OWNER)
    assert m.target == TARGET and m.data == "1 + 1"
    assert m.tags == (("Action", "Eval"), ("Type", "Message"))
    assert m.id == make(tags=[("Action", "Eval"), ("Type", "Message")]).id


def test_cbor_round_trip_keeps_signature_and_raw():
    m = make().replace(signature=b64url(b"sig"), raw=b"\x01\x02data-item")
    back = Message.from_cbor(m.to_cbor())
    assert back == m and back.raw == b"\x01\x02data-item"
    with pytest.raises(DamagedRecord):
        Message.from_cbor(b"\xff\x00 not cbor")


def _stored_form(m: Message) -> bytes:
    """The stored form as defined: the fields' canonical CBOR with `sum`, the sha256 of it without `sum`."""
    fields = {
        "id": m.id,
        "owner": m.owner,
        "from": m.from_,
        "target": m.target,
        "anchor": m.anchor,
        "tags": [list(t) for t in m.tags],
        "data": m.data,
        "signature": m.signature,
        "raw": m.raw,
    }
    body = cbor2.dumps(fields, canonical=True)
    return cbor2.dumps({**fields, "sum": hashlib.sha256(body).digest()}, canonical=True)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"target": None, "anchor": None, "tags": []},
        {"tags": [("Ä", "ü" * 300), ("Action", "Eval")] * 20, "data": "x" * 70_000, "anchor": "a" * 32},
        {"signature": b64url(b"s" * 512), "raw": bytes(range(256)) * 300, "id": "i" * 43},
        {"raw": b"", "data": "", "signature": ""},
    ],
)
def test_to_cbor_is_the_canonical_stored_form(kw):
    """to_cbor encodes each field once and splices `sum` in: the same bytes as encoding twice."""
    m = make().replace(**kw)
    assert m.to_cbor() == _stored_form(m)
    assert Message.from_cbor(m.to_cbor()) == m
    # an ingest worker's bytes (to_cbor's): their sum checked on the bytes, the same message and bytes
    assert own_id(m.to_cbor()) is not None
    own = Message.from_cbor(m.to_cbor())
    assert own == m and own.to_cbor() == m.to_cbor()


def test_an_edited_stored_message_is_found_by_its_checksum():
    """Issue 10 item 3: 'Inc' edited to 'Inb' in the stored bytes is a damaged record, not a message."""
    stored = make(tags=[("Action", "Inc")]).to_cbor()
    assert b"Inc" in stored
    with pytest.raises(DamagedRecord, match="checksum"):
        Message.from_cbor(stored.replace(b"Inc", b"Inb"), "process p slot 3")
    with pytest.raises(DamagedRecord, match="checksum"):  # checked on the bytes: found the same
        Message.from_cbor(stored.replace(b"Inc", b"Inb"), "a worker's message")
    for at in range(len(stored)):  # any one byte changed: the bytes' check says no
        changed = bytearray(stored)
        changed[at] ^= 0x01
        assert own_id(bytes(changed)) is None


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"tags": [("Ä", "ü" * 300), ("Action", "Eval")] * 20, "data": "x" * 70_000, "anchor": "a" * 32},
        {"signature": b64url(b"s" * 512), "raw": bytes(range(256)) * 300, "id": "i" * 43},
    ],
)
def test_a_workers_message_is_decoded_when_first_read_and_is_the_same_message(kw):
    """from_own_cbor (the sequencer's): the id and stored bytes without decoding the fields; the first read
    of a field decodes them all, and from then on it is the Message from_cbor gives (equal, same hash,
    repr, copies, pickles)."""
    m = make().replace(**kw)
    blob = m.to_cbor()
    lazy = from_own_cbor(blob, "a worker's message")
    assert type(lazy) is not Message and isinstance(lazy, Message)  # not decoded yet
    assert lazy.id == m.id and lazy.to_cbor() == blob and held_bytes(lazy) == len(blob)
    assert type(lazy) is not Message  # still not: the schedule path reads only these
    assert lazy.tags == m.tags and type(lazy) is Message and lazy == m
    assert held_bytes(lazy) == len(blob)  # the same size whether decoded or not (RecentSchedule's count)
    for read in (lambda x: x == m, lambda x: m == x, hash, repr, lambda x: x.with_tags(X="1"), dataclasses.asdict):
        assert read(from_own_cbor(blob, "w")) == read(Message.from_cbor(blob))
    assert pickle.loads(pickle.dumps(from_own_cbor(blob, "w"))) == m


def test_a_workers_damaged_bytes_are_refused_as_from_cbor_refuses_them():
    """Any one byte of a worker's message changed: from_own_cbor gives what from_cbor gives (the
    same refusal, or the same message where the change left one a stored row may hold), never a lazy one."""
    stored = make(tags=[("Action", "Inc")]).to_cbor()
    for at in range(len(stored)):
        changed = bytearray(stored)
        changed[at] ^= 0x01
        outcomes = []
        for read in (lambda raw: from_own_cbor(raw, "w"), lambda raw: Message.from_cbor(raw, "w")):
            try:
                got = read(bytes(changed))
                outcomes.append((type(got), got))
            except DamagedRecord as err:
                outcomes.append((DamagedRecord, str(err)))
        assert outcomes[0] == outcomes[1], at


def test_own_bytes_in_another_layout_are_checked_as_any_others():
    """Bytes that are not to_cbor's layout (same fields and sum, keys in another order) are not taken on
    the bytes' check: the fields are encoded again, as for a stored row, and a wrong sum is still found."""
    m = make()
    fields = cbor2.loads(m.to_cbor())
    reordered = cbor2.dumps(dict(reversed(list(fields.items()))))
    assert own_id(reordered) is None
    assert Message.from_cbor(reordered) == m
    with pytest.raises(DamagedRecord, match="checksum"):
        Message.from_cbor(cbor2.dumps({**fields, "sum": bytes(32)}))


@pytest.mark.parametrize(
    "bad, needle",
    [
        ([1, 2], "JSON object"),
        ({"Tags": "Action=Eval"}, "Tags"),
        ({"Tags": [{"name": "Action"}]}, "Tags[0]"),
        ({"Tags": [{"name": "Action", "value": 5}]}, "Tags[0]"),
        ({"Data": 42}, "Data"),
        ({"Data": {"nested": 1}}, "Data"),
        ({"Target": 7}, "Target"),
        ({"Id": "short"}, "Id"),
    ],
)
def test_bad_legacy_input_names_the_problem(bad, needle):
    with pytest.raises(BadInput, match=needle.replace("[", r"\[").replace("]", r"\]")):
        Message.from_legacy_json(bad, owner=OWNER)


def test_bad_flat_input():
    with pytest.raises(BadInput, match="map"):
        Message.from_flat("Action=Eval", owner=OWNER)
    with pytest.raises(BadInput, match="tag Action"):
        Message.from_flat({"Action": ["Eval"]}, owner=OWNER)
