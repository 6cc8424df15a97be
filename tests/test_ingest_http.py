"""server/ingest_http.py on its own, real sockets on loopback under uvloop: a request the handler takes
is answered here; one it leaves goes, with what followed it, byte for byte to the upstream server
(a plain asyncio server standing in for the node's hypercorn); an upstream that cannot be reached gets
the `failed` answer; and a client that leaves mid-answer closes the tunnel's upstream connection."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
import uvloop

from aonode.server import ingest_http
from aonode.server.signing import Scope
from tests.helpers.ports import held_port
from tests.helpers.worker_http import failed, post, read_until, serve_worker, taken

UPSTREAM_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nupstream"


async def _recording_upstream(seen: list[bytes], *ends: bytes) -> asyncio.AbstractServer:
    """The node's server standing in: what a connection sent until all of `ends` came, into `seen`;
    then it answers UPSTREAM_ANSWER and closes."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_until(reader, *ends))
        writer.write(UPSTREAM_ANSWER)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(upstream, "127.0.0.1", 0)


def test_taken_requests_are_answered_here_and_the_rest_tunnelled_in_order() -> None:
    async def scenario() -> None:
        seen: list[bytes] = []
        up = await _recording_upstream(seen, b"GET /read", b"after")
        listener, port, server = await serve_worker(("127.0.0.1", up.sockets[0].getsockname()[1]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        read = b"GET /read HTTP/1.1\r\nhost: x\r\n\r\n"
        writer.write(post("/take", b"one") + post("/take", b"two") + read + post("/take", b"after"))
        got = await read_until(reader, b"upstream")
        assert got.index(b"one") < got.index(b"two") < got.index(b"upstream")
        assert got.count(b"HTTP/1.1 200") == 3 and got.count(b"date: ") == 2  # the upstream's own answer as sent
        assert seen == [read + post("/take", b"after")]  # from the first request it leaves on, byte for byte
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the upstream closed: so did the tunnel
        assert server.held == 0  # what was answered here and what the tunnel took is no longer counted
        listener.close()
        up.close()

    uvloop.run(scenario())


def test_an_unreachable_upstream_gets_the_failed_answer() -> None:
    async def scenario() -> None:
        closed = held_port()  # bound, never listening: a connection there is refused
        listener, port, _ = await serve_worker(closed.getsockname())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /read HTTP/1.1\r\nhost: x\r\n\r\n")
        got = await read_until(reader, b"{}")
        assert got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        listener.close()
        closed.close()

    uvloop.run(scenario())


def test_a_client_leaving_mid_answer_closes_the_upstream_connection() -> None:
    async def scenario() -> None:
        upstream_done = asyncio.get_running_loop().create_future()

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_until(reader, b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n")
            try:
                while not reader.at_eof():
                    writer.write(b"z" * 65536)
                    await writer.drain()  # the tunnel's flow control holds it back
                    await asyncio.sleep(0)
            except ConnectionError:
                pass
            upstream_done.set_result(True)

        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        listener, port, _ = await serve_worker(("127.0.0.1", up.sockets[0].getsockname()[1]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        await reader.readexactly(256 * 1024)
        writer.close()  # leaves mid-body
        assert await asyncio.wait_for(upstream_done, 10)
        listener.close()
        up.close()

    uvloop.run(scenario())


def test_a_quiet_connection_is_closed_after_the_keep_alive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that stops mid-head (or just stays idle) does not hold its connection for ever."""
    monkeypatch.setattr(ingest_http, "KEEP_ALIVE_SECONDS", 0.3)

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9))
        sweeper = asyncio.get_running_loop().create_task(server.close_quiet_connections())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/take", b"ok"))
        assert (await read_until(reader, b"ok")).startswith(b"HTTP/1.1 200")
        writer.write(b"POST /take HTTP/1.1\r\nhost: x\r\n")  # a head that never ends
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        sweeper.cancel()
        listener.close()

    uvloop.run(scenario())


def test_a_client_reading_a_pipelined_backlog_slowly_is_not_taken_for_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sent its requests at once and reads their answers slower than they are made holds
    the next request back (no answer piles up unread), for longer than the keep-alive time without
    sending anything: its requests are still being answered, so it is not quiet (hypercorn's keep-alive
    time, too, runs only once no answer is under way), and every answer comes."""
    monkeypatch.setattr(ingest_http, "KEEP_ALIVE_SECONDS", 0.3)
    count, size = 20, 256 * 1024

    async def big(scope: Scope, body: bytes) -> ingest_http.Answer | None:
        return ingest_http.Answer(200, [(b"content-length", str(size).encode())], body * (size // len(body)))

    async def scenario() -> None:
        server = ingest_http.Server(big, ("127.0.0.1", 9), failed, 1 << 20)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: ingest_http.Connection(server), "127.0.0.1", 0)
        sweeper = loop.create_task(server.close_quiet_connections())
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.setblocking(False)
        await loop.sock_connect(sock, listener.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(post("/take", b"abcd") * count)  # all of them, then nothing more sent
        one = len(ingest_http.encode(await big({}, b"abcd")))  # (the date field has a fixed length)
        got = 0
        while got < count * one:
            chunk = await asyncio.wait_for(reader.read(16 * 1024), 10)
            assert chunk, f"closed after {got // one} of {count} answers, while the client was reading"
            got += len(chunk)
            await asyncio.sleep(0.01)
        assert server.held == 0  # the pipelined requests held back and answered: none still counted
        sweeper.cancel()
        listener.close()

    uvloop.run(scenario())


def test_the_keep_alive_time_runs_from_the_answer_not_from_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer that took longer than the keep-alive time (a slow commit) leaves its connection open for
    that time after it, as hypercorn did: a client sending its next request soon after is answered."""
    monkeypatch.setattr(ingest_http, "KEEP_ALIVE_SECONDS", 0.3)

    async def slow(scope: Scope, body: bytes) -> ingest_http.Answer | None:
        await asyncio.sleep(0.5)
        return await taken(scope, body)

    async def scenario() -> None:
        server = ingest_http.Server(slow, ("127.0.0.1", 9), failed, 1 << 20)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: ingest_http.Connection(server), "127.0.0.1", 0)
        sweeper = loop.create_task(server.close_quiet_connections())
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(post("/take", b"first"))
        assert b"first" in await read_until(reader, b"first")
        await asyncio.sleep(0.1)  # well within the keep-alive time after the answer
        writer.write(post("/take", b"second"))
        assert b"second" in await read_until(reader, b"second")
        sweeper.cancel()
        listener.close()

    uvloop.run(scenario())


def test_a_tunnel_waiting_for_its_upstream_stops_reading_its_client() -> None:
    """While the node's server has not taken a tunnel's connection (its accept queue full under load:
    the connect waits for SYN retries, seconds), what the client sends is held in the worker: after one
    more read the worker stops reading it, as it does once connected, instead of holding all of it; what it
    holds for the node's server counts in its budget."""

    async def scenario() -> None:
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # never accepts: one queued connection fills it, later SYNs are dropped
        filler = socket.create_connection(full.getsockname())
        listener, port, server = await serve_worker(full.getsockname())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"x" * (32 << 20))  # sent as fast as the worker reads it
        await asyncio.sleep(2)
        (conn,) = server.connections
        assert conn.tunnel is not None and conn.tunnel.upstream is None  # still connecting
        held = sum(len(chunk) for chunk in conn.tunnel.held)
        assert held <= 2 * 256 * 1024, f"{held} bytes held for a connecting upstream"  # what came first, one read
        assert server.held == held == conn.tunnel.owed()
        writer.close()
        listener.close()
        filler.close()
        full.close()

    uvloop.run(scenario())


def test_a_head_trickled_a_byte_at_a_time_is_closed_a_body_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slowloris head (a byte every 0.1 s, the keep-alive time 0.3 s) is closed once the keep-alive
    time since the connection began has passed, as hypercorn's runs on until a head is whole; each byte
    reset the worker's clock, so such a head held its connection for ever. A body trickled the same way
    is a request under way: it is answered."""
    monkeypatch.setattr(ingest_http, "KEEP_ALIVE_SECONDS", 0.3)

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9))
        sweeper = asyncio.get_running_loop().create_task(server.close_quiet_connections())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"POST /take HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 40  # 4 s a byte at a time
        sent = 0
        while not reader.at_eof() and not writer.is_closing() and sent < len(head):
            try:
                writer.write(head[sent : sent + 1])
            except (RuntimeError, ConnectionError):  # uvloop: the server closed it
                break
            sent += 1
            await asyncio.sleep(0.1)
        try:
            rest = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:  # a byte sent after the server closed, before the client saw it: a reset
            rest = b""
        assert rest == b"" and sent < len(head) // 2, sent  # closed early
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /take HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
        for byte in b"slowbodyok":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        assert (await read_until(reader, b"slowbodyok")).startswith(b"HTTP/1.1 200")
        writer.close()
        sweeper.cancel()
        listener.close()

    uvloop.run(scenario())


def test_a_client_that_leaves_resets_the_tunnels_upstream_at_once() -> None:
    """A client that leaves (a reset) while what it sent waits in the worker for a node not reading it:
    the node's side is reset at once, as the client's own connection to it would be, instead of the
    worker flushing the departed client's bytes into the node (which would read them, and answer a full
    request nobody waits for) and only then closing."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reading = asyncio.Event()
        ended: asyncio.Future[str] = loop.create_future()

        async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_until(reader, b"\r\n\r\n")
            await reading.wait()  # not reading meanwhile: the worker holds what the client sends
            try:
                while await reader.read(1 << 20):
                    pass
                ended.set_result("end of stream")
            except ConnectionResetError:
                ended.set_result("reset")

        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        listener, port, server = await serve_worker(("127.0.0.1", up.sockets[0].getsockname()[1]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"x" * (16 << 20))  # more than the kernel's buffers on the way take
        for _ in range(200):  # until the worker holds some of it (a loaded machine: seconds)
            await asyncio.sleep(0.05)
            tunnel = next(iter(server.connections)).tunnel
            if tunnel is not None and tunnel.upstream is not None and tunnel.upstream.get_write_buffer_size() > 0:
                break
        else:
            raise AssertionError("the worker never held any of the upload")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # the client leaves: a reset
        await asyncio.sleep(0.5)
        reading.set()
        assert await asyncio.wait_for(ended, 10) == "reset"
        listener.close()
        up.close()

    uvloop.run(scenario())


@pytest.mark.parametrize(
    "target",
    [b"http://x/take", b"/take#x"],
    ids=["absolute-form", "fragment"],
)
def test_a_target_hypercorn_does_not_route_as_its_path_goes_to_the_node(target: bytes) -> None:
    """hypercorn's path is the target up to its `?`: `POST http://host/take HTTP/1.1` (absolute form) and
    `POST /take#x` (a fragment) are not /take to it (the node's routes answer 404), where llhttp's URL
    parser gives /take for both, so the worker took them as /take. Such a request goes to the node's
    server, byte for byte."""

    async def scenario() -> None:
        seen: list[bytes] = []
        up = await _recording_upstream(seen, b"targeted")
        listener, port, _ = await serve_worker(("127.0.0.1", up.sockets[0].getsockname()[1]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"POST " + target + b" HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\ntargeted"
        writer.write(request)
        assert (await read_until(reader, b"upstream")).startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 8")
        assert seen == [request]
        listener.close()
        up.close()

    uvloop.run(scenario())


def test_a_worker_stops_reading_once_the_bytes_it_holds_reach_its_budget() -> None:
    """Requests read whole wait for the node (a slow commit): the bytes a worker holds for them, and for
    the requests still arriving, stay within its budget (plus one read per connection): past it, no
    connection's next request is read until answers free bytes. A request once begun is read to its end
    (its body was counted when its head came), so the budget never stops every request half-way; every
    request is answered once the node answers."""
    count, size, budget = 12, 1 << 20, 3 << 20
    release = asyncio.Event()
    bodies: list[bytes] = []

    async def slow(scope: Scope, body: bytes) -> ingest_http.Answer | None:
        bodies.append(body)
        await release.wait()
        bodies.remove(body)
        return ingest_http.Answer(200, [(b"content-length", b"2")], b"ok")

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9), slow, size, budget)
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
        for n, (_, writer) in enumerate(clients):
            writer.write(post("/take", bytes([n]) * size))
        await asyncio.sleep(2)
        held = sum(len(c.buffer) for c in server.connections) + sum(len(b) for b in bodies)
        assert len(bodies) <= budget // size, f"{len(bodies)} requests of {size} bytes held at once"
        assert held <= budget + count * (256 * 1024 + ingest_http.MAX_HEAD), f"{held} bytes held"
        release.set()
        for reader, _ in clients:
            assert (await read_until(reader, b"ok")).startswith(b"HTTP/1.1 200")
        assert server.held == 0 and not server.waiting  # every byte counted was given back
        listener.close()

    uvloop.run(scenario())


def test_requests_waiting_for_room_do_not_fill_the_budget_themselves() -> None:
    """Many connections, each with a request's head and part of its body read while the worker held its
    budget: those bytes wait for room, so they must not be what fills it (counted, they kept the worker
    over its budget with nothing being answered to free it, and every connection waited for ever)."""
    count, size, budget = 24, 600_000, 1 << 20

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9), budget=budget)
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
        for n, (_, writer) in enumerate(clients):
            writer.write(post("/take", bytes([n]) * size) * 2)
        one = len(ingest_http.encode(ingest_http.Answer(200, [(b"content-length", str(size).encode())], b"x" * size)))
        for n, (reader, _) in enumerate(clients):
            got = await asyncio.wait_for(reader.readexactly(2 * one), 10)
            assert got.count(b"HTTP/1.1 200") == 2 and got.count(bytes([n]) * size) == 2
        assert server.held == 0 and not server.waiting
        listener.close()

    uvloop.run(scenario())


def test_a_body_trickled_while_others_wait_for_the_budget_does_not_hold_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request admitted with a large declared body counts all of it against the budget until it has
    come; a client sending a byte every 0.1 s (each one a sign of life: the keep-alive time 0.3 s never
    passes) held the budget so, and every other connection's request waited for ever (with 64 MiB and
    10 MiB bodies, seven such connections stopped a worker). Once others wait for room, a body not
    whole within the keep-alive time of its admission is closed, and the waiting request is answered."""
    monkeypatch.setattr(ingest_http, "KEEP_ALIVE_SECONDS", 0.3)

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9), budget=1 << 20)
        sweeper = asyncio.get_running_loop().create_task(server.close_quiet_connections())
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
        slow.write(f"POST /take HTTP/1.1\r\nhost: x\r\ncontent-length: {1 << 20}\r\n\r\n".encode())

        async def trickle() -> None:
            while not slow.is_closing() and not slow_reader.at_eof():
                try:
                    slow.write(b"x")
                except (RuntimeError, ConnectionError):
                    return
                await asyncio.sleep(0.1)

        trickling = asyncio.get_running_loop().create_task(trickle())
        await asyncio.sleep(0.3)  # admitted: its megabyte is counted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/take", b"waiting"))
        assert (await read_until(reader, b"waiting")).startswith(b"HTTP/1.1 200")
        trickling.cancel()
        writer.close()
        slow.close()
        sweeper.cancel()
        listener.close()

    uvloop.run(scenario())


def test_a_large_request_waiting_for_room_is_not_passed_for_ever_by_smaller_ones() -> None:
    """Five clients keep three 300 kB requests in flight on a 1 MiB budget; a 900 kB request waiting for
    room fits only once the others have drained, and each answer freed room that the next small request
    took first: it waited for as long as they kept coming. The first request waiting for room goes
    first: while it waits, no other is admitted (unless nothing is held)."""

    async def slow(scope: Scope, body: bytes) -> ingest_http.Answer | None:
        await asyncio.sleep(0.02)
        return ingest_http.Answer(200, [(b"content-length", b"2")], b"ok")

    async def scenario() -> None:
        listener, port, server = await serve_worker(("127.0.0.1", 9), slow, budget=1 << 20)
        flowing = True

        async def small() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answered = 0
            while flowing:
                writer.write(post("/take", b"s" * 300_000))
                await read_until(reader, b"ok")
                answered += 1
            writer.close()
            return answered

        smalls = [asyncio.get_running_loop().create_task(small()) for _ in range(5)]
        await asyncio.sleep(0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/take", b"B" * 900_000))
        try:
            assert (await read_until(reader, b"ok")).startswith(b"HTTP/1.1 200")  # (10 s)
        finally:
            flowing = False
        assert sum(await asyncio.gather(*smalls)) > 0
        assert server.held == 0 and not server.waiting
        writer.close()
        listener.close()

    uvloop.run(scenario())
