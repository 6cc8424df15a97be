"""What an ingest worker's tunnels hold (server/ingest_tunnel.py), real sockets on loopback under uvloop:
many clients that ask the node's server (a plain asyncio server standing in for it) for a large answer
and never read it make the worker hold at most UPSTREAM_READ bytes each for them (before: up to 1 MiB
each way per tunnel, outside the worker's byte budget), none of it counted in the budget, so that a
request the worker answers itself and a read through another tunnel are still answered at once; and
a tunnel begun while the client has not taken the answer before it does not read for it meanwhile."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import uvloop

from aonode.server import ingest_http, ingest_tunnel
from tests.helpers.worker_http import post, read_until, serve_worker

SLOW_CLIENTS = 16
BIG = 64 << 20  # the answer a slow client asks for: past what the kernel's socket buffers take


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The node's server standing in: `GET /big` answers BIG bytes, anything else 5 bytes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        size = BIG if head.startswith(b"GET /big ") else 5
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(0, size, 1 << 16):
            writer.write(b"z" * min(1 << 16, size))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _held_for_clients(server: ingest_http.Server) -> list[int]:
    """Per tunnel: bytes this process holds toward its client, and what it owes the node's server."""
    return [
        conn.transport.get_write_buffer_size() + conn.tunnel.owed()
        for conn in server.connections
        if conn.tunnel is not None and conn.transport is not None
    ]


def test_slow_tunnel_clients_hold_little_each_and_stop_no_other_request() -> None:
    async def scenario() -> None:
        up = await asyncio.start_server(_upstream, "127.0.0.1", 0)
        listener, port, server = await serve_worker(("127.0.0.1", up.sockets[0].getsockname()[1]))
        slow = []
        for _ in range(SLOW_CLIENTS):  # they never read: their socket's receive buffer as small as it goes
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            sock.send(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            slow.append(sock)
        most, most_total = 0, 0
        for _ in range(60):  # 3 s: every socket buffer on the way fills, then the worker's own
            await asyncio.sleep(0.05)
            held = _held_for_clients(server)
            most, most_total = max([most, *held]), max(most_total, sum(held))
        assert len(_held_for_clients(server)) == SLOW_CLIENTS
        assert most <= ingest_tunnel.UPSTREAM_READ, f"{most} bytes held for one slow client"
        assert most_total <= SLOW_CLIENTS * ingest_tunnel.UPSTREAM_READ, f"{most_total} bytes for slow clients"
        assert most_total > 0  # they did fill the buffers on the way (else this test shows nothing)
        assert server.held == 0  # a slow reader's bytes are not the budget's: they stop no request

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/take", b"answered here") + b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n")
        got = await read_until(reader, b"answered here", b"zzzzz")  # a taken request, then a tunnelled read
        assert got.count(b"HTTP/1.1 200") == 2
        writer.close()
        for sock in slow:
            sock.close()
        listener.close()
        up.close()

    uvloop.run(scenario())


class _Client(asyncio.Protocol):
    """The worker's side of a client connection, driving a tunnel as ingest_http.Connection does."""

    def __init__(self, made: asyncio.Future[asyncio.Transport]) -> None:
        self.made = made
        self.tunnel: ingest_tunnel.Tunnel | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.set_result(cast(asyncio.Transport, transport))

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_upstream(True)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_upstream(False)


def test_a_tunnel_begun_behind_an_answer_the_client_has_not_taken_reads_no_more_for_it() -> None:
    """An answer the worker gave is still in the client's buffer (its pause came before the tunnel
    had an upstream to pause) when the next request on the connection becomes a tunnel: the node's
    answer is not read into that buffer while the client takes nothing (before: all of it)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        up = await asyncio.start_server(_upstream, "127.0.0.1", 0)
        made: asyncio.Future[asyncio.Transport] = loop.create_future()
        protocol = _Client(made)
        listener = await loop.create_server(lambda: protocol, "127.0.0.1", 0)
        client = socket.socket()  # never reads
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await loop.sock_connect(client, listener.sockets[0].getsockname())
        transport = await made
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 8388608\r\n\r\n" + b"a" * (8 << 20))
        await asyncio.sleep(0.5)
        before = transport.get_write_buffer_size()
        assert before > 0  # the kernel's buffers took what they could: the rest waits here
        protocol.tunnel = ingest_tunnel.Tunnel(transport, b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")

        async def refused(err: BaseException) -> bytes:
            raise AssertionError(err)

        await protocol.tunnel.open(("127.0.0.1", up.sockets[0].getsockname()[1]), refused)
        await asyncio.sleep(2)
        held = transport.get_write_buffer_size() - before
        assert held <= ingest_tunnel.UPSTREAM_READ, f"{held} bytes of the node's answer held for the client"
        client.close()
        listener.close()
        up.close()

    uvloop.run(scenario())
