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
from typing import Any

import cbor2

from aonode.engine.errors import BadInput, DamagedRecord

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


def _sum_matches(fields: dict[str, Any], digest: bytes, plain_tags: bool) -> bool:
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


def content_id(
    owner: str, target: str | None, anchor: str | None, tags: Tags, data: str, nonce: str | int | None = None
) -> str:
    """The id of an unsigned message: base64url(sha256(canonical CBOR of its content))."""
    body = [owner, target, anchor, [list(t) for t in tags], data, nonce]
    return b64url(hashlib.sha256(cbor2.dumps(body, canonical=True)).digest())


_READ_FROM = "_read_from"  # Message.__dict__ key: the checked stored form it was read from


_NINE_ENTRIES, _TEN_ENTRIES = b"\xa9", b"\xaa"  # CBOR map heads (to_cbor)
_SUM_KEY = b"\x63sum\x58\x20"  # "sum" and the head of its 32-byte value
_ID_KEY, _RAW_KEY, _NULL = b"\x62id", b"\x63raw", b"\xf6"


def _skip_string(raw: bytes, at: int, major: int) -> int:
    """Where the CBOR byte or text string (`major` 2 or 3) at `at` ends; -1 when there is none."""
    if at >= len(raw) or raw[at] >> 5 != major:
        return -1
    info = raw[at] & 31
    if info < 24:
        return at + 1 + info
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if width is None:
        return -1
    return at + 1 + width + int.from_bytes(raw[at + 1 : at + 1 + width], "big")


def sum_of_bytes_matches(raw: bytes) -> bool:
    """True when `raw` has to_cbor's layout (10 entries: id, raw, sum, then the rest) and its `sum` is the
    sha256 of the bytes of the other entries under a 9-entry head: what to_cbor computes. A check on the
    bytes alone (a sha256: a few us, vs ~20 to encode the fields again): for bytes this node's own code encoded (an
    ingest worker's, server/sequencer_socket.py), where the encoding is to_cbor's by construction."""
    if raw[:1] != _TEN_ENTRIES or raw[1:4] != _ID_KEY:
        return False
    at = _skip_string(raw, 4, 3)
    if at < 0 or raw[at : at + 4] != _RAW_KEY:
        return False
    at += 4
    at = at + 1 if raw[at : at + 1] == _NULL else _skip_string(raw, at, 2)
    if at < 0 or raw[at : at + len(_SUM_KEY)] != _SUM_KEY:
        return False
    digest_at = at + len(_SUM_KEY)
    digest = hashlib.sha256(_NINE_ENTRIES)
    digest.update(memoryview(raw)[1:at])
    digest.update(memoryview(raw)[digest_at + 32 :])
    return len(raw) >= digest_at + 32 and digest.digest() == raw[digest_at : digest_at + 32]


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
        digest = hashlib.sha256(_NINE_ENTRIES)
        digest.update(first)
        digest.update(rest)
        return b"".join((_TEN_ENTRIES, first, _SUM_KEY, digest.digest(), rest))

    @classmethod
    def from_cbor(cls, raw: bytes, where: str = "stored message", own: bool = False) -> Message:
        """The stored form back; DamagedRecord (naming `where`) when it does not decode or its
        bytes do not match their `sum` (rows written before `sum` existed are taken as they are).
        `own`: bytes this node's own code made with to_cbor (an ingest worker's), whose sum is checked on
        the bytes (sum_of_bytes_matches); bytes not in that layout are checked as any others."""
        try:
            obj = cbor2.loads(raw)
        except Exception as err:  # cbor2 raises several decoder error types
            raise DamagedRecord(f"{where} is damaged: not CBOR ({err})") from err
        if not isinstance(obj, dict) or not {"id", "owner", "from"} <= obj.keys():
            raise DamagedRecord(f"{where} is damaged: it lacks id/owner/from")
        digest = obj.pop("sum", None)
        plain_tags = _plain_tags(obj.get("tags"))
        checked = own and digest is not None and sum_of_bytes_matches(raw)
        if digest is not None and not checked and not _sum_matches(obj, digest, plain_tags is not None):
            raise DamagedRecord(
                f"{where} (id {obj.get('id')!r:.60}) is damaged or was edited: its bytes do not match their checksum"
            )
        try:
            msg = cls(
                id=obj["id"],
                owner=obj["owner"],
                from_=obj["from"],
                target=obj.get("target"),
                anchor=obj.get("anchor"),
                tags=plain_tags if plain_tags is not None else _normalize_tags(obj.get("tags") or []),
                data=obj.get("data", ""),
                signature=obj.get("signature"),
                raw=obj.get("raw"),
            )
        except BadInput as err:
            raise DamagedRecord(f"{where} is damaged: {err}") from err
        if digest is not None:  # the canonical form to_cbor would make again (a frozen instance's own memo)
            msg.__dict__[_READ_FROM] = raw
        return msg
