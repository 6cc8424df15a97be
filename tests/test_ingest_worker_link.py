"""server/ingest_worker.py's link to the node's sequencer: a schedule sent on a link that broke before the
worker's reply reader noticed is a 503 Busy (retry), never an unhandled error that hypercorn turns into an
empty 500. Real uvloop transport on a real socket pair (the event loop `aonode serve` runs)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from aonode.engine.errors import Busy
from aonode.engine.message import Message
from aonode.server.ingest_worker import Sequencer


async def _broken_link() -> Sequencer:
    """A Sequencer whose peer has closed and whose transport has seen it, before its reply reader ran."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    theirs.close()
    assert await reader.read(1) == b""  # the transport has seen the close
    return Sequencer(reader, writer)


def test_a_schedule_on_a_link_broken_unseen_is_busy_not_an_error() -> None:
    async def scenario() -> None:
        sequencer = await _broken_link()
        sequencer.writer.write(b"\0")  # the first write after the close is dropped quietly; the next ones raise
        await asyncio.sleep(0.01)
        msg = Message.create(owner="o" * 43, tags=[("Action", "Ping")], data="x")
        with pytest.raises(Busy):
            await asyncio.wait_for(sequencer.schedule("p" * 43, msg), 10)
        assert sequencer.pending == {}  # nothing left waiting for an answer that cannot come
        sequencer.observed("/x", 200, 0.1)  # the metrics frame is dropped, not raised

    uvloop.run(scenario())
