"""server/ingest_worker.Sequencer's writes to the node's sequencer: a request goes out at once when the
node holds none of this worker's requests; while it holds some, requests wait (at most FLUSH_WINDOW) and
go together, and as soon as the node has answered all it held, what waits goes at once. Real uvloop
transports on a real socket pair, the node's end played by the test (server/sequencer_socket's frames)."""

from __future__ import annotations

import asyncio
import socket

import cbor2
import pytest
import uvloop

from aonode.engine.errors import Busy
from aonode.engine.message import Message
from aonode.server import ingest_worker
from aonode.server.ingest_worker import Sequencer
from aonode.server.sequencer_socket import frame, take_frame

WINDOW = 30.0  # seconds: longer than the test, so only an early write can be seen in it


async def _frames(sock: socket.socket, buffer: bytearray, timeout: float) -> list[list[object]]:
    """The request frames the node's end receives within `timeout` (at least one), or [] if none."""
    loop = asyncio.get_running_loop()
    try:
        buffer += await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), timeout)
    except TimeoutError:
        return []
    out = []
    while (body := take_frame(buffer)) is not None:
        out.append(cbor2.loads(body))
    return out


async def _linked() -> tuple[Sequencer, socket.socket, asyncio.Task[None]]:
    """A worker's Sequencer on one end of a socket pair, reading its replies; the node's end (non-blocking)."""
    ours, node = socket.socketpair()
    node.setblocking(False)
    sequencer = Sequencer(*await asyncio.open_unix_connection(sock=ours))
    return sequencer, node, asyncio.get_running_loop().create_task(sequencer._replies())


def _pings(count: int) -> list[Message]:
    return [Message.create(owner="o" * 43, tags=[("Action", "Ping")], data=str(i)) for i in range(count)]


def test_requests_wait_while_the_node_holds_some_and_go_once_it_answered_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_worker, "FLUSH_WINDOW", WINDOW)

    async def scenario() -> None:
        sequencer, node, replies = await _linked()
        buffer = bytearray()
        msgs = _pings(3)

        first = asyncio.ensure_future(sequencer.schedule("p" * 43, msgs[0]))
        [sent] = await _frames(node, buffer, 5)  # the node held none: at once, not a window later
        assert sent[0] == 0
        later = [asyncio.ensure_future(sequencer.schedule("p" * 43, m)) for m in msgs[1:]]
        assert await _frames(node, buffer, 0.3) == []  # the node holds one: these wait for the window
        node.sendall(frame([0, 200, b'{"slot":1}']))
        assert await asyncio.wait_for(first, 5) == (200, b'{"slot":1}')
        sent_together = await _frames(node, buffer, 5)  # answered: the waiting ones go now, in one write
        assert [f[0] for f in sent_together] == [1, 2]
        node.sendall(frame([1, 200, b"{}"]) + frame([2, 200, b"{}"]))
        assert [await asyncio.wait_for(f, 5) for f in later] == [(200, b"{}"), (200, b"{}")]
        node.close()
        await asyncio.wait_for(replies, 5)

    uvloop.run(scenario())


def test_requests_waiting_for_the_window_are_answered_busy_when_the_node_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's end closes while it holds one request and two more wait for the window: all three are
    answered Busy at once (none waits for the window or for ever, none is known durable), the window's
    write to the closed link raises nothing, and a later request is refused at once."""
    monkeypatch.setattr(ingest_worker, "FLUSH_WINDOW", WINDOW)

    async def scenario() -> None:
        sequencer, node, replies = await _linked()
        msgs = _pings(4)
        first = asyncio.ensure_future(sequencer.schedule("p" * 43, msgs[0]))
        assert len(await _frames(node, bytearray(), 5)) == 1
        later = [asyncio.ensure_future(sequencer.schedule("p" * 43, m)) for m in msgs[1:3]]
        await asyncio.sleep(0.05)
        assert sequencer._timer is not None  # they wait for the window
        node.close()
        for waiting in (first, *later):
            with pytest.raises(Busy):
                await asyncio.wait_for(waiting, 5)
        await asyncio.wait_for(replies, 5)
        sequencer._flush()  # what the window's timer does later: its write to the closed link raises nothing
        with pytest.raises(Busy):
            await asyncio.wait_for(sequencer.schedule("p" * 43, msgs[3]), 5)

    uvloop.run(scenario())
