"""The AO message every layer passes around, and its three wire shapes (legacy JSON, flat map, CBOR).

A message is immutable so a scheduled message can never change under the devices that evaluate it.
Unsigned messages get a content id (sha256 of canonical CBOR) so the same content always has the
same id, which is what makes scheduling idempotent and replays comparable.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import cbor2

from aonode.engine.errors import BadInput, DamagedRecord
from aonode.engine.message_bytes import (
    NINE_ENTRIES,
    SUM_KEY,
    TEN_ENTRIES,
    fields_sum_matches,
    own_id,
)

Tags = tuple[tuple[str, str], ...]

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
# Keys of a flat map that are message fields, not tags (compared lowercased).
_FLAT_FIELDS = {"data", "target", "anchor", "id", "from", "owner"}


def b64url(raw: bytes) -> str:
    """Unpadded base64url, the encoding of every AO id and address."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of `b64url`; accepts padded or unpadded input, rejects anything else."""
    if not isinstance(text, str) or not _B64URL.match(text.rstrip("=")):
        raise BadInput(f"not base64url: {text!r:.60}")
    stripped = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as err:
        raise BadInput(f"not base64url: {text!r:.60}") from err


def is_id(text: object) -> bool:
    """True for a 43-character base64url string (a 32-byte id or address)."""
    return isinstance(text, str) and len(text) == 43 and bool(_B64URL.match(text))


