"""The owner's end of `aonode serve --ingest-workers N`: verified messages in from the worker processes,
their assignments out once durable, over one local stream socket.

Why: one Python process cannot take more than one core of HTTP and signature checking (the GIL), so
worker processes (server/ingest_worker.py) share the listening port, read and verify the schedule
POSTs, and hand each checked message here, to the one process that assigns slots: one group commit,
one hash chain per process, the chain tips this process keeps stay right. (Workers writing the shared
SQLite themselves add no commits per second, fsync bounds them, and starve each other on its lock:
bench/README.md.) A reply goes back only when the commit that holds it is durable, so a worker
answers nothing that could be lost. The requests of one read are scheduled as one batch per process
(Node.schedule_many_later: one group-commit request, one plan, one statement per table), their replies
queued together once it is durable and encoded by the connection's sender thread, not the committing one.

Frames both ways: a 4-byte big-endian length, then CBOR: `[id, pid, message, path, seconds]`
(Message.to_cbor; the request's path and the seconds the worker spent on it so far) in, `[id, status,
body]` out (body: the assignment JSON, or the error JSON of the status; for an assignment of the frame's own
message, placed now, only its fields [slot, timestamp, block-height, block-hash, epoch, hash-chain], which
the worker renders with the message it sent: `rendered`, the same bytes); the reply's request is counted
in the node's HTTP metrics as it is sent (a worker's own registry is never scraped: /metrics is the
node's). In also `[None, path, status, seconds]`, no reply: a schedule request a worker answered
without the sequencer (a refused signature, ...), for the same metrics. Only the
worker processes this node started may connect (their pids, checked with SO_PEERCRED): a message
that arrives here is scheduled without a signature check.
"""

from __future__ import annotations

import functools
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import cast

import cbor2

from aonode.engine.answers import Assignment
from aonode.engine.errors import AONodeError
from aonode.engine.message import Message
from aonode.server import codec, observe
from aonode.server.api import NodeAPI

