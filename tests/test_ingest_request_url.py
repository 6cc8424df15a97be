"""server/ingest_front.request_url gives what Starlette's `str(URL(scope=scope))` gives (the URL an
httpsig signature's @path/@authority/@target-uri are read from), remembered or not: for Host fields
valid and not, IPv6 servers, default ports, paths with `?`, `#`, `\\` or a leading `//`, queries that
are not UTF-8 (the same error), and a target too long to remember."""

from __future__ import annotations

import itertools

from starlette.datastructures import URL

from aonode.server.ingest_front import MAX_REMEMBERED_URL, request_url
from aonode.server.signing import Scope

HOSTS = [None, b"127.0.0.1:8734", b"example.com", b"[::1]:80", b"bad host", b"x:99999", b"", b"[zz]:1", b"h:80"]
PATHS = ["/", "/abc~process@1.0/schedule", "/a?b", "/a#b", "/a\\b", "//x", "/%41", "/" + "p" * MAX_REMEMBERED_URL]
QUERIES = [b"", b"target=x", b"a=%20&b", b"\xff"]
SERVERS = [None, ("127.0.0.1", 80), ("::1", 8080), ["10.0.0.1", 443]]
SCHEMES = ["http", "https"]


def _either(scope: Scope, how: object) -> str | type[BaseException]:
    try:
        return how(scope)  # type: ignore[operator, no-any-return]
    except Exception as err:  # noqa: BLE001 - the same error either way is the same answer (a 500)
        return type(err)


def test_request_url_is_starlettes_url() -> None:
    for host, path, query, server, scheme in itertools.product(HOSTS, PATHS, QUERIES, SERVERS, SCHEMES):
        headers = [(b"x-other", b"1")] + ([] if host is None else [(b"host", host), (b"host", b"second:1")])
        scope = {"type": "http", "scheme": scheme, "server": server, "path": path, "query_string": query}
        scope["headers"] = headers
        for _ in range(2):  # the second time remembered
            assert _either(scope, request_url) == _either(scope, lambda s: str(URL(scope=s))), scope
