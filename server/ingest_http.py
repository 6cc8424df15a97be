"""The ingest worker's HTTP/1.1 server: the schedule POSTs answered here, any other request tunnelled.

Why not hypercorn here: hypercorn's HTTP/1.1 (h11, its task groups, the ASGI events) cost a worker more
CPU per item (~1 ms) than the signature check and the answer's signature together (bench/bench_ingest.py).
This server parses a request's head with httptools (llhttp, uvicorn's parser) on uvloop, reads a
Content-Length body, and hands (scope, body) to the worker's handler, which answers a schedule POST itself.
A request the handler does not take (a read, a spawn, a chunked or oversized upload, an `Expect`, anything
odd) turns its connection, from that request on, into a byte tunnel to the node's own server (hypercorn
and the full app), which answers it as on its own port. A client that leaves resets the tunnel's far end.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

from aonode.server.ingest_head import has_bare_lf, parse_head
from aonode.server.ingest_tunnel import Tunnel
from aonode.server.signing import Scope

log = logging.getLogger("aonode.server")
Header = tuple[bytes, bytes]
MAX_HEAD = 16 * 1024  # a longer head (whole or not) goes to the node's server: hypercorn's h11 limit
KEEP_ALIVE_SECONDS = 30.0  # a connection with no request under way and nothing sent for this long is closed
MAX_HELD = 64 << 20  # bytes of requests (read, admitted, or owed by a tunnel) a worker holds, then reads no more


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[Header]  # content-length and content-type included
    body: bytes


# (scope, body) -> the answer (or its bytes as sent: `encode`'s), or None: tunnelled to the node's server
Handler = Callable[[Scope, bytes], Awaitable[Answer | bytes | None]]


@dataclass
class Server:
    """What every connection of one worker shares."""

    handler: Handler
    upstream: tuple[str, int]  # the node's private loopback server
    failed: Callable[[BaseException], Awaitable[Answer | bytes]]  # the answer when the upstream cannot be reached
    max_body: int
    connections: set[Connection] = field(default_factory=set)
    budget: int = MAX_HELD
    held: int = 0  # the connections' charges: what they buffered, answer, or admitted and wait for
    waiting: dict[Connection, None] = field(default_factory=dict)  # paused for the budget, oldest first
    admitting: dict[Connection, None] = field(default_factory=dict)  # heads waiting for room: the oldest goes first
    _waking: bool = False

    def idle(self) -> bool:
        return all(c.idle() for c in self.connections)

    def over(self, extra: int = 0) -> bool:
        return self.held + extra > self.budget

    def recharge(self, conn: Connection, charge: int) -> None:
        """`conn` now holds `charge` bytes; once bytes are freed, the connections waiting read again."""
        freed = charge < conn.charge
        self.held += charge - conn.charge
        conn.charge = charge
        if freed and self.waiting and not self._waking and not self.over():
            self._waking = True
            try:
                for waiter in list(self.waiting):
                    if self.over():
                        break
                    waiter.wake()
            finally:
                self._waking = False

    async def close_quiet_connections(self) -> None:
        """Forever: close connections quiet for KEEP_ALIVE_SECONDS (as hypercorn; a stopped head or body too)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(KEEP_ALIVE_SECONDS / 6)
            for conn in list(self.connections):
                quiet = conn.idle() and loop.time() - conn.last_data > KEEP_ALIVE_SECONDS
                # a body still coming that long after its admission holds room others wait for: a byte
                # at a time, a few such connections held the whole budget for ever
                stalled = conn.admitted and self.waiting and loop.time() - conn.admitted_at > KEEP_ALIVE_SECONDS
                if quiet or stalled:
                    conn.close()


def _declared(scope: Scope) -> int:
    value = next(v for k, v in scope["headers"] if k == b"content-length")
    return int(value) if value.isdigit() else -1


