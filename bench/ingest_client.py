"""A lean HTTP/1.1 load generator for ingest benches: pre-encoded POSTs over keep-alive connections.

Why not httpx: on this 2-core machine the client shares the CPU with the node, and httpx spends
several times the CPU per request that the node's own parsing does, so it measured the client.
Here each request is bytes prepared before the clock starts; a connection writes one, reads the
status line, headers and Content-Length body, and goes on (reconnecting after `connection: close`).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Outcome:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def encode_post(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length"))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, connection closes, body) of one answer with a Content-Length body."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, closes = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            closes = True
    return status, closes, await reader.readexactly(length)


async def post_all(host: str, port: int, requests: list[bytes], connections: int) -> Outcome:
    """Send every request once, `connections` at a time; an answer other than 200 is a failure."""
    pending = list(reversed(requests))
    out = Outcome()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                raw = pending.pop()
                started = time.perf_counter()
                writer.write(raw)
                status, closes, body = await _read_answer(reader)
                out.latencies.append(time.perf_counter() - started)
                if status != 200:
                    out.failures.append(f"{status}: {body[:200]!r}")
                if closes:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    out.seconds = time.perf_counter() - started
    return out
