"""Test helper: server/ingest_http.py's worker server on a free loopback port, with a handler that takes
`POST /take` (answers its body back) and leaves everything else to the upstream (the node's server)."""

from __future__ import annotations

import asyncio

from aonode.server import ingest_http
from aonode.server.signing import Scope

JSON = [(b"content-length", b"2"), (b"content-type", b"application/json")]
UPSTREAM_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nupstream"


async def taken(scope: Scope, body: bytes) -> ingest_http.Answer | None:
    """Takes POST /take (answers its body back), leaves everything else to the upstream."""
    if scope["method"] == "POST" and scope["path"] == "/take":
        return ingest_http.Answer(200, [(b"content-length", str(len(body)).encode())], body)
    return None


async def failed(err: BaseException) -> ingest_http.Answer:
    return ingest_http.Answer(503, JSON, b"{}")


async def serve_worker(
    upstream: tuple[str, int],
    handler: ingest_http.Handler | None = None,
    max_body: int = 1 << 20,
    budget: int | None = None,
) -> tuple[asyncio.AbstractServer, int, ingest_http.Server]:
    """A worker's server on a free loopback port (`handler` defaults to taken; `budget` replaces the
    bytes it may hold)."""
    server = ingest_http.Server(handler or taken, upstream, failed, max_body)
    if budget is not None:
        server.budget = budget
    listener = await asyncio.get_running_loop().create_server(lambda: ingest_http.Connection(server), "127.0.0.1", 0)
    return listener, listener.sockets[0].getsockname()[1], server


def post(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


async def read_until(reader: asyncio.StreamReader, *ends: bytes) -> bytes:
    got = b""
    while not all(end in got for end in ends):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, got
        got += chunk
    return got
