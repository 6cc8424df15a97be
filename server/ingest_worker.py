"""One worker process of `aonode serve --ingest-workers N`: HTTP and signature checks on its own core.

The workers listen on the node's port (SO_REUSEPORT: the kernel spreads new connections over them;
the node's own process listens only on a private loopback port). A schedule POST it can take
(server/ingest_front.py's shapes, a signed message) is read by its lean HTTP/1.1 server
(server/ingest_http.py), verified on its event loop (each worker has a core: a thread handoff costs more
than it frees), and handed to the node's process over its
sequencer socket (server/sequencer_socket.py); the answer, signed with this worker's own session key
(vouched for by the node's wallet like the node's), goes out once the node says the assignment is
durable. Everything else (reads, spawns, unsigned messages in --dev, ...) turns its connection into a
tunnel to the node's process on its private port, which answers as on its own port. The worker ends
when the node's process does (its sequencer socket closes) or on SIGTERM, after answering what it holds.

    python -m aonode.server.ingest_worker --port P --owner http://127.0.0.1:Q --sequencer NAME --wallet JWK
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

import cbor2

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet, verify
from aonode.engine.errors import AONodeError, Busy
from aonode.engine.frozen_heap import freeze_start
from aonode.engine.message import Message
from aonode.server import codec, ingest_front, ingest_http
from aonode.server.app import cors_headers
from aonode.server.event_loop import run_served
from aonode.server.ingest_answer import JsonAnswers
from aonode.server.ingest_workers import reuse_port_socket
from aonode.server.legacy.mu import checked_message, data_item_answer, is_spawn, placed_answer
from aonode.server.sequencer_socket import frame, placed, rendered, take_frame
from aonode.server.signing import Scope, answer_signer

MAX_IN_FLIGHT = 512  # schedule requests waiting for the node at once; more: 503 at once
OWNER_WAIT_SECONDS = 60.0
WALLET_POLL_SECONDS = 0.05  # between two reads of a wallet file not yet written whole
OWNER_POLL_SECONDS = 0.02  # between two asks whether the node's process answers (a refusal costs ~50 us)
# seconds between two writes to the node's sequencer at most (Sequencer._write); AONODE_FLUSH_WINDOW_MS to compare.
# 0 since session 11 (a write per turn of the event loop): with the node's one sequencer thread and no group-commit
# wait, the window's wait cost more than its saved writes. bench_ingest, 2 alternating pairs, load 1.0-1.3: 8
# connections 944-1,260 -> 1,169-1,375 items/s, 16 connections 1,257-1,558 -> 1,434-1,606 (bench/README.md).
FLUSH_WINDOW = float(os.environ.get("AONODE_FLUSH_WINDOW_MS", "0")) / 1000
# Young-generation threshold of a worker's garbage collector (CPython's default: 700 net new container
# objects). A worker's objects live for one request; at 700 it collected every few requests, on the event
# loop between answers: bench_ingest at 16 connections, 2 workers, alternating runs: worker CPU 0.76-0.97
# -> 0.68-0.84 ms per item, items/s 995-1,145 -> 1,205-1,645 (bench/README.md, session 10).
GC_YOUNG = 20_000
GRACEFUL_SECONDS = 30.0  # at a stop, what is in flight is answered within this (as hypercorn's graceful timeout)
# AONODE_WORKER_AFFINITY=1: each worker on a core of its own (own_core); off by default until a quiet machine's
# A/B says (bench_ingest_ab, load 5-7.7: workers' CPU per item 0.64-0.77 vs 0.81-0.94 ms at 8 connections,
# the same at 16; items/s within the noise)
PIN_TO_CORE = os.environ.get("AONODE_WORKER_AFFINITY", "0") == "1"


class Sequencer:
    """The worker's end of the sequencer socket: `await schedule(pid, msg)` -> (status, JSON body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[tuple[int, bytes | list[object]]]] = {}
        self.ids = itertools.count()
        self.closed = asyncio.Event()
        self._out: list[bytes] = []  # frames written together (see _write)
        self._held = 0  # schedule requests among them: the node has all the others (len(pending) - _held)
        self._flushed = 0.0  # loop time of the last write
        self._timer: asyncio.TimerHandle | None = None  # the write a window away, if one is set

    @classmethod
    async def connect(cls, name: str) -> Sequencer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect("\0" + name)
        sock.setblocking(False)
        made = cls(*await asyncio.open_unix_connection(sock=sock))
        asyncio.get_running_loop().create_task(made._replies())
        return made

    async def schedule(
        self, pid: str, msg: Message, path: str = "", started: float | None = None
    ) -> tuple[int, bytes | list[object]]:
        """The node's (status, body) once the assignment is durable: the JSON body, or the fields of the
        assignment placed now (`answer_body` renders them); `path` and `started` (perf_counter) are the
        HTTP request's, which the node counts in its metrics as it replies."""
        if self.closed.is_set():
            raise Busy("the node's sequencer is gone; retry later")
        if len(self.pending) >= MAX_IN_FLIGHT:
            raise Busy(f"the ingest queue is full ({len(self.pending)} waiting); retry later")
        rid = next(self.ids)
        answer = self.pending[rid] = asyncio.get_running_loop().create_future()
        seconds = 0.0 if started is None else time.perf_counter() - started
        self._held += 1
        self._write(frame([rid, pid, msg.to_cbor(), path, seconds]))
        return await answer

    def observed(self, path: str, status: int, seconds: float) -> None:
        """An answer this worker gave without the sequencer, for the node's HTTP metrics (it serves
        /metrics, not us)."""
        if not self.closed.is_set():
            self._write(frame([None, path, status, seconds]))

    def _write(self, data: bytes) -> None:
        """Frames go out once this turn of the event loop ends when the node holds none of our requests
        (it waits for work: nothing to gather), else at most one write per FLUSH_WINDOW, or as soon as
        the node has answered all we sent before (its next group can take them): a frame that comes
        sooner waits for the others that arrive meanwhile. Each write wakes the node's reader and costs a
        system call on both ends (a tenth of a worker's CPU per item when every request had its own), and
        the node schedules what one read brings as one batch; an idle link adds no wait."""
        self._out.append(data)
        if len(self._out) == 1:
            loop = asyncio.get_running_loop()
            wait = self._flushed + FLUSH_WINDOW - loop.time()
            if wait > 0 and len(self.pending) > self._held:
                self._timer = loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._out:
            return
        out, self._out, self._held = b"".join(self._out), [], 0
        self._flushed = asyncio.get_running_loop().time()
        try:
            self.writer.write(out)
        except (RuntimeError, OSError) as err:  # the link broke before _replies saw it (uvloop raises here)
            self._fail(Busy(f"the node's sequencer is gone ({err}); retry later"))

    def _fail(self, err: Busy) -> None:
        """Every request waiting for the node answered `err`: none is known to be durable."""
        for answer in self.pending.values():
            if not answer.done():
                answer.set_exception(err)
        self.pending.clear()

    async def _replies(self) -> None:
        """The node's replies, as many as have arrived per read (a commit's replies come together)."""
        buffer = bytearray()
        try:
            while chunk := await self.reader.read(1 << 20):
                buffer += chunk
                while (reply := take_frame(buffer)) is not None:
                    rid, status, body = cbor2.loads(reply)
                    answer = self.pending.pop(rid, None)
                    if answer is not None and not answer.done():
                        answer.set_result((int(status), body if isinstance(body, list) else bytes(body)))
                if self._timer is not None and len(self.pending) == self._held:
                    self._flush()  # the node answered all it had: what waits for the window goes now
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            self._fail(Busy("the node's sequencer closed before answering; retry"))


