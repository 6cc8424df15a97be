"""server/ingest_head.parse_head: a request target read once and remembered gives, the first time and every
time after, the path, raw path and query that reading it anew gives (percent-escapes unquoted as hypercorn
does); a target too long to remember is read each time; a head the server does not answer is None."""

from __future__ import annotations

import pytest

from aonode.server import ingest_head
from aonode.server.ingest_head import parse_head


def _head(target: bytes, *fields: bytes) -> bytes:
    lines = [b"POST " + target + b" HTTP/1.1", b"host: a", b"content-length: 0", *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "target",
    [b"/", b"/~scheduler@1.0/schedule?target=abc&x=1", b"/a%20b/%7Ecd?q=%41", b"/" + b"p" * 500 + b"?x"],
)
def test_a_remembered_target_reads_as_a_fresh_one(target: bytes) -> None:
    fresh = ingest_head._read_target(target)
    assert fresh is not None
    for _ in range(2):
        scope = parse_head(_head(target), ("127.0.0.1", 1))
        assert scope is not None and (scope["path"], scope["raw_path"], scope["query_string"]) == fresh
    assert parse_head(_head(b"/a%20b"), ("127.0.0.1", 1))["path"] == "/a b"  # type: ignore[index]


@pytest.mark.parametrize(
    "head",
    [
        _head(b"/", b"expect: 100-continue"),
        _head(b"/", b"transfer-encoding: chunked"),
        _head(b"/", b"upgrade: h2c"),
        _head(b"/x#frag"),
        _head(b"http://a/x"),
    ],
)
def test_heads_the_node_answers_are_not_taken(head: bytes) -> None:
    for _ in range(2):
        assert parse_head(head, ("127.0.0.1", 1)) is None
