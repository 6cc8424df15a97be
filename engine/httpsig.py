"""httpsig@1.0: AO messages as RFC 9421-signed HTTP requests and responses (HyperBEAM's codec).

A message is its HTTP fields (names lowercased) plus its body; `engine.httpsig_fields` types and
unpacks them, `engine.httpsig_signature` verifies and makes their signatures. A signed message's id
is base64url(sha256(signature)) of its first key-based commitment. `content-digest` (sha-256) binds
the body; when a signature does not cover it, the body is not part of the signed message and is
refused. A digest without a body (aoconnect 0.0.98's `request()` signs the digest of its body and
then sends none, as HyperBEAM accepts) decodes as a message without that body.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_commitments import commit, verify_commitments
from aonode.engine.httpsig_fields import (
    CRLF,
    Atom,
    Fields,
    Value,
    apply_types,
    boundary_of,
    build_multipart,
    encode_value,
    header_safe,
    join_parts,
    parse_multipart,
    parse_types,
    typed_tree,
    types_header,
)
from aonode.engine.httpsig_signature import (
    ED25519,
    HMAC_SHA256,
    RSA_PSS_SHA512,
    Commitment,
    Request,
    check_digest,
    content_digest,
    sign,
    signature_base,
    verify,
)
from aonode.engine.message import Message, b64url

__all__ = [
    "ED25519",
    "HMAC_SHA256",
    "RSA_PSS_SHA512",
    "Atom",
    "Commitment",
    "Decoded",
    "Fields",
    "Request",
    "Value",
    "committed_request",
    "content_digest",
    "decode",
    "encode",
    "sign",
    "signature_base",
    "signed_message",
    "verify",
]

# Fields of the HTTP exchange itself, never keys of the message (unless a signature covers them).
TRANSPORT = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "transfer-encoding",
        "origin",
        "referer",
        "sec-fetch-mode",
        "sec-fetch-site",
        "sec-fetch-dest",
        "keep-alive",
        "te",
        "upgrade",
        "cookie",
        "authorization",
        "expect",
        "priority",
    }
)
# Fields that describe the encoding; they never become keys of the decoded message.
ENCODING = frozenset(
    {"signature", "signature-input", "content-digest", "ao-types", "inline-body-key", "body-keys", "content-type"}
)


# Keys the node sets from the commitment itself; a message's own field of that name is not a tag.
ENVELOPE = frozenset({"from", "owner", "id", "signature", "commitments"})


@dataclass(frozen=True)
class Decoded:
    """A decoded request: its typed fields and the commitments that verified."""

    fields: Fields
    commitments: tuple[Commitment, ...] = ()
    signed_keys: frozenset[str] = field(default_factory=frozenset)
    inner: Decoded | None = None  # the message in `body` with its own commitments (only what they cover)

    @property
    def signer(self) -> Commitment | None:
        return next((c for c in self.commitments if c.committer is not None), None)

    def committed(self) -> Decoded | None:
        """The message a key-based commitment vouches for: the `body` message when its own
        commitments include one (HyperBEAM schedules the body), else this one when signed."""
        if self.inner is not None and self.inner.signer is not None:
            return self.inner
        return self if self.signer is not None else None

    def to_message(self, *, owner: str | None = None) -> Message:
        """The node's Message: `data` (or the body) is Data, `target`/`anchor` are fields, every
        other key is a tag (but `from`, `owner`, `id`: the signer's, never the sender's claim);
        tag names are Title-Cased (HTTP lowercases them, AOS matches `Action`)."""
        signer = self.signer
        if signer is None and owner is None:
            raise BadInput("an unsigned httpsig message needs an owner")
        fields = dict(self.fields)
        data = fields.pop("data", None)
        body = fields.pop("body", None)
        if data is None:
            data = body
        elif body is not None:
            fields["body"] = body
        target = _text(fields.pop("target", None))
        anchor = _text(fields.pop("anchor", None))
        tags = [(title_case(k), _tag_text(v)) for k, v in fields.items() if k not in ENVELOPE]
        sender = signer.committer if signer is not None and signer.committer else owner
        assert sender is not None
        text = _text(data) or ""
        if signer is None or not all(name for name, _ in tags):  # create refuses an empty tag name
            msg = Message.create(owner=sender, target=target, anchor=anchor, tags=tags, data=text)
            return msg if signer is None else msg.replace(id=signer.id, signature=b64url(signer.signature))
        # what create + replace give, without the content id that the commitment's id replaces (a CBOR
        # encode) and two copies: this is on every signed message's ingest path
        return Message(
            id=signer.id,
            owner=sender,
            from_=sender,
            target=target,
            anchor=anchor,
            tags=tuple(tags),
            data=text,
            signature=b64url(signer.signature),
        )


def title_case(name: str) -> str:
    """`action` -> `Action`, `x-ref` -> `X-Ref`; remembered for short names (a client sends the same tag
    names with every message)."""
    return _title_case(name) if len(name) <= MAX_REMEMBERED_NAME else _title(name)


def _title(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


MAX_REMEMBERED_NAME = 64
_title_case = functools.lru_cache(maxsize=1024)(_title)


def _text(value: Value | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return b64url(value)
    return _tag_text(value)


def _tag_text(value: Value) -> str:
    if isinstance(value, bytes):
        return _text(value) or ""
    if isinstance(value, Atom):
        return value.name
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(_jsonable(value), separators=(",", ":"))


def _jsonable(value: Value) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, Atom)):
        return _tag_text(value)
    return value


# -- decoding ---------------------------------------------------------------------------------------


def decode(req: Request) -> Decoded:
    """Verify and decode a request. Signed: only covered fields (and a digested body) count."""
    fields = req.field_values()
    digested = check_digest(fields, req.body)
    commitments = verify(req, fields)
    # Ordered (dicts, not sets): the message's tags follow the signature's components (the request's
    # fields unsigned), the same in every process; a set's order changes with each process's hash seed.
    covered = dict.fromkeys(n for c in commitments for n in c.components if not n.startswith("@"))
    if commitments:
        if req.body and not (digested and "content-digest" in covered):
            raise BadInput("the body is not covered by the signature (sign a content-digest)")
        names = covered
    else:
        names = dict.fromkeys(k for k in fields if k not in TRANSPORT)
    raw: dict[str, Value] = {k: fields[k].encode("utf-8") for k in names if k in fields and k not in ENCODING}
    # How the fields are read (types, the body's key, its parts) counts only when signed too.
    encoding = {k: v for k, v in fields.items() if k in ENCODING and (not commitments or k in covered)}
    inline_key = encoding.get("inline-body-key", "body").lower() or "body"
    inner = None
    if req.body:
        boundary = boundary_of(encoding.get("content-type", ""))
        if boundary is not None:
            parts = parse_multipart(req.body, boundary, inline_key)
            inner = _committed_parts(parts)
            raw.update(typed_tree(parts))
        else:
            raw[inline_key] = req.body
    typed = apply_types(raw, parse_types(encoding["ao-types"])) if "ao-types" in encoding else raw
    return Decoded(typed, commitments, frozenset(names), inner)


def _committed_parts(parts: Mapping[str, Value]) -> Decoded | None:
    """Verify the commitments of every message in the body (BadInput when one fails); the `body`
    message, reduced to the keys its key-based commitments cover, typed as it says if covered."""
    inner = None
    for key, value in parts.items():
        if not (isinstance(value, dict) and isinstance(value.get("commitments"), dict)):
            continue
        found = verify_commitments(value)
        if key != "body":
            continue
        kept = {k: v for k, v in value.items() if k in found.covered and k != "ao-types"}
        typed = typed_tree(kept)
        types = value.get("ao-types")
        if "ao-types" in found.covered and isinstance(types, bytes):
            typed = apply_types(typed, parse_types(types.decode("latin-1")))
        inner = Decoded(typed, found.commitments, found.covered)
    return inner


# -- encoding and signing ---------------------------------------------------------------------------


def encode(fields: Mapping[str, Value]) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body) of a message: scalars as headers, the rest as (inline or multipart) parts."""
    headers: dict[str, str] = {}
    types: dict[str, str] = {}
    parts: list[tuple[str, dict[str, bytes], bytes]] = []
    for key, value in fields.items():
        key = key.lower()
        if isinstance(value, dict):
            if not value:
                types[key] = "empty-message"
            else:
                parts.extend(_nested_parts(key, value))
            continue
        kind, raw = encode_value(value)
        if kind is not None:
            types[key] = kind
        if kind in ("empty-binary", "empty-list"):
            continue
        if header_safe(raw) and key != "body":
            headers[key] = raw.decode("ascii")
        else:
            parts.append((key, {}, raw))
    if types:
        headers["ao-types"] = types_header(types)
    body = b""
    if len(parts) == 1 and not parts[0][1] and "/" not in parts[0][0]:
        key, _, body = parts[0]
        if key != "body":
            headers["inline-body-key"] = key
    elif parts:
        headers["body-keys"] = ", ".join(json.dumps(p[0]) for p in parts)
        headers["content-type"], body = build_multipart(parts)
    if body:
        headers["content-digest"] = content_digest(body)
    return sorted(headers.items()), body