LENGTH = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a frame larger than this ends the connection (the worker's body limit is lower)
PEERCRED = struct.Struct("3i")  # pid, uid, gid


def take_frame(buffer: bytearray) -> bytes | None:
    """The first whole frame's bytes, taken off the front of `buffer`; None while it holds less than one."""
    if len(buffer) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack_from(buffer)
    if size > MAX_FRAME:
        raise ConnectionError(f"a frame of {size} bytes")
    end = LENGTH.size + size
    if len(buffer) < end:
        return None
    body = bytes(buffer[LENGTH.size : end])
    del buffer[:end]
    return body


class Frames:
    """The frames arriving on a socket, read in large chunks (one recv for many frames under load)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def next(self) -> bytes | None:
        """The next frame's bytes; None when the peer closed the connection between frames."""
        while (body := take_frame(self.buffer)) is None:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                if self.buffer:
                    raise ConnectionError("the connection closed inside a frame")
                return None
            self.buffer += chunk
        return body

    def ready(self) -> list[bytes] | None:
        """The next frame and every other whole frame already received (what one read brought: the
        sequencer schedules them together); None when the peer closed the connection between frames."""
        first = self.next()
        if first is None:
            return None
        out = [first]
        while (body := take_frame(self.buffer)) is not None:
            out.append(body)
        return out


def frame(value: object) -> bytes:
    body = cbor2.dumps(value)
    return LENGTH.pack(len(body)) + body


class SequencerSocket:
    """Listens on a Linux abstract socket named `name`; `allowed()` names the peer pids it serves."""

    def __init__(self, node: NodeAPI, name: str, allowed: Callable[[], set[int]]) -> None:
        self.node = node
        self.allowed = allowed
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind("\0" + name)
        self._listener.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, name="aonode-sequencer", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            pid, _uid, _gid = PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
            if pid not in self.allowed():
                conn.close()  # not a worker this node started: it could schedule unchecked messages
                continue
            threading.Thread(target=self._serve, args=(conn,), name="aonode-sequencer-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        outbox: queue.SimpleQueue[Replies | None] = queue.SimpleQueue()
        threading.Thread(target=_send, args=(conn, outbox), name="aonode-sequencer-out", daemon=True).start()
        frames = Frames(conn)
        try:
            while (raws := frames.ready()) is not None:
                self._schedule(outbox, raws)
        except (OSError, ConnectionError, ValueError, cbor2.CBORDecodeError):
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # the sender's next write fails; it closes the socket
            except OSError:
                pass
            outbox.put(None)

    def _schedule(self, outbox: queue.SimpleQueue[Replies | None], raws: list[bytes]) -> None:
        """The requests of one read, scheduled as one batch per process (in arrival order): one request
        to the group commit and one Future per batch, its replies queued together once durable."""
        batches: dict[str, tuple[list[Reply], list[Message]]] = {}
        refused: list[Outgoing] = []
        for raw in raws:
            rid, pid, blob, *rest = cbor2.loads(raw)
            if rid is None:  # an answer the worker gave: path, status, seconds
                observe.record(str(pid), "POST", int(blob), float(rest[0]))
                continue
            path, seconds = (str(rest[0]), float(rest[1])) if len(rest) >= 2 else (None, 0.0)
            reply = Reply(rid, path, time.perf_counter() - seconds)
            try:
                msg = Message.from_cbor(blob, "a worker's message", own=True)
            except AONodeError as err:
                refused.append((reply, *_error(err)))
                continue
            replies, msgs = batches.setdefault(str(pid), ([], []))
            replies.append(reply)
            msgs.append(msg)
        if refused:
            outbox.put(lambda: refused)
        for pid, (replies, msgs) in batches.items():
            try:
                committed = self.node.schedule_many_later(pid, msgs)
            except AONodeError as err:
                outbox.put(functools.partial(_failed, replies, err))
                continue
            committed.add_done_callback(functools.partial(_queue_outcomes, outbox, replies, msgs))


@dataclass(frozen=True)
class Reply:
    """Where one request's reply goes. Replies are queued for the connection's sender thread, never sent
    by the thread that settles them (the committing thread, which a worker that stops reading would
    otherwise stop for every process of the node)."""

    rid: int
    path: str | None  # the HTTP path it came on, counted in the metrics when the reply is sent
    started: float  # perf_counter when its HTTP request began (as the worker said)

    def count(self, status: int) -> None:
        if self.path is not None:
            observe.record(self.path, "POST", status, time.perf_counter() - self.started)


Outgoing = tuple[Reply, int, bytes | list[object]]  # a reply, its status and body (or fields: _answer)
Replies = Callable[[], list[Outgoing]]  # some replies, encoded when the sender thread calls it


def _send(conn: socket.socket, outbox: queue.SimpleQueue[Replies | None]) -> None:
    """A connection's replies, in order, as many as are ready in one write, each counted in the metrics
    before it is sent; the socket closed at the end."""
    try:
        while (first := outbox.get()) is not None:
            ready, end = first(), False
            while not end and not outbox.empty():
                more = outbox.get()
                end = more is None
                if more is not None:
                    ready.extend(more())
            for reply, status, _ in ready:
                reply.count(status)
            conn.sendall(b"".join(frame([reply.rid, status, body]) for reply, status, body in ready))
            if end:
                return
    except OSError:
        pass  # the worker is gone; what was committed stays committed
    finally:
        conn.close()


def _queue_outcomes(
    outbox: queue.SimpleQueue[Replies | None], replies: list[Reply], msgs: list[Message], done: Future[list[Assignment]]
) -> None:
    """On the committing thread: only queue the batch; its replies are encoded by the sender thread."""
    outbox.put(functools.partial(_outcomes, replies, msgs, done))


def _outcomes(replies: list[Reply], msgs: list[Message], done: Future[list[Assignment]]) -> list[Outgoing]:
    """Each reply of a batch with its assignment, or all with the batch's error (none of it is stored)."""
    err = done.exception()
    if err is None:
        return [(reply, 200, _answer(a, msg)) for reply, msg, a in zip(replies, msgs, done.result(), strict=True)]
    return _failed(replies, err)


def _answer(a: Assignment, msg: Message) -> bytes | list[object]:
    """The assignment's fields when it holds the very message the worker sent (it renders the JSON with
    it); the whole JSON when it is another one's (a message assigned before: the one stored)."""
    if a.message is msg:
        return [a.slot, a.timestamp, a.block_height, a.block_hash, a.epoch, a.hash_chain]
    return codec.dump_json(a.to_json())


Placed = tuple[int, int, int, "str | None", int, str]  # slot, timestamp, block height and hash, epoch, chain


def placed(fields: list[object]) -> Placed:
    """The node's reply fields of an assignment placed now, checked; ValueError when they are not that."""
    if len(fields) != 6 or not all(type(v) is int for v in fields[:3] + fields[4:5]) or type(fields[5]) is not str:
        raise ValueError(f"the node sent no assignment: {fields!r:.200}")
    return cast(Placed, tuple(fields))


def rendered(pid: str, msg: Message, fields: list[object]) -> bytes:
    """The worker's end of `_answer`: the assignment JSON the node would have sent, byte for byte."""
    slot, timestamp, height, block_hash, epoch, chain = placed(fields)
    placed_now = Assignment(pid, slot, msg.id, timestamp, height, block_hash, epoch, chain, msg)
    return codec.dump_json(placed_now.to_json())


def _failed(replies: list[Reply], err: BaseException) -> list[Outgoing]:
    if isinstance(err, AONodeError):
        status, body = _error(err)
    else:
        status, body = 500, codec.error_body(f"internal error: {type(err).__name__}: {err}")
    return [(reply, status, body) for reply in replies]


def _error(err: AONodeError) -> tuple[int, bytes]:
    status = err.status if 400 <= err.status < 600 else 500
    return status, codec.error_body(str(err) or type(err).__name__)
