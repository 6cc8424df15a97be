"""`signature` and `signature-input` in their canonical shape, read without a structured-field parser.

Why: http_sfv parses and re-serializes strings one character at a time, and an RSA keyid is a
683-character string: reading the two fields cost more than the RSA check itself (~0.3 of ~0.5 ms
per httpsig message). Every signer we meet writes these fields canonically (RFC 8941 serialization:
what http_sfv itself writes), and for canonical text parsing then serializing gives the text back.
So a member that matches the canonical grammar below is read with regular expressions and its own
text is its `@signature-params` line; anything else (components with parameters, tokens, booleans,
escapes, repeated labels or parameters) returns None and goes through http_sfv as before.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass

_KEY = r"[a-z*][a-z0-9_\-.*]*"
_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'  # printable ASCII but `"` and `\`: serialized as is
_INTEGER = r"0|-?[1-9][0-9]{0,14}"  # no leading zero, no -0: serialized as is
_PARAM = rf";({_KEY})=({_STRING}|{_INTEGER})"
_LIST = rf"\((?:{_STRING}(?: {_STRING})*)?\)"
_INNER = rf"{_LIST}(?:{_PARAM})*"
_INPUT_MEMBER = re.compile(rf"({_KEY})=({_INNER})")
_SIG_MEMBER = re.compile(rf"({_KEY})=:([A-Za-z0-9+/]*={{0,2}}):")
_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")
_PARAMS = re.compile(_PARAM)
_COMPONENT = re.compile(_STRING)
_LIST_ONLY = re.compile(_LIST)


@dataclass(frozen=True)
class Input:
    """One signature-input member and its signature."""

    label: str
    components: tuple[str, ...]  # names, without their quotes
    params: dict[str, str | int]
    params_line: str  # the member's own text: its serialization
    signature: bytes


def _members(text: str, member: re.Pattern[str]) -> list[re.Match[str]] | None:
    """Each member of a dictionary whose every member matches `member`, or None."""
    found, at = [], 0
    while True:
        match = member.match(text, at)
        if match is None:
            return None
        found.append(match)
        at = match.end()
        if at == len(text):
            return found
        sep = _SEPARATOR.match(text, at)
        if sep is None or sep.end() == len(text):
            return None
        at = sep.end()


def parse(signature: str, signature_input: str) -> list[Input] | None:
    """The inputs, each with its signature, when both fields are canonical; None to use http_sfv."""
    sigs = _members(signature, _SIG_MEMBER)
    inputs = _inputs(signature_input) if len(signature_input) <= MAX_REMEMBERED else _read_inputs(signature_input)
    if sigs is None or inputs is None:
        return None
    signatures: dict[str, bytes] = {}
    for match in sigs:
        if match[1] in signatures:
            return None
        try:
            signatures[match[1]] = base64.b64decode(match[2], validate=True)
        except (binascii.Error, ValueError):
            return None
    if any(label not in signatures for label, _, _, _ in inputs):
        return None  # no signature (http_sfv's path says so)
    return [Input(label, names, dict(params), inner, signatures[label]) for label, names, params, inner in inputs]


# (label, component names, parameters, the member's text) of each member of a canonical signature-input
_Member = tuple[str, tuple[str, ...], tuple[tuple[str, str | int], ...], str]
MAX_REMEMBERED = 2048  # characters of a remembered signature-input: one RSA keyid (683) and then some


def _read_inputs(signature_input: str) -> tuple[_Member, ...] | None:
    """The members of a canonical signature-input (None: not canonical, or a label or parameter repeated)."""
    inputs = _members(signature_input, _INPUT_MEMBER)
    if inputs is None:
        return None
    out: list[_Member] = []
    for match in inputs:
        label, inner = match[1], match[2]
        if any(member[0] == label for member in out):
            return None  # a repeated label
        close = _LIST_ONLY.match(inner)
        assert close is not None  # _INPUT_MEMBER matched it
        params: dict[str, str | int] = {}
        for param in _PARAMS.finditer(inner, close.end()):
            if param[1] in params:
                return None
            value = param[2]
            params[param[1]] = value[1:-1] if value.startswith('"') else int(value)
        components = tuple(c[1:-1] for c in _COMPONENT.findall(inner, 1, close.end() - 1))
        out.append((label, components, tuple(params.items()), inner))
    return tuple(out)


# A client signs every message with the same components and key: its signature-input is the same text each
# time (a 683-character RSA keyid), and reading it was ~15 us of each httpsig check. Its signature differs.
_inputs = functools.lru_cache(maxsize=256)(_read_inputs)