def _check_str(value: object, what: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string, got {type(value).__name__}")
    return value


def _normalize_tags(tags: object) -> Tags:
    """Accept pairs, {name, value} dicts or a mapping; always return an ordered tuple of str pairs."""
    if isinstance(tags, Mapping):
        items: Iterable[object] = list(tags.items())
    elif isinstance(tags, (list, tuple)):
        items = tags
    else:
        raise BadInput(f"Tags must be a list of {{name, value}}, got {type(tags).__name__}")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if "name" not in item or "value" not in item:
                raise BadInput(f"Tags[{i}] must have 'name' and 'value'")
            name, value = item["name"], item["value"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            name, value = item
        else:
            raise BadInput(f"Tags[{i}] must be {{name, value}}, got {type(item).__name__}")
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadInput(f"Tags[{i}] name and value must be strings")
        if not name:
            raise BadInput(f"Tags[{i}] has an empty name")
        out.append((name, value))
    return tuple(out)


def _plain_tags(tags: object) -> Tags | None:
    """The stored form's tags, [[name, value], ...] (str, a name never empty), as Tags without
    _normalize_tags' generic checks per tag (a worker's message is decoded at every schedule); None for
    any other shape, which goes the generic way."""
    if type(tags) is not list:
        return None
    out: list[tuple[str, str]] = []
    for tag in tags:
        if type(tag) is not list or len(tag) != 2:
            return None
        name, value = tag
        if type(name) is not str or type(value) is not str or not name:
            return None
        out.append((name, value))
    return tuple(out)


def content_id(
    owner: str, target: str | None, anchor: str | None, tags: Tags, data: str, nonce: str | int | None = None
) -> str:
    """The id of an unsigned message: base64url(sha256(canonical CBOR of its content))."""
    body = [owner, target, anchor, [list(t) for t in tags], data, nonce]
    return b64url(hashlib.sha256(cbor2.dumps(body, canonical=True)).digest())


_READ_FROM = "_read_from"  # Message.__dict__ key: the checked stored form it was read from


@dataclass(frozen=True)
class Message:
    """An AO message. `from_` is the `From` AOS sees: the owner, or the `From-Process` the node set."""

    id: str
    owner: str
    from_: str
    target: str | None = None
    anchor: str | None = None
    tags: Tags = ()
    data: str = ""
    signature: str | None = None
    raw: bytes | None = None

    def tag(self, name: str, default: str | None = None) -> str | None:
        """Value of the first tag named `name`, compared case-insensitively (AO tags are)."""
        return self._first_tags.get(name.lower(), default)

    @functools.cached_property
    def _first_tags(self) -> dict[str, str]:
        """Lowercased name -> first value, made once: a process's definition is asked for its
        Module, Passes, Cache-Frequency, ... at every slot it computes."""
        first: dict[str, str] = {}
        for key, value in self.tags:
            first.setdefault(key.lower(), value)
        return first

    def with_tags(self, **extra: str) -> Message:
        """A copy with tags set: an existing tag keeps its position, a new one is appended.

        The id is kept: these are node-side annotations (e.g. `From-Process`), not new content.
        Use `with_tags(**{"From-Process": pid})` for names that are not identifiers.
        """
        tags = list(self.tags)
        for name, value in extra.items():
            _check_str(value, f"tag {name}")
            lowered = name.lower()
            positions = [i for i, (k, _) in enumerate(tags) if k.lower() == lowered]
            if positions:
                tags[positions[0]] = (tags[positions[0]][0], value)
                for i in reversed(positions[1:]):
                    del tags[i]
            else:
                tags.append((name, value))
        return dataclasses.replace(self, tags=tuple(tags))

    def replace(self, **changes: Any) -> Message:
        """A copy with fields changed (tags are normalized)."""
        if "tags" in changes:
            changes["tags"] = _normalize_tags(changes["tags"])
        return dataclasses.replace(self, **changes)

    @classmethod
    def create(
        cls,
        *,
        owner: str,
        target: str | None = None,
        anchor: str | None = None,
        tags: object = (),
        data: str = "",
        from_: str | None = None,
        nonce: str | int | None = None,
    ) -> Message:
        """An unsigned message with a content id; `nonce` makes otherwise equal messages distinct."""
        _check_str(owner, "Owner")
        _check_str(target, "Target", optional=True)
        _check_str(anchor, "Anchor", optional=True)
        _check_str(data, "Data")
        _check_str(from_, "From", optional=True)
        if nonce is not None and (isinstance(nonce, bool) or not isinstance(nonce, (str, int))):
            raise BadInput("nonce must be a string or an integer")
        norm = _normalize_tags(tags)
        mid = content_id(owner, target, anchor, norm, data, nonce)
        return cls(id=mid, owner=owner, from_=from_ or owner, target=target, anchor=anchor, tags=norm, data=data)

    @classmethod
    def from_legacy_json(cls, obj: object, *, owner: str) -> Message:
        """The AOS/aoconnect shape: {Target, Anchor, Tags: [{name, value}], Data, Id?, From?}."""
        if not isinstance(obj, Mapping):
            raise BadInput(f"message must be a JSON object, got {type(obj).__name__}")
        target = _check_str(obj.get("Target"), "Target", optional=True)
        anchor = _check_str(obj.get("Anchor"), "Anchor", optional=True)
        data = obj.get("Data", "")
        data = "" if data is None else _check_str(data, "Data") or ""
        tags = _normalize_tags(obj.get("Tags") or [])
        frm = _check_str(obj.get("From"), "From", optional=True)
        mid = obj.get("Id")
        if mid is not None and not is_id(mid):
            raise BadInput("Id must be a 43-character base64url string")
        msg = cls.create(owner=owner, target=target, anchor=anchor, tags=tags, data=data, from_=frm)
        return msg if mid is None else dataclasses.replace(msg, id=mid)

    @classmethod
    def from_flat(cls, obj: object, *, owner: str) -> Message:
        """A flat map (HTTP form or JSON body): every key is a tag except data/target/anchor/id/from."""
        if not isinstance(obj, Mapping):
            raise BadInput(f"message must be a map, got {type(obj).__name__}")
        fields: dict[str, object] = {}
        tags: list[tuple[str, str]] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise BadInput("message keys must be strings")
            if key.lower() in _FLAT_FIELDS:
                fields[key.lower()] = value
            else:
                tags.append((key, _check_str(value, f"tag {key}")))  # type: ignore[arg-type]
        legacy = {
            "Target": fields.get("target"),
            "Anchor": fields.get("anchor"),
            "Data": fields.get("data", ""),
            "Tags": tags,
        }
        if fields.get("id") is not None:
            legacy["Id"] = fields["id"]
        if fields.get("from") is not None:
            legacy["From"] = fields["from"]
        return cls.from_legacy_json(legacy, owner=owner)

    def to_legacy_json(self) -> dict[str, Any]:
        """The shape AOS expects in `handle` and aoconnect returns."""
        return {
            "Id": self.id,
            "From": self.from_,
            "Owner": self.owner,
            "Target": self.target,
            "Anchor": self.anchor,
            "Tags": [{"name": k, "value": v} for k, v in self.tags],
            "Data": self.data,
        }

    def to_cbor(self) -> bytes:
        """Lossless storage form (keeps signature and raw data item bytes), with `sum`: the sha256 of
        the other fields' canonical CBOR, so a damaged or edited row is found when it is read. A message
        read back by `from_cbor` gives the bytes it was read from (checked against their `sum`): an ingest
        worker's message is stored as the worker encoded it, not decoded and encoded again."""
        read_from = self.__dict__.get(_READ_FROM)
        if read_from is not None:
            return bytes(read_from)
        # Canonical CBOR orders a map's keys by length, then bytes: "id", "raw" come before "sum", the
        # other fields after it. So the map of the fields and the map with "sum" share their entries:
        # each field is encoded once, and the two maps are those entries under their headers (9, 10).
        first = memoryview(cbor2.dumps({"id": self.id, "raw": self.raw}, canonical=True))[1:]
        rest = memoryview(
            cbor2.dumps(
                {
                    "owner": self.owner,
                    "from": self.from_,
                    "target": self.target,
                    "anchor": self.anchor,
                    "tags": [list(t) for t in self.tags],
                    "data": self.data,
                    "signature": self.signature,
                },
                canonical=True,
            )
        )[1:]
        digest = hashlib.sha256(NINE_ENTRIES)
        digest.update(first)
        digest.update(rest)
        return b"".join((TEN_ENTRIES, first, SUM_KEY, digest.digest(), rest))

    @classmethod
    def from_cbor(cls, raw: bytes, where: str = "stored message") -> Message:
        """The stored form back; DamagedRecord (naming `where`) when it does not decode or its
        bytes do not match their `sum` (rows written before `sum` existed are taken as they are).
        Bytes an ingest worker made with to_cbor are checked on the bytes instead: from_own_cbor."""
        obj = _loads(raw, where)
        digest = obj.pop("sum", None)
        plain_tags = _plain_tags(obj.get("tags"))
        if digest is not None and not fields_sum_matches(obj, digest, plain_tags is not None):
            raise DamagedRecord(
                f"{where} (id {obj.get('id')!r:.60}) is damaged or was edited: its bytes do not match their checksum"
            )
        msg = cls(**_fields(obj, plain_tags, where))
        if digest is not None:  # the canonical form to_cbor would make again (a frozen instance's own memo)
            msg.__dict__[_READ_FROM] = raw
        return msg


def _loads(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = cbor2.loads(raw)
    except Exception as err:  # cbor2 raises several decoder error types
        raise DamagedRecord(f"{where} is damaged: not CBOR ({err})") from err
    if not isinstance(obj, dict) or not {"id", "owner", "from"} <= obj.keys():
        raise DamagedRecord(f"{where} is damaged: it lacks id/owner/from")
    return obj


def _fields(obj: dict[str, Any], plain_tags: Tags | None, where: str) -> dict[str, Any]:
    """Message's fields from the decoded stored form; DamagedRecord naming `where` for a bad one."""
    try:
        return {
            "id": obj["id"],
            "owner": obj["owner"],
            "from_": obj["from"],
            "target": obj.get("target"),
            "anchor": obj.get("anchor"),
            "tags": plain_tags if plain_tags is not None else _normalize_tags(obj.get("tags") or []),
            "data": obj.get("data", ""),
            "signature": obj.get("signature"),
            "raw": obj.get("raw"),
        }
    except BadInput as err:
        raise DamagedRecord(f"{where} is damaged: {err}") from err


def from_own_cbor(raw: bytes, where: str) -> Message:
    """Bytes this node's own code made with to_cbor (an ingest worker's message): `from_cbor(raw, where)`, but
    when they have to_cbor's layout and their sum matches (own_id), a Message whose fields are decoded only
    when first read (the schedule path reads its id and stores these bytes; a compute
    decodes them later, off the sequencer's path). The same Message in every way but its type until then."""
    mid = own_id(raw)
    if mid is None:
        return Message.from_cbor(raw, where)  # not to_cbor's layout, or a sum that does not match
    msg = cast(Message, object.__new__(_Undecoded))
    msg.__dict__.update({"id": mid, _READ_FROM: raw, _WHERE: where})
    return msg


def held_bytes(msg: Message) -> int:
    """About how much memory a message holds (its stored bytes when it was read from them), without
    decoding one that is not yet (from_own_cbor); the same number for a message all along."""
    read_from = msg.__dict__.get(_READ_FROM)
    return len(read_from) if read_from is not None else len(msg.data) + len(msg.raw or b"")


_WHERE = "_where"  # an undecoded message's description for DamagedRecord


def _decode_now(msg: Message) -> None:
    """An undecoded message's fields decoded into it; from then on it is a plain Message."""
    if type(msg) is Message:
        return
    raw = msg.__dict__[_READ_FROM]
    obj = _loads(raw, msg.__dict__[_WHERE])
    obj.pop("sum", None)
    msg.__dict__.update(_fields(obj, _plain_tags(obj.get("tags")), msg.__dict__[_WHERE]))
    object.__setattr__(msg, "__class__", Message)


def _decoding(name: str) -> property:
    def get(msg: Message) -> Any:
        _decode_now(msg)
        return msg.__dict__[name]

    return property(get)


def _eq(msg: Message, other: object) -> bool:
    _decode_now(msg)
    return msg == other


def _hash(msg: Message) -> int:
    _decode_now(msg)
    return hash(msg)


def _repr(msg: Message) -> str:
    _decode_now(msg)
    return repr(msg)


# A Message whose fields but its id are properties that decode them all at the first read (from_own_cbor).
_Undecoded = type(
    "_Undecoded",
    (Message,),
    {
        **{f.name: _decoding(f.name) for f in dataclasses.fields(Message) if f.name != "id"},
        "__eq__": _eq,
        "__hash__": _hash,
        "__repr__": _repr,
        "__slots__": (),
    },
)
