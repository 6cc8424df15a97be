"""Commitments carried inside a message: HyperBEAM's `commitments/<id>` maps (httpsig@1.0).

A message nested in a multipart body (the `body` a request schedules: its `inline` part, plus
`body/commitments/<id>` parts) carries its own signatures as a `commitments` map, one entry per
commitment keyed by its id. HyperBEAM writes two shapes:
  b2743e4a (the reference this node follows): {commitment-device: httpsig@1.0, alg, committer,
     signature: `<label>=:<base64>:`, signature-input: `<label>=(<components>);alg=..;keyid=..`}
  later main: {commitment-device: httpsig@1.0, type (the alg), keyid (`publickey:<base64>` or
     base64url), committer, committed (the list of keys), signature (base64url)}, which its wire
     form writes as the part's `signature`/`signature-input` alone (`sig-...` labels, `ao-body-key`)
A commitment signs the RFC 9421 base of the message as a standalone httpsig message
(`standalone_fields`): values of at most 4 KiB are fields; `body` (else `data`, named by
`inline-body-key: data`), maps and larger values form the body, bound by `content-digest`. As
HyperBEAM writes the base, a derived component (`@path`) is the message's own key and its line is
named without the `@`. Only what a commitment covers is part of the committed message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import http_sfv

from aonode.engine.crypto import Wallet
from aonode.engine.errors import BadInput
from aonode.engine.httpsig_fields import CRLF, MAX_HEADER_LENGTH, Value, join_parts
from aonode.engine.httpsig_signature import (
    HMAC_SHA256,
    Commitment,
    content_digest,
    sig_label,
    sign_base,
    verify_base,
    wallet_alg,
)
from aonode.engine.message import b64url, b64url_decode

DEVICE = b"httpsig@1.0"
# Component names RFC 9421 derives from the request; HyperBEAM marks these keys with `@`.
DERIVED = frozenset(
    {"method", "target-uri", "authority", "scheme", "request-target", "path", "query", "query-param", "status"}
)
# Fields that encode the message rather than being keys of it.
ENCODING = frozenset({"ao-types", "content-digest", "content-type", "inline-body-key", "ao-body-key", "body-keys"})
_SIG_PARAMS = ("alg", "bundle", "created", "expires", "keyid", "nonce", "tag")


@dataclass(frozen=True)
class Committed:
    """A nested message's verified commitments and the message keys they cover."""

    commitments: tuple[Commitment, ...]
    covered: frozenset[str]


# -- the message as a standalone httpsig message -----------------------------------------------------


def _inline_key(msg: Mapping[str, Value], body_key_field: str) -> str:
    explicit = msg.get(body_key_field)
    if isinstance(explicit, bytes) and explicit:
        return explicit.decode("latin-1")
    return "body" if "body" in msg or "data" not in msg else "data"


def _in_body(key: str, value: Value, inline: str) -> bool:
    return (
        key in ("body", inline)
        or isinstance(value, dict)
        or (isinstance(value, bytes) and len(value) > MAX_HEADER_LENGTH)
    )


def standalone_fields(msg: Mapping[str, Value], body_key_field: str = "inline-body-key") -> dict[str, bytes]:
    """The fields HyperBEAM's httpsig encoding gives `msg` on its own (the body as its digest)."""
    inline = _inline_key(msg, body_key_field)
    fields: dict[str, bytes] = {}
    body: dict[str, Value] = {}
    for key, value in msg.items():
        if key == "commitments":
            continue
        if _in_body(key, value, inline):
            body[key] = value
        elif isinstance(value, bytes):
            fields[key] = value
        else:
            raise BadInput(f"key {key!r} of a committed message is not a binary")
    if inline == "data" and body_key_field not in msg:
        fields[body_key_field] = b"data"
    if not body:
        return fields
    if set(body) == {inline} and isinstance(body[inline], bytes):
        payload = body[inline]
        assert isinstance(payload, bytes)
    else:
        content_type, payload = join_parts(
            [_part(name, value, inline) for name, value in sorted(_grouped(body, "", {}).items())]
        )
        fields["content-type"] = content_type.encode()
    fields["content-digest"] = content_digest(payload).encode()
    return fields


