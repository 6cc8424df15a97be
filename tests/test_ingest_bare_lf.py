"""server/ingest_http.has_bare_lf finds a LF not after a CR in a head exactly where the regex
`(?<!\\r)\\n` it replaced finds one: every buffer of CR, LF and another byte up to 8 bytes long, at
every end, as bytes and as the connection's bytearray; and on a real head (an httpsig request's)."""

from __future__ import annotations

import itertools
import re

from aonode.server.ingest_http import has_bare_lf

BARE_LF = re.compile(rb"(?<!\r)\n")


def test_has_bare_lf_is_the_regex() -> None:
    for size in range(9):
        for chars in itertools.product(b"\r\na", repeat=size):
            raw = bytes(chars)
            for end in range(size + 1):
                expected = BARE_LF.search(raw, 0, end) is not None
                assert has_bare_lf(raw, end) is expected and has_bare_lf(bytearray(raw), end) is expected, (raw, end)


def test_a_real_head() -> None:
    head = b"POST /x HTTP/1.1\r\nhost: a\r\n" + b"signature: sig=:" + b"A" * 684 + b":\r\n\r\nbody\n"
    end = head.find(b"\r\n\r\n") + 4
    assert not has_bare_lf(head, end) and has_bare_lf(head, len(head))  # the body's LF is past the head
    assert has_bare_lf(head.replace(b"host: a\r\n", b"host: a\n"), end)