def _nested_parts(key: str, value: Mapping[str, Value]) -> list[tuple[str, dict[str, bytes], bytes]]:
    sub_headers, sub_body = encode({k: v for k, v in value.items()})
    part_headers = {k: v.encode("utf-8") for k, v in sub_headers if k not in ("content-digest", "content-type")}
    if "content-type" in dict(sub_headers):
        raise BadInput(f"key {key!r}: messages nested two levels deep with parts are not encoded here")
    return [(key, part_headers, sub_body)]


def signed_message(wallet: Wallet, fields: Mapping[str, Value], *, method: str = "POST", url: str = "/") -> Request:
    """A signed httpsig request carrying `fields` (what `aonode send --httpsig` sends)."""
    headers, body = encode(fields)
    return Request(
        method=method, url=url, headers=tuple(sign(wallet, headers, method=method, url=url, body=body)), body=body
    )


def committed_request(wallet: Wallet, fields: Mapping[str, Value], *, method: str = "POST", url: str = "/") -> Request:
    """A request whose `body` is the message `fields` committed by `wallet`, as HyperBEAM sends one:
    an `inline` part with the message's fields, `body/<key>` parts for values that cannot be a
    field, a `body/commitments/<id>` part per commitment; the request itself is not signed."""
    message = commit(wallet, _raw_level(fields))
    inline: list[bytes] = [b"content-disposition: inline"]
    parts: list[bytes] = []
    for key, value in sorted(message.items()):
        if isinstance(value, bytes) and header_safe(value) and key != "body":
            inline.append(key.encode() + b": " + value)
        elif isinstance(value, bytes):
            parts.append(f'content-disposition: form-data;name="body/{key}"'.encode() + CRLF + CRLF + value)
    entries = message["commitments"]
    assert isinstance(entries, dict)
    for cid, entry in sorted(entries.items()):  # the key-based commitment and HyperBEAM's hmac id
        assert isinstance(entry, dict)
        lines = [f'content-disposition: form-data;name="body/commitments/{cid}"'.encode()]
        lines += [k.encode() + b": " + v for k, v in sorted(entry.items()) if isinstance(v, bytes)]
        parts.append(CRLF.join(lines))
    content_type, body = join_parts([CRLF.join(inline), *parts])
    headers = (("body-keys", '"body"'), ("content-type", content_type), ("content-digest", content_digest(body)))
    return Request(method=method, url=url, headers=headers, body=body)


def _raw_level(fields: Mapping[str, Value]) -> dict[str, Value]:
    """One message level as binaries plus its `ao-types` (nested maps are not committed here)."""
    out: dict[str, Value] = {}
    types: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            raise BadInput(f"key {key!r}: a committed message with nested maps is not encoded here")
        kind, raw = encode_value(value)
        if kind is not None:
            types[key.lower()] = kind
        if kind not in ("empty-binary", "empty-list"):
            out[key.lower()] = raw
    if types:
        out["ao-types"] = types_header(types).encode()
    return out