def _grouped(tree: Mapping[str, Value], parent: str, top: dict[str, Value]) -> dict[str, Value]:
    """HyperBEAM's part layout: a map's small values share its part, larger ones get their own."""
    flat: dict[str, Value] = {}
    for key, value in tree.items():
        path = f"{parent}/{key}" if parent else key
        if isinstance(value, dict):
            _grouped(value, path, top)
        elif isinstance(value, bytes) and len(value) > MAX_HEADER_LENGTH:
            top[path] = value
        else:
            flat[key] = value
    if flat:
        if parent:
            top[parent] = flat
        else:
            top.update(flat)
    return top


def _part(name: str, value: Value, inline: str) -> bytes:
    if isinstance(value, dict) and set(value) == {"body"}:
        name, inline = f"{name}/body", "body"
    disposition = b"inline" if name == inline else f'form-data;name="{name}"'.encode()
    if isinstance(value, bytes):
        return b"content-disposition: " + disposition + CRLF + CRLF + value
    if not isinstance(value, dict):
        raise BadInput(f"part {name!r} of a committed message is not a binary or a map")
    headers = {k: v for k, v in value.items() if k != "body"}
    headers["content-disposition"] = disposition
    head = CRLF.join(k.encode() + b": " + _bytes(v, k) for k, v in sorted(headers.items()))
    content = value.get("body", b"")
    return head + (CRLF + CRLF + _bytes(content, "body") if content else b"")


def _bytes(value: Value, key: str) -> bytes:
    if not isinstance(value, bytes):
        raise BadInput(f"key {key!r} of a committed message is nested too deep")
    return value


def signature_base(fields: Mapping[str, bytes], components: Iterable[str], params_line: str) -> bytes:
    """The base as HyperBEAM writes it for a message: one `"key": value` line per component."""
    lines = []
    for name in components:
        key = name.removeprefix("@")
        if key not in fields:
            raise BadInput(f"the commitment covers {key!r}, which the message does not have")
        lines.append(b'"' + key.encode() + b'": ' + fields[key].strip(b" \t"))
    lines.append(b'"@signature-params": ' + params_line.encode())
    return b"\n".join(lines)


def _with_derived(names: Iterable[str]) -> list[str]:
    return [f"@{n}" if n in DERIVED else n for n in names]


def covered_keys(msg: Mapping[str, Value], components: Iterable[str], body_key_field: str) -> frozenset[str]:
    """The keys of `msg` a commitment binds: its named fields, and the body's keys when it covers
    the content-digest."""
    names = {n.removeprefix("@") for n in components}
    keys = {n for n in names if n in msg and n not in ENCODING}
    if "ao-types" in names:
        keys.add("ao-types")
    if "content-digest" in names:
        inline = _inline_key(msg, body_key_field)
        keys |= {k for k, v in msg.items() if k != "commitments" and _in_body(k, v, inline)}
    return frozenset(keys)


# -- verifying ---------------------------------------------------------------------------------------


def verify_commitments(msg: Mapping[str, Value]) -> Committed:
    """Verify every entry of `msg["commitments"]` (raw, untyped fields); BadInput on the first that
    fails. hmac-sha256 entries are checked as ids; they bind nothing and name no committer."""
    entries = msg.get("commitments")
    if not isinstance(entries, dict):
        return Committed((), frozenset())
    verified: list[Commitment] = []
    covered: set[str] = set()
    for cid, entry in entries.items():
        if not isinstance(entry, dict):
            raise BadInput(f"commitment {cid!r} is not a message")
        device = entry.get("commitment-device", DEVICE)
        if device != DEVICE:
            raise BadInput(f"commitment {cid!r}: unsupported commitment-device {device!r}")
        if "committed" in entry or "type" in entry:
            commitment, keys = _verify_listed(msg, cid, entry)
        else:
            commitment, keys = _verify_siginfo(msg, cid, entry)
        verified.append(commitment)
        if commitment.committer is not None:
            covered |= keys
    return Committed(tuple(verified), frozenset(covered))


