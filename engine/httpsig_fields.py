"""httpsig@1.0 field values: the `ao-types` dictionary and multipart/form-data bodies.

HyperBEAM sends a message's keys as HTTP fields. A value that is not a plain binary is named in the
`ao-types` structured-field dictionary of its level (`integer`, `float`, `atom`, `list`, `map`,
`empty-binary`, `empty-list`, `empty-message`); a value that cannot be a header (a nested message,
a newline, more than 4 KiB, bytes that are not visible ASCII) travels as a part of a multipart/form-data
body whose `content-disposition` names its key (`a/b` for a key of a nested message; `inline` for
the key `inline-body-key` names, default `body`). A part with headers besides its disposition is a
nested message, otherwise its body is the value.

Values decode to `Value`: bytes (binaries), int, float, `Atom`, list and dict.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import http_sfv

from aonode.engine.errors import BadInput
from aonode.engine.message import b64url

MAX_HEADER_LENGTH = 4096
CRLF = b"\r\n"


@dataclass(frozen=True)
class Atom:
    """An Erlang atom (`true`, `false`, `null`, names): a symbol, not a string."""

    name: str


Value = bytes | int | float | Atom | list["Value"] | dict[str, "Value"]
Fields = dict[str, Value]

_VISIBLE = re.compile(rb"^[\x20-\x7e]*$")


# -- ao-types ---------------------------------------------------------------------------------------


def parse_types(raw: str) -> dict[str, str]:
    """The `ao-types` dictionary: key -> type name (both lowercased)."""
    d = http_sfv.Dictionary()
    try:
        d.parse(raw.encode("latin-1"))
    except (ValueError, UnicodeEncodeError) as err:
        raise BadInput(f"ao-types is not a structured-field dictionary: {err}") from err
    return {k.lower(): str(getattr(v, "value", v)).lower() for k, v in d.items()}


def decode_value(kind: str, raw: bytes) -> Value:
    """One typed value from its header/part encoding."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        if kind == "integer":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "atom":
            return Atom(text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text)
        if kind == "list":
            return [_list_item(item) for item in _list_items(text)]
        if kind == "map":
            d = http_sfv.Dictionary()
            d.parse(raw)
            return {k: _bare(v.value) for k, v in d.items()}
        if kind == "binary":
            return raw
    except ValueError as err:
        raise BadInput(f"ao-types says {kind}, but the value {text[:60]!r} is not one") from err
    raise BadInput(f"unknown ao-types type {kind!r}")


def _list_items(text: str) -> list[str]:
    """Items of a list value: a structured-field list of strings, or (as aoconnect writes them)
    bare `(ao-type-T) v` items joined with commas."""
    if not text:
        return []
    lst = http_sfv.List()
    try:
        lst.parse(text.encode("utf-8"))
        return [v.value if isinstance(v.value, str) else str(v.value) for v in lst]
    except ValueError:
        return [part.strip() for part in text.split(",")]


def _list_item(item: str) -> Value:
    if item.startswith("(ao-type-") and ") " in item:
        kind, rest = item[len("(ao-type-") :].split(") ", 1)
        return decode_value(kind.lower(), rest.encode("utf-8"))
    return item.encode("utf-8")


def _bare(value: object) -> Value:
    if isinstance(value, bool):
        return Atom("true" if value else "false")
    if isinstance(value, (int, float, bytes)):
        return value
    return str(value).encode("utf-8")


def apply_types(fields: dict[str, Value], types: dict[str, str]) -> dict[str, Value]:
    """Decode the typed keys of one level; empty-* types add keys that have no field at all."""
    out = dict(fields)
    for key, kind in types.items():
        if kind == "empty-binary":
            out[key] = b""
        elif kind == "empty-list":
            out[key] = []
        elif kind == "empty-message":
            out[key] = {}
        elif key in out and isinstance(out[key], bytes):
            out[key] = decode_value(kind, out[key])  # type: ignore[arg-type]
        elif key in out and kind == "list" and isinstance(out[key], dict):
            nested = out[key]
            assert isinstance(nested, dict)
            out[key] = [nested[k] for k in sorted(nested, key=lambda k: int(k) if k.isdigit() else 0)]
    return out


def encode_value(value: Value) -> tuple[str | None, bytes]:
    """(type name or None for a binary, encoded bytes) of a scalar or list."""
    if isinstance(value, bytes):
        return (None if value else "empty-binary"), value
    if isinstance(value, bool):
        return "atom", (b'"true"' if value else b'"false"')
    if isinstance(value, int):
        return "integer", str(value).encode()
    if isinstance(value, float):
        return "float", repr(value).encode()
    if isinstance(value, Atom):
        return "atom", json.dumps(value.name).encode()
    if isinstance(value, list):
        if not value:
            return "empty-list", b""
        items = []
        for item in value:
            kind, raw = encode_value(item)
            text = raw.decode("utf-8")
            items.append(json.dumps(text if kind is None else f"(ao-type-{kind}) {text}"))
        return "list", ", ".join(items).encode("utf-8")
    raise BadInput(f"cannot encode a {type(value).__name__} as an httpsig field")


