"""An ingest worker's tunnel: a client connection handed, from one request on, to the node's own server.

Bytes go both ways unchanged (server/ingest_http.py decides when a connection becomes one), with flow
control each way: a side is read only while what was read from it has been taken whole by the other
side's socket (the kernel's socket buffers do the buffering, as for any connection). A client that leaves
resets the node's side at once, as its own connection to the node would have been.

What a tunnel holds in this process, so that many slow clients cannot make a worker hold much:
- toward the client, at most UPSTREAM_READ bytes (one read of the node's answer, written to a client
  that does not take it): outside the worker's budget, so clients that read slowly (or never) cannot
  stop other requests; with C connections a worker holds at most C x UPSTREAM_READ of them;
- toward the node, the bytes the node's server has not taken yet (`owed`): the request the worker read
  before handing its connection over, and then at most one read of the client's: counted in the
  worker's budget (ingest_http.MAX_HELD) like the requests it answers itself.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import cast

UPSTREAM_READ = 64 * 1024  # bytes read from the node's server at a time: the most held for a client


class Tunnel:
    """Bytes both ways between a client and the node's server, with flow control each way; `changed` is
    called when what it owes the node's server (`owed`) may have changed."""

    def __init__(self, client: asyncio.Transport, first: bytes, changed: Callable[[], None] = lambda: None) -> None:
        self.client = client
        self.held = [first] if first else []  # what the client sent before the upstream was connected
        self.held_size = len(first)
        self.changed = changed
        self.upstream: asyncio.Transport | None = None
        self.gone = False  # either side closed: nothing owed any more
        self.eof = False  # the client half-closed: the upstream gets the end after what it sent

    def owed(self) -> int:
        """Bytes the client sent that the node's server has not taken yet (held here until it does)."""
        if self.gone:
            return 0
        return self.held_size if self.upstream is None else self.upstream.get_write_buffer_size()

    async def open(self, upstream: tuple[str, int], refused: Callable[[BaseException], Awaitable[bytes]]) -> None:
        """Connect to the node's server at `upstream` and pass on what is held; the client gets what
        `refused` says when the connection cannot be made."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(lambda: _Upstream(self), *upstream)
        except OSError as err:
            if not self.gone:
                self.client.write(await refused(err))
                self.client.close()
            return
        if self.gone:
            transport.close()
            return
        self.upstream = transport
        if self.client.get_write_buffer_size():  # the client has not taken an answer before this one yet:
            transport.pause_reading()  # its pause came before there was an upstream; its resume reads on
        if not self.client.is_closing():
            self.client.resume_reading()  # before the held bytes: writing them pauses it again if not taken
        for chunk in self.held:
            self.upstream.write(chunk)
        self.held.clear()
        self.held_size = 0
        if self.eof:
            self.upstream.write_eof()
        self.changed()

    def send(self, data: bytes) -> None:
        if self.upstream is None:
            self.held.append(data)
            self.held_size += len(data)
            if not self.client.is_closing():
                self.client.pause_reading()  # the node's server has not taken the connection yet
        else:
            self.upstream.write(data)  # not taken whole: _Upstream.pause_writing stops the client's reading
        self.changed()

    def pause_upstream(self, pause: bool) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            (self.upstream.pause_reading if pause else self.upstream.resume_reading)()

    def client_eof(self) -> None:
        self.eof = True
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.write_eof()

    def client_gone(self) -> None:
        """The client closed or left: the node's side is reset at once, as the client's own connection
        to it would be (it stops streaming to nobody), not first sent what the client left behind."""
        self.gone = True
        if self.upstream is not None:
            _reset(self.upstream)

    def upstream_gone(self) -> None:
        self.gone = True
        self.client.close()  # after what is buffered for the client is written
        self.changed()


def _reset(transport: asyncio.Transport) -> None:
    """Close with a reset: what is buffered either way is dropped (abort() alone drops this process's
    buffer, and the kernel still sends its own, then a FIN that reads as a whole request's end)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Upstream(asyncio.BufferedProtocol):
    """The node's server's side: read UPSTREAM_READ at a time into one buffer, and not again until the
    client's socket has taken what was read (its transport then holds nothing: write buffer limit 0)."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.buffer = memoryview(bytearray(UPSTREAM_READ))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=0)  # anything left unsent pauses the client's reading
        self.tunnel.client.set_write_buffer_limits(high=0)  # and the node's answer: pauses reading it

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.tunnel.client.write(bytes(self.buffer[:nbytes]))

    def eof_received(self) -> bool | None:
        return None  # the node's server closed its side: close the tunnel

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.upstream_gone()

    def pause_writing(self) -> None:
        if not self.tunnel.client.is_closing():
            self.tunnel.client.pause_reading()

    def resume_writing(self) -> None:
        if not self.tunnel.client.is_closing():
            self.tunnel.client.resume_reading()
        self.tunnel.changed()  # the node's server took all it was owed