def _verify_siginfo(msg: Mapping[str, Value], cid: str, entry: Mapping[str, Value]) -> tuple[Commitment, set[str]]:
    """The commitment's own signature and signature-input dictionaries: b2743e4a's shape (with `alg`,
    `committer`), and how later main writes a `commitments/<id>` part (those two fields alone, labels
    `sig-...`, the body's key named by `ao-body-key`)."""
    alg = _text(entry.get("alg", b"")).lower()
    if alg == HMAC_SHA256:
        others = {
            k: e
            for k, e in _entries(msg).items()
            if k != cid and isinstance(e, dict) and e.get("alg") != HMAC_SHA256.encode()
        }
        if others and {k: entry.get(k) for k in ("signature", "signature-input")} != _combined(others):
            raise BadInput(f"hmac commitment {cid!r} does not match the message's signatures")
        return _verify_siginfo_hmac(standalone_fields(msg), cid, entry), set()
    sigs, inputs = _dictionary(entry, "signature"), _dictionary(entry, "signature-input")
    if len(inputs) != 1:
        raise BadInput(f"commitment {cid!r} must hold exactly one signature")
    ((label, member),) = inputs.items()
    if label not in sigs or not isinstance(sigs[label].value, bytes) or not isinstance(member, http_sfv.InnerList):
        raise BadInput(f"commitment {cid!r}: signature-input {label!r} has no signature")
    components = tuple(str(i.value) for i in member)
    keyid, given_alg = str(member.params.get("keyid", "")), str(member.params.get("alg", alg)).lower()
    if alg and given_alg != alg:
        raise BadInput(f"commitment {cid!r}: alg {alg!r} but the signature says {given_alg!r}")
    body_key_field = "ao-body-key" if "ao-body-key" in components else "inline-body-key"
    base = signature_base(standalone_fields(msg, body_key_field), components, str(member))
    commitment = verify_base(label, given_alg, keyid, components, base, sigs[label].value)
    _check(cid, entry, commitment)
    return commitment, set(covered_keys(msg, components, body_key_field))


def _verify_siginfo_hmac(fields: Mapping[str, bytes], cid: str, entry: Mapping[str, Value]) -> Commitment:
    """b2743e4a's hmac id: over the components of the first signature (or every field), keyid "ao"."""
    if "signature-input" in entry:
        first = next(iter(_dictionary(entry, "signature-input").values()), None)
        if not isinstance(first, http_sfv.InnerList):
            raise BadInput(f"commitment {cid!r}: signature-input is empty")
        components = [str(i.value) for i in first]
    else:
        components = sorted(_with_derived(fields))
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in components])
    inner.params["alg"], inner.params["keyid"] = HMAC_SHA256, "ao"
    mac = hmac.new(b"ao", signature_base(fields, components, str(inner)), hashlib.sha256).digest()
    if b64url(mac) != cid:
        raise BadInput(f"hmac commitment {cid!r} does not match the message")
    return Commitment(cid, HMAC_SHA256, "ao", tuple(components), mac, None)


def _verify_listed(msg: Mapping[str, Value], cid: str, entry: Mapping[str, Value]) -> tuple[Commitment, set[str]]:
    """The later shape: the keys are listed in `committed`, the base is rebuilt from them."""
    keys = _committed_list(entry.get("committed"))
    alg = _text(entry.get("type", entry.get("alg", b""))).lower()
    body_key_field = "ao-body-key"
    subset = {k: v for k, v in msg.items() if k in keys or k == body_key_field}
    fields = standalone_fields(subset, body_key_field)
    components = sorted(fields)
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in _with_derived(components)])
    params = {name: _text(entry[name]) for name in _SIG_PARAMS if name in entry and name != "alg"}
    params["alg"] = alg
    for name in sorted(params):
        inner.params[name] = params[name]
    signature = b64url_decode(_text(entry.get("signature", b"")))
    base = signature_base(fields, components, str(inner))
    commitment = verify_base(cid, alg, params.get("keyid", ""), tuple(components), base, signature)
    _check(cid, entry, commitment)
    return commitment, set(covered_keys(subset, components, body_key_field))


def _check(cid: str, entry: Mapping[str, Value], commitment: Commitment) -> None:
    """The id names the signature (an hmac may be named by its own 32 bytes); a committer named
    beside the key is the key's address."""
    if cid != commitment.id and not (commitment.committer is None and cid == b64url(commitment.signature)):
        raise BadInput(f"commitment {cid!r} is not named by its signature's id {commitment.id}")
    committer = entry.get("committer")
    if committer is not None and _text(committer) != commitment.committer:
        raise BadInput(
            f"commitment {cid!r} names committer {_text(committer)!r}, but its key is {commitment.committer!r}"
        )


