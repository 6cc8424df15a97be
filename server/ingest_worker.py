"""One worker process of `aonode serve --ingest-workers N`: HTTP and signature checks on its own core.

It listens on the node's port beside the node's own process (SO_REUSEPORT: the kernel spreads new
connections over them). A schedule POST it can take (server/ingest_front.py's shapes, a signed
message) is read and verified here, on two checker threads, and handed to the node's process over its
sequencer socket (server/sequencer_socket.py); the answer, signed with this worker's own session key
(vouched for by the node's wallet like the node's), goes out once the node says the assignment is
durable. Everything else (reads, spawns, unsigned messages in --dev, ...) is relayed as is to the
node's process on its private loopback port, answer signatures and all. The worker ends when the
node's process does (its sequencer socket closes) or on SIGTERM, after answering what it holds.

    python -m aonode.server.ingest_worker --port P --owner http://127.0.0.1:Q --sequencer NAME --wallet JWK
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor

import cbor2
import httpx
from starlette.requests import Request

from aonode.engine.crypto import Wallet
from aonode.engine.errors import AONodeError, Busy
from aonode.engine.message import Message
from aonode.server import codec, ingest_front
from aonode.server.app import cors_headers
from aonode.server.hyperbeam import signed_message
from aonode.server.ingest_workers import reuse_port_socket
from aonode.server.legacy.mu import checked_message, data_item_answer, is_spawn
from aonode.server.sequencer_socket import LENGTH, frame
from aonode.server.serve import hypercorn_config, run_served, run_until
from aonode.server.signing import Receive, Scope, Send, answer_signer

HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer", b"content-length"}
# An answer relayed back: hop-by-hop fields, and `date` and `server`, which this worker's hypercorn
# writes again (two of each otherwise: Date is a singleton field, RFC 9110 6.6.1).
RELAY_DROPS = (HOP - {b"content-length"}) | {b"date", b"server"}
MAX_IN_FLIGHT = 512  # schedule requests waiting for the node at once; more: 503 at once
OWNER_WAIT_SECONDS = 60.0


class Sequencer:
    """The worker's end of the sequencer socket: `await schedule(pid, msg)` -> (status, JSON body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.ids = itertools.count()
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, name: str) -> Sequencer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect("\0" + name)
        sock.setblocking(False)
        made = cls(*await asyncio.open_unix_connection(sock=sock))
        asyncio.get_running_loop().create_task(made._replies())
        return made

    async def schedule(self, pid: str, msg: Message) -> tuple[int, bytes]:
        if self.closed.is_set():
            raise Busy("the node's sequencer is gone; retry later")
        if len(self.pending) >= MAX_IN_FLIGHT:
            raise Busy(f"the ingest queue is full ({len(self.pending)} waiting); retry later")
        rid = next(self.ids)
        answer = self.pending[rid] = asyncio.get_running_loop().create_future()
        try:
            self.writer.write(frame([rid, pid, msg.to_cbor()]))
        except (RuntimeError, OSError) as err:  # the link broke before _replies saw it (uvloop raises here)
            self.pending.pop(rid, None)
            raise Busy(f"the node's sequencer is gone ({err}); retry later") from err
        return await answer

    def observed(self, path: str, status: int, seconds: float) -> None:
        """An answer this worker gave, for the node's HTTP metrics (it serves /metrics, not us)."""
        if not self.closed.is_set():
            try:
                self.writer.write(frame([None, path, status, seconds]))
            except (RuntimeError, OSError):
                pass  # the link broke: the node that would count it is gone

    async def _replies(self) -> None:
        try:
            while True:
                (size,) = LENGTH.unpack(await self.reader.readexactly(LENGTH.size))
                rid, status, body = cbor2.loads(await self.reader.readexactly(size))
                answer = self.pending.pop(rid, None)
                if answer is not None and not answer.done():
                    answer.set_result((int(status), bytes(body)))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for answer in self.pending.values():
                if not answer.done():  # not known to be durable: never answered as if it were
                    answer.set_exception(Busy("the node's sequencer closed before answering; retry"))
            self.pending.clear()