class Worker:
    """The schedule POSTs checked here and sequenced by the node (server/ingest_http.py's handler)."""

    def __init__(self, sequencer: Sequencer, answers: JsonAnswers, max_body: int) -> None:
        self.sequencer = sequencer
        self.answers = answers
        self.max_body = max_body

    async def answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The answer to a schedule POST; None for any other request (the node's server answers it)."""
        target = ingest_front.schedule_target(scope, True, self.max_body)
        if target is None:
            return None
        started = time.perf_counter()
        try:
            checked = _check(scope, body, target.pid)  # here: a thread handoff costs more than it frees
            if checked is None:  # a spawn or an unsigned message: the node's own routes
                return None
            pid, msg, item_id = checked
        except AONodeError as err:
            status, answer, extra = ingest_front.error_answer(err)
        except Exception as err:  # noqa: BLE001 - answered as the app answers an internal error
            status, answer, extra = 500, codec.error_body(f"internal error: {type(err).__name__}: {err}"), []
        else:
            try:  # the node counts this answer in its metrics as it replies, before we answer
                status, reply = await self.sequencer.schedule(pid, msg, scope["path"], started)
            except Busy as err:  # the node's link broke: it counted nothing
                status, answer, extra = ingest_front.error_answer(err)
            else:
                answer = answer_body(pid, msg, item_id, status, reply)
                return await self.json(status, answer, ingest_front.retry_after(status))
        self.sequencer.observed(scope["path"], status, time.perf_counter() - started)  # on its way before the answer
        return await self.json(status, answer, extra)

    async def json(self, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
        return await self.answers.answer(status, body, extra)

    async def unreachable(self, err: BaseException) -> bytes:
        """The node's server did not take a tunnelled request's connection: 503, retry."""
        return await self.json(*ingest_front.error_answer(Busy(f"the node's process did not answer: {err}")))


def answer_body(pid: str, msg: Message, item_id: str | None, status: int, reply: bytes | list[object]) -> bytes:
    """The JSON body answered for the node's reply: its body, or the assignment its fields place (the
    node's JSON, byte for byte); the legacy MU's answer (`item_id` given) to a 200, which names only the
    slot, timestamp and process: made from the fields without rendering the assignment and reading it
    back (tests/test_ingest_worker_check.py)."""
    if isinstance(reply, bytes):
        if status == 200 and item_id is not None:  # a repeat, answered whole by the node
            return codec.dump_json(data_item_answer(item_id, json.loads(reply)))
        return reply
    if item_id is None or status != 200:
        return rendered(pid, msg, reply)
    slot, timestamp = placed(reply)[:2]
    return codec.dump_json(placed_answer(item_id, pid, slot, timestamp))


def _check(scope: Scope, body: bytes, pid: str | None) -> tuple[str, Message, str | None] | None:
    """On a checker thread: (pid, the checked message, the MU item's id) or None for the node's routes."""
    if pid is None:
        item = codec.parsed_data_item(body)
        if is_spawn(item):
            return None
        target, msg = checked_message(item)
        return target, msg, msg.id  # the item's id (to_message made it): not hashed again
    if ingest_front.carries_data_item(scope):  # signed_message's first case, without its Incoming
        return pid, codec.for_process(codec.message_from_data_item(body), pid), None
    committed = httpsig.decode(ingest_front.httpsig_request(scope, body)).committed()  # signed_message's other case
    return None if committed is None else (pid, codec.for_process(committed.to_message(), pid), None)


async def _serve(args: argparse.Namespace) -> None:
    answering = asyncio.ensure_future(_owner_answering(args.owner))
    wallet = await _key_ready(args.wallet, answering)  # while the node starts: its first answer waits less
    answers = JsonAnswers(answer_signer(wallet), cors_headers())  # the session key, vouched for by the wallet
    gc.set_threshold(GC_YOUNG, 20, 20)  # fewer collections in the middle of answers (GC_YOUNG)
    freeze_start()  # what the start made, frozen for good: a full collection (now and then, in the middle
    # of an answer) walks only what serving made, not every module and object of the start (frozen_heap.py)
    _is_the_nodes(wallet, args.wallet, await answering)
    sequencer = await Sequencer.connect(args.sequencer)
    worker = Worker(sequencer, answers, args.max_body)
    http = ingest_http.Server(worker.answer, _host_port(args.owner), worker.unreachable, args.max_body)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: ingest_http.Connection(http), sock=reuse_port_socket(args.host, args.port)
    )
    sweeper = loop.create_task(http.close_quiet_connections())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.create_task(_stop_when(sequencer.closed, stop))
    await stop.wait()
    listener.close()  # no new connections; what is in flight is answered (the sequencer still runs)
    deadline = loop.time() + GRACEFUL_SECONDS
    while loop.time() < deadline and not http.idle():
        for conn in list(http.connections):
            conn.close_if_idle()
        await asyncio.sleep(0.05)
    for conn in list(http.connections):
        conn.close()
    sweeper.cancel()


def own_core(index: int) -> None:
    """Run on one core of those this process may use: worker `index` on the index-th (modulo their count).
    Why: each worker is one busy thread; left free, the scheduler moved the workers between the cores as
    the node's threads and the clients woke, and each move left a worker's caches behind on the other core.
    The node's threads stay free to run on any core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[index % len(cores)]})


def node_wallet(path: str, address: str) -> Wallet:
    """The node's wallet from `path`, without OpenSSL's full RSA check (its primes: 0.3-0.6 CPU-s a worker
    at every start), which the node's process made on its wallet: this key must be that one (the node's
    `address`, from its public key) and must sign what its public key verifies (an edited private part
    would not), else the worker does not start. tests/test_ingest_worker_check.py."""
    wallet = _signing_key(path)
    _is_the_nodes(wallet, path, address)
    return wallet


def _signing_key(path: str) -> Wallet:
    """`node_wallet`'s key and its signing check, before the node's address is known."""
    wallet = Wallet.load(path, known_valid=True)
    probe = b"aonode ingest worker: this key signs what its public key verifies"
    if not verify(wallet.signature_type, wallet.owner, probe, wallet.sign(probe)):
        raise SystemExit(f"the wallet {path} does not sign what its public key verifies: a damaged key")
    return wallet


def _is_the_nodes(wallet: Wallet, path: str, address: str) -> None:
    if wallet.address != address:
        raise SystemExit(f"the wallet {path} is not the node's ({wallet.address} is not {address})")


async def _key_ready(path: str, answering: asyncio.Future[str]) -> Wallet:
    """`_signing_key(path)` as soon as the file reads whole (a first start writes it while the node starts),
    else once the node answers (then it is written); `node_wallet`'s address check follows."""
    while not answering.done():
        try:
            return _signing_key(path)
        except (OSError, ValueError, KeyError, TypeError):  # not written yet, or half written
            await asyncio.wait([answering], timeout=WALLET_POLL_SECONDS)
    return _signing_key(path)