class _Dates:
    """The Date field, made once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, email.utils.formatdate(now, usegmt=True).encode()
        return cls.value


def encode(answer: Answer) -> bytes:
    fields = b"".join(name + b": " + value + b"\r\n" for name, value in answer.headers)
    return status_head(answer.status) + fields + b"\r\n" + answer.body


def wire(answer: Answer | bytes) -> bytes:
    """What is sent for an answer (a handler may give its bytes already encoded)."""
    return answer if isinstance(answer, bytes) else encode(answer)


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    return b"HTTP/1.1 %d %s\r\ndate: " % (status, reason)


def status_head(status: int) -> bytes:
    """An answer's status line and the fields every answer here has (date, server), each line ended."""
    return _status_line(status) + _Dates.now() + b"\r\nserver: aonode\r\n"


class Connection(asyncio.Protocol):
    """One client connection: requests answered in order, one at a time, until a tunnel takes over."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a request is being answered
        self.tunnel: Tunnel | None = None
        self.closing = False
        self.unread = False  # the client does not read its answers: no more requests taken until it does
        self.eof = False  # the client half-closed: what it sent is still answered, then the connection closes
        self.task: asyncio.Task[None] | None = None  # the answer or tunnel under way (the loop keeps tasks weakly)
        # Bytes held against the worker's budget (Server.held): the request being answered, and while one is
        # (pipelined) or once the request at the buffer's front is admitted (its body is then read to its end
        # whatever the budget), max(buffered, admitted). Not a head waiting to be admitted (at most MAX_HEAD
        # and one read): counted, those could fill the budget with requests that wait for room no answer frees.
        self.charge = self.admitted = self.answering = 0
        self.admitted_at = 0.0  # loop time the request at the buffer's front was admitted
        self.queued = False  # paused until the worker holds less than its budget
        # when the connection began, was last answered, or last sent a body's bytes (not a head's: a head trickled
        # a byte at a time must not hold the connection for ever; hypercorn's keep-alive time runs until it is whole)
        self.last_data = asyncio.get_running_loop().time()

    def idle(self) -> bool:
        # `unread`: its next request waits for the client to read the answers before it (under way)
        return not self.busy and not self.unread and self.tunnel is None and not self.queued

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, though not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.tunnel is not None:
            self.tunnel.client_gone()
        self.server.waiting.pop(self, None), self.server.admitting.pop(self, None)
        self.buffer.clear()
        self.admitted = 0
        self._recount()  # what is being answered is freed once answered

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.send(data)
            return
        self.buffer += data
        self._recount()
        if not self.busy and not self.unread:
            self._next()
        elif len(self.buffer) > self.server.max_body + MAX_HEAD and self.transport is not None:
            self.transport.pause_reading()  # pipelined past what one request may hold: wait for the answer
        elif self.server.over():
            self._queue()  # pipelined while the worker holds its budget

    def eof_received(self) -> bool | None:
        """The client sent all it will (a half-close, or it left): the requests it sent are answered, as
        hypercorn answers them, a tunnel passing the end on to the node's server; then the connection
        closes. A client that left is seen at the next write (a reset), which closes a tunnel's far end."""
        self.eof = True
        if self.tunnel is not None:
            self.tunnel.client_eof()
            return True
        return True if self.busy or self.unread else None  # else: no whole request left to answer

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_upstream(True)
        elif self.transport is not None:  # a client pipelining requests without reading the answers must
            self.unread = True  # not make this process hold them all: it reads nothing more until it does
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_upstream(False)
        elif self.unread and self.transport is not None:
            self.unread = False
            if not self.busy:
                self._more()

    def close_if_idle(self) -> None:
        if self.idle() and not self.buffer:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost closes a tunnel's far end

    def _next(self) -> None:
        """Answer the buffered request, or wait for the rest of it."""
        end = self.buffer.find(b"\r\n\r\n")
        head = end + 4 if end >= 0 else len(self.buffer)
        if head > MAX_HEAD or has_bare_lf(self.buffer, head):
            self._tunnel()  # a long head, or bare LF line ends (llhttp refuses them): the node's h11 answers
            return
        if end < 0:
            if self.server.over():
                self._queue()
            return
        assert self.transport is not None
        scope = parse_head(bytes(self.buffer[: end + 4]), self.transport.get_extra_info("sockname")[:2])
        declared = -1 if scope is None else _declared(scope)
        if scope is None or not 0 <= declared <= self.server.max_body:
            self._tunnel()
            return
        if not self.admitted:  # its body will be read to the end: counted now (alone, any size goes)
            first, need = next(iter(self.server.admitting), self), max(len(self.buffer), end + 4 + declared)
            if self.server.held > self.charge and (first is not self or self.server.over(need - self.charge)):
                self.server.admitting[self] = None
                self._queue()
                return
            self.server.admitting.pop(self, None)
            self.admitted, self.admitted_at = end + 4 + declared, asyncio.get_running_loop().time()
            self._recount()
            self._unqueue()
        if len(self.buffer) < end + 4 + declared:
            self.last_data = asyncio.get_running_loop().time()  # a body on its way: the request has begun
            return
        raw = bytes(self.buffer[: end + 4 + declared])
        del self.buffer[: end + 4 + declared]
        self.admitted, self.answering = 0, len(raw)
        self.busy = True
        self._recount()
        self.task = asyncio.get_running_loop().create_task(self._answer(scope, raw, raw[end + 4 :]))

    async def _answer(self, scope: Scope, raw: bytes, body: bytes) -> None:
        try:
            answer = await self.server.handler(scope, body)
        except Exception:  # the handler answers its errors; one that escaped it leaves no answer to give
            log.exception("ingest worker: no answer for %s %s", scope["method"], scope["path"])
            self.close()
            return
        finally:
            self.answering = 0
            self._recount()
        if self.closing or self.transport is None:
            return
        if answer is None:
            self.buffer[:0] = raw  # this request and what followed it go to the node's server
            self._tunnel()
            return
        self.transport.write(wire(answer))  # may call pause_writing: the client is not reading
        self.busy = False
        self._recount()
        self.last_data = asyncio.get_running_loop().time()  # the keep-alive time runs from the answer
        if self.unread:
            return  # resume_writing takes the next request
        self._more()

    def _more(self) -> None:
        """After an answer: the next request, if any; after a half-close, the end once none is left."""
        assert self.transport is not None
        if self.server.over() and not self.eof:
            self._queue()
        else:
            self._unqueue()
            self.transport.resume_reading()
        if self.buffer:
            self._next()
        if self.eof and self.idle():
            self.close()  # what it sent is answered (a partial request left can never end)

    def _tunnel(self) -> None:
        assert self.transport is not None
        self.busy = True
        self.tunnel = Tunnel(self.transport, bytes(self.buffer), self._recount)  # counts what it owes the node
        self.buffer.clear()
        self._unqueue()  # the tunnel's own flow control holds what it buffers
        self._recount()
        if self.eof:
            self.tunnel.client_eof()
        self.transport.resume_reading()  # if a pipelined backlog had paused it: the tunnel takes it all
        self.task = asyncio.get_running_loop().create_task(self.tunnel.open(self.server.upstream, self._refused))

    def _recount(self) -> None:
        buffered = max(len(self.buffer), self.admitted) if self.admitted or self.busy else 0
        self.server.recharge(self, buffered + self.answering + (self.tunnel.owed() if self.tunnel else 0))

    def _queue(self) -> None:
        """Read nothing more until the worker holds less than its budget (Server.recharge wakes it)."""
        assert self.transport is not None
        self.queued = True
        self.server.waiting[self] = None
        self.transport.pause_reading()

    def _unqueue(self) -> None:
        if self.queued:
            self.queued = False
            self.server.waiting.pop(self, None)
            if not self.unread and self.transport is not None:
                self.transport.resume_reading()

    def wake(self) -> None:
        """The worker holds less than its budget again: read on, and take a request waiting for room."""
        if self.closing or self.transport is None:
            self.server.waiting.pop(self, None)
        elif self.busy or self.unread:
            self._unqueue()  # pipelined bytes: read on; the answer under way takes the next request
        else:
            self._more()

    async def _refused(self, err: BaseException) -> bytes:
        return wire(await self.server.failed(err))