class WorkerApp:
    """ASGI: the schedule POSTs checked here and sequenced by the node; the rest relayed to it."""

    def __init__(self, sequencer: Sequencer, owner: str, wallet: Wallet, max_body: int) -> None:
        self.sequencer = sequencer
        self.owner = httpx.AsyncClient(base_url=owner, timeout=None, limits=httpx.Limits(max_connections=None))
        self.signer = answer_signer(wallet)
        self.cors = cors_headers()
        self.max_body = max_body
        self.checkers = ThreadPoolExecutor(2, thread_name_prefix="aonode-ingest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        target = ingest_front.schedule_target(scope, True, self.max_body)
        if target is None:
            await self.relay(scope, receive, send, None)
            return
        started = time.perf_counter()
        body = await ingest_front.read_all(receive)
        try:
            loop = asyncio.get_running_loop()
            checked = await loop.run_in_executor(self.checkers, _check, scope, body, target.pid)
            if checked is None:  # a spawn or an unsigned message: the node's own routes
                await self.relay(scope, receive, send, body)
                return
            pid, msg, item_id = checked
            status, answer = await self.sequencer.schedule(pid, msg)
            if status == 200 and item_id is not None:
                answer = codec.dump_json(data_item_answer(item_id, json.loads(answer)))
            extra = ingest_front.retry_after(status)
        except AONodeError as err:
            status, answer, extra = ingest_front.error_answer(err)
        self.sequencer.observed(scope["path"], status, time.perf_counter() - started)  # on its way before the answer
        await ingest_front.send_json(send, status, answer, extra, self.signer, self.cors)

    async def relay(self, scope: Scope, receive: Receive, send: Send, body: bytes | None) -> None:
        """The request to the node's process, its answer back as it comes (streamed)."""
        if body is None:
            try:  # within the node's limit, as its routes read bodies: never a whole oversized one held here
                body = await codec.read_body(Request(scope, receive), self.max_body)
            except AONodeError as err:
                status, data, extra = ingest_front.error_answer(err)
                await ingest_front.send_json(send, status, data, extra, self.signer, self.cors)
                return
        target = scope["raw_path"].decode("latin-1") + (
            f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""
        )
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP]
        request = self.owner.build_request(scope["method"], target, headers=headers, content=body)
        await _until_gone(receive, self._pass_on(request, send))

    async def _pass_on(self, request: httpx.Request, send: Send) -> None:
        try:
            answer = await self.owner.send(request, stream=True)
        except httpx.TransportError as err:
            status, data, extra = ingest_front.error_answer(Busy(f"the node's process did not answer: {err}"))
            await ingest_front.send_json(send, status, data, extra, self.signer, self.cors)
            return
        try:
            out = [(k.lower(), v) for k, v in answer.headers.raw if k.lower() not in RELAY_DROPS]
            await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await answer.aclose()  # mid-body (the client left): closes the connection, so the node stops too


async def _until_gone(receive: Receive, relaying: Coroutine[object, object, None]) -> None:
    """Run `relaying` until it ends or the client goes away (its body is read: what `receive` says next
    is the disconnect). Hypercorn drops what is sent to a closed connection, so a relay left to run would
    pull the node's whole answer for nobody, holding what the node holds for it (a /state place)."""
    relay = asyncio.ensure_future(relaying)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((relay, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        relay.cancel()
        gone.cancel()
        await asyncio.gather(relay, gone, return_exceptions=True)
    if not relay.cancelled():
        relay.result()  # what the relay raised, as before


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop but the answers hypercorn waits for."""
    while True:
        kind = (await receive())["type"]
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _check(scope: Scope, body: bytes, pid: str | None) -> tuple[str, Message, str | None] | None:
    """On a checker thread: (pid, the checked message, the MU item's id) or None for the node's routes."""
    if pid is None:
        item = codec.parsed_data_item(body)
        if is_spawn(item):
            return None
        target, msg = checked_message(item)
        return target, msg, item.id
    signed, _ = signed_message(ingest_front.incoming(scope, body))
    return None if signed is None else (pid, codec.for_process(signed, pid), None)


async def _serve(args: argparse.Namespace, wallet: Wallet) -> None:
    await _owner_answering(args.owner)
    sequencer = await Sequencer.connect(args.sequencer)
    app = WorkerApp(sequencer, args.owner, wallet, args.max_body)
    config = hypercorn_config(args.host, args.port)
    config.bind = [f"fd://{reuse_port_socket(args.host, args.port).detach()}"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.create_task(_stop_when(sequencer.closed, stop))
    await run_until(app, config, stop)


async def _owner_answering(owner: str) -> None:
    """Wait until the node's process answers on its private port (then relayed requests find it)."""
    async with httpx.AsyncClient(base_url=owner, timeout=5) as client:
        for _ in range(int(OWNER_WAIT_SECONDS * 10)):
            try:
                await client.get("/~meta@1.0/info/address")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise SystemExit(f"the node's process at {owner} does not answer")


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
    args = parser.parse_args(argv)
    run_served(_serve(args, Wallet.load(args.wallet)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