def types_header(types: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(types.items()))


def header_safe(value: bytes) -> bool:
    return len(value) <= MAX_HEADER_LENGTH and bool(_VISIBLE.match(value)) and value == value.strip()


# -- multipart --------------------------------------------------------------------------------------


def boundary_of(content_type: str) -> str | None:
    """The boundary of a multipart/form-data content type, or None for any other body."""
    item = http_sfv.Item()
    try:
        item.parse(content_type.encode("latin-1"))
    except (ValueError, UnicodeEncodeError):
        return None
    if str(item.value).lower() != "multipart/form-data":
        return None
    boundary = item.params.get("boundary")
    if not boundary:
        raise BadInput("multipart/form-data without a boundary")
    return str(boundary)


def parse_multipart(body: bytes, boundary: str, inline_key: str) -> dict[str, Value]:
    """The parts of a body as nested fields (`a/b` names build nested maps), as sent: untyped bytes
    (signatures are checked over these; `typed_tree` then types each nested level)."""
    start = b"--" + boundary.encode() + CRLF
    end = CRLF + b"--" + boundary.encode() + b"--"
    first, last = body.find(start), body.rfind(end)
    if first < 0 or last < first:
        raise BadInput("multipart body does not match its boundary")
    inner = body[first + len(start) : last]
    out: dict[str, Value] = {}
    for part in inner.split(CRLF + b"--" + boundary.encode() + CRLF):
        name, value = _part(part, inline_key)
        _put(out, _path(name), value)
    return out


def _path(name: str) -> list[str]:
    """A part name's keys, lowercased but for commitment ids (base64url: case is part of the id)."""
    segments = name.split("/")
    return [s if i and segments[i - 1].lower() == "commitments" else s.lower() for i, s in enumerate(segments)]


def _part(part: bytes, inline_key: str) -> tuple[str, Value]:
    head, sep, content = part.partition(CRLF + CRLF)
    if not sep and head.endswith(CRLF):
        head = head[:-2]
    headers: dict[str, Value] = {}
    disposition = None
    for line in head.split(CRLF):
        if not line:
            continue
        key, colon, val = line.partition(b": ")
        if not colon:
            continue
        if key.lower() == b"content-disposition":
            disposition = val.decode("latin-1")
        else:
            headers[key.decode("latin-1").lower()] = val
    if disposition is None:
        raise BadInput("a multipart part has no content-disposition")
    item = http_sfv.Item()
    try:
        item.parse(disposition.encode("latin-1"))
    except ValueError as err:
        raise BadInput(f"bad content-disposition {disposition!r:.80}") from err
    if str(item.value) == "inline":
        name = inline_key
    else:
        param = item.params.get("name")
        name = param if isinstance(param, str) else ""
        if not name:
            raise BadInput("a multipart part names no key")
    if not headers:
        return str(name), content
    if content:
        headers["body"] = content
    return str(name), headers


def _put(tree: dict[str, Value], path: list[str], value: Value) -> None:
    for key in path[:-1]:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = {}
            tree[key] = child
        tree = child
    existing = tree.get(path[-1])
    if isinstance(existing, dict) and isinstance(value, dict):
        existing.update(value)
    else:
        tree[path[-1]] = value


def typed_tree(tree: dict[str, Value]) -> dict[str, Value]:
    """Apply each nested level's own `ao-types` (the top level's is applied by the caller)."""
    out: dict[str, Value] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            types = value.get("ao-types")
            value = typed_tree({k: v for k, v in value.items() if k != "ao-types"})
            if isinstance(types, bytes):
                value = apply_types(value, parse_types(types.decode("latin-1")))
        out[key] = value
    return out


def build_multipart(parts: list[tuple[str, dict[str, bytes], bytes]]) -> tuple[str, bytes]:
    """(content type, body) for parts given as (name, part headers, part body); the boundary is the
    base64url sha-256 of the parts, as HyperBEAM and aoconnect make it, so equal parts give equal bytes."""
    encoded = []
    for name, headers, content in parts:
        lines = [f'content-disposition: form-data;name="{name}"'.encode()]
        lines += [k.encode() + b": " + v for k, v in sorted(headers.items())]
        encoded.append(CRLF.join(lines) + CRLF + CRLF + content)
    return join_parts(encoded)


def join_parts(encoded: list[bytes]) -> tuple[str, bytes]:
    """(content type, body) of already encoded parts (headers, blank line, content)."""
    boundary = b64url(hashlib.sha256(CRLF.join(encoded)).digest())
    body = b"".join(b"--" + boundary.encode() + CRLF + e + CRLF for e in encoded) + b"--" + boundary.encode() + b"--"
    return f'multipart/form-data; boundary="{boundary}"', body
