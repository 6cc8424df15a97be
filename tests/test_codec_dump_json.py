"""server/codec.dump_json (one JSONEncoder made once) writes exactly what json.dumps with its settings writes,
and refuses what it refuses: bytes as base64url, sets and tuples as lists, non-ASCII as UTF-8."""

from __future__ import annotations

import json

import pytest

from aonode.server import codec


def _reference(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=codec._jsonable).encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        {"process": "p" * 43, "slot": 5, "body": {"Tags": [{"name": "Action", "value": "Ping"}], "Anchor": None}},
        {"raw": b"\x00\xffab", "set": frozenset({1}), "tuple": (1, "two", 3.5), "nested": [[b"x"], {"k": True}]},
        {"text": 'grüße \u2028 \U0001f600 "quoted" \\ \n', "float": 1e300, "nan": float("nan"), "neg": -0.0},
        ["a", 1, None, False],
        "plain",
    ],
)
def test_the_same_bytes_as_json_dumps(value: object) -> None:
    assert codec.dump_json(value) == _reference(value)
    assert codec.dump_json(value) == codec.dump_json(value)  # the encoder keeps nothing between calls


def test_the_same_refusals() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        codec.dump_json({"x": object()})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        codec.dump_json(loop)
    assert codec.dump_json({"after": "errors"}) == b'{"after":"errors"}'
