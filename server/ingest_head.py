"""The head of a request an ingest worker may answer itself, read into the ASGI scope hypercorn gives.

Why its own module: server/ingest_http.py's connections call it once per request; llhttp (httptools,
uvicorn's parser) reads the head, and what every message of one client repeats (its request target) is
read once per target.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote

import httptools

from aonode.server.signing import Scope

Header = tuple[bytes, bytes]


class _Head:
    """httptools callbacks: the request line's target and the header fields."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[Header] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


def has_bare_lf(buffer: bytes | bytearray, end: int) -> bool:
    """A LF not after a CR in buffer[:end] (llhttp refuses it, h11 takes it): LFs outnumber CRLFs."""
    return buffer.count(b"\n", 0, end) != buffer.count(b"\r\n", 0, end)


def parse_head(raw: bytes, sockname: tuple[str, int]) -> Scope | None:
    """The ASGI scope of a request head (the fields hypercorn gives), or None when it is not a plain
    HTTP/1.1 request with a Content-Length body this server may answer itself."""
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserError:
        return None
    if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
        return None
    names = [name for name, _ in head.headers]
    if names.count(b"content-length") != 1 or names.count(b"host") != 1:  # h11 answers a missing Host 400
        return None
    if not _TUNNELLED_FIELDS.isdisjoint(names):
        return None
    if not head.url.startswith(b"/") or b"#" in head.url:  # absolute or asterisk form, or a fragment:
        return None  # hypercorn's path is the whole target up to a `?` (llhttp's drops a fragment)
    target = _target(head.url) if len(head.url) <= MAX_REMEMBERED_TARGET else _read_target(head.url)
    if target is None:
        return None
    path, raw_path, query = target
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": parser.get_method().decode("ascii"),
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": head.headers,
        "server": sockname,
    }


_TUNNELLED_FIELDS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))  # the node's server answers these
MAX_REMEMBERED_TARGET = 400  # bytes of a request target remembered: a process's schedule path and then some


def _read_target(url: bytes) -> tuple[str, bytes, bytes] | None:
    """(path, raw path, query) of an origin-form target as hypercorn gives them; None when llhttp's URL
    parser refuses a target its request line took."""
    try:
        target = httptools.parse_url(url)
    except httptools.HttpParserError:
        return None
    raw_path = target.path or b"/"
    return unquote(raw_path.decode("ascii", "replace")), raw_path, target.query or b""


# A client posting to one process sends the same target with every message
_target = functools.lru_cache(maxsize=256)(_read_target)
