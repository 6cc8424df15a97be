"""server/sequencer_socket.py on a real Node and SQLite store: the node's end of the workers' hand-off.
A worker that stops reading its replies (stopped, swapped out, its loop stalled) must not stop the
node's other schedules: its replies wait for it, the committing thread does not."""

from __future__ import annotations

import os
import secrets
import socket

import cbor2

from aonode.engine.node import Node
from aonode.server.sequencer_socket import Frames, SequencerSocket, frame
from tests.helpers.ingest import node, ping, spawned  # noqa: F401 - node: the fixture
from tests.helpers.threads import started

UNREAD = 600  # replies a stalled worker leaves unread: more than a local socket's buffer holds


def test_a_worker_that_reads_no_replies_does_not_stop_the_nodes_schedules(node: Node) -> None:  # noqa: F811
    pid = spawned(node)
    name = f"aonode-test-{secrets.token_hex(6)}"
    sequencer = SequencerSocket(node, name, lambda: {os.getpid()})  # this process plays the worker
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stalled.connect("\0" + name)
        stalled.sendall(b"".join(frame([n, pid, ping(node, n).to_cbor()]) for n in range(UNREAD)))

        def own_schedules() -> None:  # the node's own front, or another worker
            for n in range(20):
                node.schedule(pid, ping(node, UNREAD + n))

        started(own_schedules).join(30, "the node's schedules stopped behind a worker that reads no replies")
        replies, frames = {}, Frames(stalled)
        for _ in range(UNREAD):  # the stalled worker reads at last: every reply is there, each a slot
            raw = frames.next()
            assert raw is not None
            rid, status, _body = cbor2.loads(raw)
            replies[rid] = status
        assert replies == dict.fromkeys(range(UNREAD), 200)
    finally:
        stalled.close()
        sequencer.close()


def test_a_frame_no_worker_makes_ends_only_its_own_connection(node: Node) -> None:  # noqa: F811
    """Frames that decode as CBOR but not as a worker's (a metrics note without its seconds, a message
    that is not bytes, a status that is not a number): that connection ends; the one sequencer thread
    goes on serving the other workers."""
    pid = spawned(node)
    name = f"aonode-test-{secrets.token_hex(6)}"
    sequencer = SequencerSocket(node, name, lambda: {os.getpid()})  # this process plays the workers
    try:
        bad_frames = ([None, "/x", 200], [None, "/x", "two hundred", 0.1], [1, pid, 12345], [2, pid, b"x", 7, "s"])
        for n, bad in enumerate(bad_frames):
            broken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            broken.connect("\0" + name)
            broken.sendall(frame(bad))
            broken.settimeout(30)
            assert broken.recv(1) == b"", f"the connection that sent {bad!r} was not ended"
            broken.close()
            good = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            good.connect("\0" + name)
            good.sendall(frame([7, pid, ping(node, n).to_cbor()]))
            good.settimeout(30)
            raw = Frames(good).next()
            assert raw is not None, f"no reply after a connection sent {bad!r}"
            rid, status, _body = cbor2.loads(raw)
            assert (rid, status) == (7, 200)
            good.close()
    finally:
        sequencer.close()