async def _owner_answering(owner: str) -> str:
    """Wait until the node's process answers on its private port (then relayed requests find it): its address.
    The worker starts before the node does (server/ingest_workers.py); until the node serves, its port
    refuses, and a refusal is asked again soon. One plain HTTP/1.1 GET (httpx's import was a tenth of a
    worker's start)."""
    host, port = _host_port(owner)
    parent, deadline = os.getppid(), time.monotonic() + OWNER_WAIT_SECONDS
    while time.monotonic() < deadline:
        if os.getppid() != parent:  # the node's process ended before it served (killed, or its start failed)
            raise SystemExit("the node's process ended before it answered")
        try:
            status, body = await asyncio.wait_for(_get(host, port, "/~meta@1.0/info/address"), 5)
            if status == 200:
                return body.decode()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(OWNER_POLL_SECONDS)
    raise SystemExit(f"the node's process at {owner} does not answer")


async def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of one GET on a connection of its own (the answer's Content-Length counts)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (f.partition(":") for f in fields) if k.lower() == "content-length"), 0)
        return int(status_line.split(" ", 2)[1]), await reader.readexactly(length)
    finally:
        writer.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _stop_when(closed: asyncio.Event, stop: asyncio.Event) -> None:
    await closed.wait()
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--owner", required=True, help="the node process's private base URL")
    parser.add_argument("--sequencer", required=True, help="the node's sequencer socket name")
    parser.add_argument("--wallet", required=True, help="the node's wallet (JWK file)")
    parser.add_argument("--max-body", type=int, required=True)
    parser.add_argument("--index", type=int, default=None, help="this worker's place among the node's workers")
    args = parser.parse_args(argv)
    if args.index is not None and PIN_TO_CORE:
        own_core(args.index)
    run_served(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
