"""The owner's end of `aonode serve --ingest-workers N`: verified messages in from the worker processes,
their assignments out once durable, over one local stream socket.

Why: one Python process cannot take more than one core of HTTP and signature checking (the GIL), so
worker processes (server/ingest_worker.py) share the listening port, read and verify the schedule
POSTs, and hand each checked message here, to the one process that assigns slots: one group commit,
one hash chain per process, the chain tips this process keeps stay right. (Workers writing the shared
SQLite themselves add no commits per second, fsync bounds them, and starve each other on its lock:
bench/README.md.) A reply goes back only when the commit that holds it is durable, so a worker
answers nothing that could be lost. What all workers sent since the last look is scheduled as one batch
per process (Node.schedule_many_later: one group-commit request, one plan, one statement per table), its
replies encoded and written together once it is durable (SequencerSocket: one thread reads every worker,
none waits for one to read its replies).

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
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import cast

import cbor2

from aonode.engine.answers import Assignment
from aonode.engine.errors import AONodeError
from aonode.engine.message import Message, from_own_cbor
from aonode.server import codec, observe
from aonode.server.api import NodeAPI

LENGTH = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a frame larger than this ends the connection (the worker's body limit is lower)
PEERCRED = struct.Struct("3i")  # pid, uid, gid
READ_SIZE = 1 << 20  # bytes read from a worker at most at once (many frames under load)


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
    """Listens on a Linux abstract socket named `name`; `allowed()` names the peer pids it serves.

    One thread (`aonode-sequencer`) accepts the workers and reads every connection (a selector): the
    frames all workers sent since its last look are scheduled together, one batch per process, so one
    group commit holds them in one request (no savepoint, one plan) instead of one per connection. The
    thread that settles a batch (the committing one) only queues it and wakes this one, which encodes and
    writes its replies with non-blocking sends: what a worker that stops reading leaves in its socket's
    buffer waits in its Link until the socket takes it, holding up neither the commits nor other workers."""

    def __init__(self, node: NodeAPI, name: str, allowed: Callable[[], set[int]]) -> None:
        self.node = node
        self.allowed = allowed
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind("\0" + name)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        # Each read lands here first: a recv of a new 1 MiB bytes object costs ~20 us more (malloc grows and
        # trims the thread's heap every time), a few frames' copy much less.
        self._chunk = bytearray(READ_SIZE)
        self._chunk_view = memoryview(self._chunk)
        self._settled: queue.SimpleQueue[Settled] = queue.SimpleQueue()  # batches durable (or failed), to answer
        self._woken_up = False  # a wake byte is on its way: the loop drains `_settled` before it looks again
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="aonode-sequencer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self.wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """The loop looks again (a batch is settled, or it is to stop); one byte while it has not looked."""
        if self._woken_up:
            return
        self._woken_up = True
        try:
            self._wake_out.send(b"\0")
        except OSError:
            pass  # its buffer is full (the loop will look) or it is closed (the loop ended)

    def _settle(self, replies: list[Reply], msgs: list[Message], done: Future[list[Assignment]]) -> None:
        """On the settling thread (the committing one): the batch queued for the loop to answer."""
        self._settled.put((replies, msgs, done))
        self.wake()

    def _loop(self) -> None:
        try:
            while not self._closed:
                ready: list[tuple[Link, bytes]] = []
                for key, events in self._selector.select():
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_in:
                        self._woken()
                    else:
                        link = cast(Link, key.data)
                        if events & selectors.EVENT_WRITE and not link.flush():
                            self._selector.modify(link.sock, selectors.EVENT_READ, link)  # all written
                        if events & selectors.EVENT_READ:
                            self._read(link, ready)
                if ready:
                    self._schedule(ready)
        finally:
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, Link):
                    key.data.close()
            self._selector.close()
            for sock in (self._listener, self._wake_in, self._wake_out):
                sock.close()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        pid, _uid, _gid = PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
        if pid not in self.allowed():
            conn.close()  # not a worker this node started: it could schedule unchecked messages
            return
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, Link(conn))

    def _woken(self) -> None:
        """Every batch settled so far answered."""
        try:
            while self._wake_in.recv(4096):
                pass
        except OSError:
            pass
        self._woken_up = False  # (before the queue is read: a batch queued after this wakes the loop again)
        while not self._settled.empty():
            replies, msgs, done = self._settled.get()
            try:
                outgoing = _outcomes(replies, msgs, done)
            except Exception as err:  # noqa: BLE001 - a reply that cannot be made is answered as an error
                outgoing = _failed(replies, err)
            self._write(outgoing)

    def _write(self, outgoing: list[Outgoing]) -> None:
        """Replies counted in the metrics, then written, those of one connection in one send; a link whose
        socket does not take them all is watched until it does."""
        by_link: dict[Link, list[bytes]] = {}
        for reply, status, body in outgoing:
            reply.count(status)
            by_link.setdefault(reply.link, []).append(frame([reply.rid, status, body]))
        for link, frames in by_link.items():
            if link.send(b"".join(frames)):
                self._selector.modify(link.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, link)

    def _read(self, link: Link, ready: list[tuple[Link, bytes]]) -> None:
        """What `link` brought, its whole frames added to `ready`; the link closed at its end or on bad bytes."""
        try:
            size = link.sock.recv_into(self._chunk)
        except BlockingIOError:
            return
        except OSError:
            size = 0
        try:
            if not size:
                raise ConnectionError("the worker closed its connection")
            link.buffer += self._chunk_view[:size]
            while (body := take_frame(link.buffer)) is not None:
                ready.append((link, body))
        except ConnectionError:
            self._drop(link)

    def _drop(self, link: Link) -> None:
        if not link.closed:
            self._selector.unregister(link.sock)
            link.close()

    def _schedule(self, ready: list[tuple[Link, bytes]]) -> None:
        """The frames of one look at every connection, scheduled as one batch per process (in arrival
        order): one request to the group commit and one Future per batch, whose replies the settling
        thread writes once durable."""
        batches: dict[str, tuple[list[Reply], list[Message]]] = {}
        for link, raw in ready:
            if link.closed:
                continue
            try:
                rid, pid, blob, *rest = cbor2.loads(raw)
                if rid is None:  # an answer the worker gave: path, status, seconds
                    observe.record(str(pid), "POST", int(blob), float(rest[0]))
                    continue
                if type(blob) is not bytes:
                    raise TypeError(f"a message of {type(blob).__name__}")
                path, seconds = (str(rest[0]), float(rest[1])) if len(rest) >= 2 else (None, 0.0)
            except (ValueError, TypeError, IndexError, cbor2.CBORDecodeError):
                self._drop(link)  # not a frame a worker makes: that worker's connection ends, not this thread
                continue
            reply = Reply(rid, path, time.perf_counter() - seconds, link)
            try:
                msg = from_own_cbor(blob, "a worker's message")
            except AONodeError as err:
                self._write([(reply, *_error(err))])
                continue
            replies, msgs = batches.setdefault(str(pid), ([], []))
            replies.append(reply)
            msgs.append(msg)
        for pid, (replies, msgs) in batches.items():
            try:
                committed = self.node.schedule_many_later(pid, msgs)
            except Exception as err:  # noqa: BLE001 - each of the batch's answers
                self._write(_failed(replies, err))
                continue
            committed.add_done_callback(functools.partial(self._settle, replies, msgs))


class Link:
    """One worker's connection (the loop's alone): the bytes read that hold no whole frame yet, and the
    replies its socket did not take yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.unsent = bytearray()
        self.closed = False

    def send(self, data: bytes) -> bool:
        """`data` written as far as the socket takes it now, after what waits already; True when some
        is left (to write once the socket takes more: `flush`)."""
        if self.closed:
            return False  # the worker is gone; what was committed stays committed
        if self.unsent:
            self.unsent += data
            return False  # (watched already)
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # the worker is gone: the loop finds the connection's end
        if sent < len(data):
            self.unsent += data[sent:]
            return True
        return False

    def flush(self) -> bool:
        """When the socket takes more: what waits, written as far as it goes; True while some is left."""
        if self.closed:
            return False
        try:
            sent = self.sock.send(self.unsent)
        except BlockingIOError:
            return True
        except OSError:
            self.unsent.clear()
            return False
        del self.unsent[:sent]
        return bool(self.unsent)

    def close(self) -> None:
        self.closed = True
        self.unsent.clear()
        self.sock.close()


class Reply:
    """Where one request's reply goes, and what it is counted as in the metrics once sent."""

    __slots__ = ("link", "path", "rid", "started")

    def __init__(self, rid: int, path: str | None, started: float, link: Link) -> None:
        self.rid = rid
        self.path = path  # the HTTP path it came on, counted in the metrics when the reply is sent
        self.started = started  # perf_counter when its HTTP request began (as the worker said)
        self.link = link

    def count(self, status: int) -> None:
        if self.path is not None:
            observe.record(self.path, "POST", status, time.perf_counter() - self.started)


Outgoing = tuple[Reply, int, bytes | list[object]]  # a reply, its status and body (or fields: _answer)
Settled = tuple[list[Reply], list[Message], Future[list[Assignment]]]  # a batch's replies, messages, outcome


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