def _committed_list(raw: Value | None) -> set[str]:
    if isinstance(raw, dict):
        return {_text(v).lower() for v in raw.values()}
    if isinstance(raw, list):
        return {_text(v).lower() for v in raw}
    if isinstance(raw, bytes):
        lst = http_sfv.List()
        try:
            lst.parse(raw)
        except ValueError as err:
            raise BadInput("a commitment's `committed` is not a structured-field list") from err
        return {str(item.value).lower() for item in lst}
    raise BadInput("a commitment lists no `committed` keys")


def _dictionary(entry: Mapping[str, Value], name: str) -> http_sfv.Dictionary:
    d = http_sfv.Dictionary()
    raw = entry.get(name)
    if not isinstance(raw, bytes):
        raise BadInput(f"a commitment has no {name}")
    try:
        d.parse(raw)
    except ValueError as err:
        raise BadInput(f"a commitment's {name} is not a structured-field dictionary") from err
    return d


def _text(value: Value | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise BadInput("a commitment field is not a binary")


# -- committing --------------------------------------------------------------------------------------


def commit(wallet: Wallet, msg: Mapping[str, Value]) -> dict[str, Value]:
    """`msg` (raw fields) plus a commitment by `wallet` over all of it, in the b2743e4a shape."""
    fields = standalone_fields(msg)
    components = _with_derived(sorted(fields))
    inner = http_sfv.InnerList([http_sfv.Item(n) for n in components])
    inner.params["alg"], inner.params["keyid"] = wallet_alg(wallet), b64url(wallet.owner)
    signature = sign_base(wallet, signature_base(fields, components, str(inner)))
    label = sig_label(wallet.address)
    entry: dict[str, Value] = {
        "commitment-device": DEVICE,
        "alg": wallet_alg(wallet).encode(),
        "committer": wallet.address.encode(),
        "signature": f"{label}=:{base64.b64encode(signature).decode()}:".encode(),
        "signature-input": f"{label}={inner}".encode(),
    }
    previous = msg.get("commitments")
    entries = {
        cid: e
        for cid, e in (previous.items() if isinstance(previous, dict) else ())
        if not (isinstance(e, dict) and e.get("alg") == HMAC_SHA256.encode())
    }
    entries[b64url(hashlib.sha256(signature).digest())] = entry
    cid, hmac_entry = _hmac_id(fields, entries)
    return {**msg, "commitments": {**entries, cid: hmac_entry}}


def _combined(entries: Mapping[str, Value]) -> dict[str, Value]:
    """Every signature and every input of `entries` in one dictionary each, by label."""
    sigs, inputs = http_sfv.Dictionary(), http_sfv.Dictionary()
    for entry in entries.values():
        if isinstance(entry, dict):
            sigs.update(_dictionary(entry, "signature"))
            inputs.update(_dictionary(entry, "signature-input"))
    return {"signature": str(_sorted(sigs)).encode(), "signature-input": str(_sorted(inputs)).encode()}


def _entries(msg: Mapping[str, Value]) -> Mapping[str, Value]:
    entries = msg.get("commitments")
    return entries if isinstance(entries, dict) else {}


def _hmac_id(fields: Mapping[str, bytes], entries: Mapping[str, Value]) -> tuple[str, dict[str, Value]]:
    """b2743e4a's hmac commitment (its id): the key-based signatures combined, the hmac over the
    first signature's components."""
    combined = _combined(entries)
    inputs = http_sfv.Dictionary()
    inputs.parse(combined["signature-input"])  # type: ignore[arg-type]
    first = next(iter(inputs.values()))
    components = [str(i.value) for i in first]
    params = http_sfv.InnerList([http_sfv.Item(n) for n in components])
    params.params["alg"], params.params["keyid"] = HMAC_SHA256, "ao"
    mac = hmac.new(b"ao", signature_base(fields, components, str(params)), hashlib.sha256).digest()
    return b64url(mac), {"commitment-device": DEVICE, "alg": HMAC_SHA256.encode(), **combined}


def _sorted(d: http_sfv.Dictionary) -> http_sfv.Dictionary:
    out = http_sfv.Dictionary()
    for key in sorted(d):
        out[key] = d[key]
    return out
