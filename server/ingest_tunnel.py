"""An ingest worker's tunnel: a client connection handed, from one request on, to the node's own server.

Bytes go both ways unchanged (server/ingest_http.py decides when a connection becomes one), with flow
control each way (HIGH_WATER buffered one way stops the other side's reading). A client that leaves
resets the node's side at once, as its own connection to the node would have been.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import cast

HIGH_WATER = 1 << 20  # bytes buffered one way in a tunnel before its other side stops reading


class Tunnel:
    """Bytes both ways between a client and the node's server, with flow control each way."""

    def __init__(self, client: asyncio.Transport, first: bytes) -> None:
        self.client = client
        self.held = [first] if first else []  # what the client sent before the upstream was connected
        self.held_size = len(first)
        self.upstream: asyncio.Transport | None = None
        self.gone = False
        self.eof = False  # the client half-closed: the upstream gets the end after what it sent

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
        if not self.client.is_closing():
            self.client.resume_reading()  # before the held bytes: writing them may pause it again
        for chunk in self.held:
            self.upstream.write(chunk)
        self.held.clear()
        if self.eof:
            self.upstream.write_eof()

    def send(self, data: bytes) -> None:
        if self.upstream is None:
            self.held.append(data)
            self.held_size += len(data)
            if self.held_size > HIGH_WATER and not self.client.is_closing():
                self.client.pause_reading()  # the node's server has not taken the connection yet
        else:
            self.upstream.write(data)

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
        self.client.close()  # after what is buffered for the client is written


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


class _Upstream(asyncio.Protocol):
    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.tunnel.client.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.tunnel.client.write(data)

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
