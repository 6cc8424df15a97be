"""A lean HTTP/1.1 load generator for ingest benches: pre-encoded POSTs over raw keep-alive sockets.

Why not httpx, nor asyncio streams: on this 2-core machine the client shares the CPU with the node, and
httpx spends several times the CPU per request that the node's own parsing does, so it measured the
client; asyncio's StreamReader (a readline per header field, a task wake-up per await) still cost
~0.2 ms per item. Here each request is bytes prepared before the clock starts, and each connection is
an asyncio Protocol on uvloop (when installed): it writes one request, collects the answer's bytes as
they come, takes its status and Content-Length from the head, and writes the next request from
`data_received` itself (no task, no await per item). Every answer is still read whole and checked: its
status must be 200 and its JSON body must hold an integer `slot` (collected, so the caller can check
that no two answers share one); `connection: close` makes the connection reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in aonode's dependencies
    uvloop = None


@dataclass
class Outcome:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # the `slot` of every 200 answer, in arrival order


def encode_post(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Answer:
    """One answer's parts the client checks."""

    status: int
    closes: bool
    body: bytes


def take_answer(buffer: bytearray) -> Answer | None:
    """The first whole answer (status line, head, Content-Length body) taken off `buffer`, or None
    while it is incomplete; ValueError when the head is not HTTP/1.1 with a Content-Length."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    if not head.startswith(b"http/1.1 "):
        raise ValueError(f"not an HTTP/1.1 answer: {head[:40]!r}")
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("an answer without content-length")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return Answer(int(head[9:12]), b"\r\nconnection: close" in head, body)


def check(answer: Answer, out: Outcome) -> None:
    """A failure unless the answer is a 200 whose JSON body holds an integer `slot`."""
    if answer.status != 200:
        out.failures.append(f"{answer.status}: {answer.body[:200]!r}")
        return
    try:
        slot = json.loads(answer.body)["slot"]
    except (ValueError, KeyError, TypeError):
        slot = None
    if isinstance(slot, int) and not isinstance(slot, bool):
        out.slots.append(slot)
    else:
        out.failures.append(f"200 without an integer slot: {answer.body[:200]!r}")


class _Client(asyncio.Protocol):
    """One keep-alive connection sending `pending` requests one at a time until none is left."""

    def __init__(self, pending: list[bytes], out: Outcome, done: asyncio.Future[None]) -> None:
        self.pending, self.out, self.done = pending, out, done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.waiting = False  # a request is written and its answer not yet whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is one, though not a subclass)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if not self.pending:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.waiting = True
        self.transport.write(self.pending.pop())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            answer = take_answer(self.buffer)
        except ValueError as err:
            self._fail(str(err))
            return
        if answer is None:
            return
        self.out.latencies.append(time.perf_counter() - self.started)
        self.waiting = False
        check(answer, self.out)
        if self.buffer:
            self._fail(f"{len(self.buffer)} bytes after an answer to one request")
        elif answer.closes:
            assert self.transport is not None
            self.transport.close()  # connection_lost opens the next connection
        else:
            self._send()

    def _fail(self, why: str) -> None:
        self.out.failures.append(why)
        self.waiting = False
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.out.failures.append(f"the server closed the connection before answering ({exc})")
        if not self.done.done():
            self.done.set_result(None)


async def _connection(host: str, port: int, pending: list[bytes], out: Outcome) -> None:
    """Requests from `pending` on one connection after another until none is left."""
    loop = asyncio.get_running_loop()
    while pending:
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda: _Client(pending, out, done), host, port)  # noqa: B023
        await done
        if out.failures and not out.slots:
            return  # nothing gets through: do not try the rest


async def post_all(host: str, port: int, requests: list[bytes], connections: int) -> Outcome:
    """Send every request once, `connections` at a time; an answer other than a 200 with a slot is a failure."""
    pending = list(reversed(requests))
    out = Outcome()
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, pending, out) for _ in range(connections)))
    out.seconds = time.perf_counter() - started
    return out


def run(host: str, port: int, requests: list[bytes], connections: int) -> Outcome:
    """`post_all` on a fresh event loop (uvloop's when installed: less CPU per item for the client)."""
    if uvloop is not None:
        return uvloop.run(post_all(host, port, requests, connections))
    return asyncio.run(post_all(host, port, requests, connections))
