"""The Starlette app: parse the path, call the Node off the event loop, encode the answer.

Kept thin on purpose: every decision about processes lives in `aonode.engine`; this module only
maps HTTP onto `Node` calls and engine errors onto statuses.

Two thread pools, because a long compute must never delay a read of already computed state:
`quick` runs store reads and appends (`slot`, schedule pages, scheduling, info), `compute` runs
anything that may evaluate messages (`now` with work pending, `compute/<slot>`, spawn, snapshot,
init) and answers 503 + Retry-After once its queue is full. One writer per process is the Node's job.
Two reads run inline on the event loop, because a thread hop costs more than they do and they never
take a process lock: `compute` without a slot, and `now` when `Node.pending(pid) == 0` (then `now`
would compute nothing and answers that same last state).

Those two are O(1) because the Node keeps each process's definition, current slot and last
computed view in memory (it is their only writer); `pending(pid) == 0` means `now(pid)` would
compute nothing, cron ticks included (the scheduler appends them when a message is scheduled, and
`run_crons` every second while the app is served, computing the processes that got ticks).
"""
from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.convertors import register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aonode.engine.errors import AONodeError, Busy, Unauthorized
from aonode.engine.message import Message
from aonode.server import codec, legacy, paths

T = TypeVar("T")


# A path whose first segment names a device (`<pid>~process@1.0`, `~meta@1.0`).
register_url_convertor("device", legacy.TextConvertor("[^/]*~.*"))

ALLOW = "GET, HEAD, POST, OPTIONS"
RETRY_AFTER_SECONDS = 1
CRON_EVERY_SECONDS = 1.0  # how often a served node looks for due cron messages
log = logging.getLogger("aonode.server")


class NodeAPI(Protocol):
    """What the server needs from `aonode.engine.node.Node` (docs/interfaces.md)."""

    address: str

    def info(self) -> dict: ...
    def spawn(self, msg: Message) -> dict: ...
    def schedule(self, pid: str, msg: Message) -> dict: ...
    def compute(self, pid: str, slot: int | None = None) -> dict: ...
    def now(self, pid: str) -> dict: ...
    def slot(self, pid: str) -> dict: ...
    def schedule_page(self, pid: str, frm: int | None, to: int | None) -> dict: ...
    def snapshot(self, pid: str) -> dict: ...
    def init(self, pid: str) -> dict: ...
    def pending(self, pid: str) -> int: ...
    def tick_crons(self) -> list[str]: ...


@dataclass(frozen=True)
class Limits:
    max_body: int = 10 * 1024 * 1024
    compute_workers: int = 2
    compute_queue: int = 256
    quick_workers: int = 8
    quick_queue: int = 10_000


@dataclass
class Gate:
    """A bounded thread pool with a bounded queue: past `workers + queue` callers, Busy at once."""

    workers: int
    queue: int
    name: str = "compute"
    pending: int = 0
    _limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.pending >= self.workers + self.queue:
            raise Busy(f"the {self.name} queue is full ({self.pending} waiting or running); retry later")
        if self._limiter is None:  # made lazily: a limiter belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self.pending -= 1


@dataclass
class Server:
    """Request handlers bound to one Node."""

    node: NodeAPI
    dev: bool = False
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.compute_gate = Gate(self.limits.compute_workers, self.limits.compute_queue, "compute")
        self.quick_gate = Gate(self.limits.quick_workers, self.limits.quick_queue, "read")

    async def run_crons(self, every: float) -> None:
        """Every `every` seconds: schedule the cron messages now due, then compute those processes (so
        their outboxes are delivered and `compute` reads see the ticks) on the compute pool."""
        while True:
            await anyio.sleep(every)
            try:
                ticked = await self.quick_gate.run(self.node.tick_crons)
            except Busy:
                continue  # the read pool is full: try again next round
            except Exception:  # noqa: BLE001 - a store error must not end the cron task
                log.exception("cron round failed")
                continue
            for pid in ticked:
                try:
                    await self.compute_gate.run(self.node.now, pid)
                except Busy:
                    break  # the pool is full of requests: reads compute these when they come
                except Exception:  # noqa: BLE001 - one bad process must not stop cron for the others
                    log.exception("cron: computing %s failed", pid)

    async def handle(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": ALLOW})
        scope = request.scope
        target = paths.parse_cached(scope["path"], scope["query_string"].decode("latin-1"))
        as_json = target.as_json or codec.wants_json(_header(scope, b"accept"))
        if isinstance(target, paths.MetaPath):
            self._require(request, "GET")
            value = await self.quick_gate.run(self.node.info)
            return answer(paths.select(value, target.keys), as_json)
        if request.method == "POST":
            return await self._post(request, target)
        if target.pid is None:
            raise HTTPException(405, "spawn with POST /~process@1.0/schedule", {"Allow": "POST, OPTIONS"})
        value = await self._read(target)
        return answer(paths.select(value, target.keys), as_json)

    async def _read(self, target: paths.ProcessPath) -> dict:
        node, pid = self.node, target.pid
        if target.action == "schedule":
            return await self.quick_gate.run(node.schedule_page, pid, target.frm, target.to)
        if target.action == "slot":
            return await self.quick_gate.run(node.slot, pid)
        if target.action == "compute" and target.slot is None:
            return node.compute(pid, None)  # inline: a store read that never takes a process lock
        if target.action == "compute":
            return await self.compute_gate.run(node.compute, pid, target.slot)
        if target.action == "now":
            if self._idle(pid):
                return node.compute(pid, None)  # nothing scheduled since: the last state is `now`
            return await self.compute_gate.run(node.now, pid)
        if target.action == "snapshot":
            return await self.compute_gate.run(node.snapshot, pid)
        return await self.compute_gate.run(node.init, pid)

    async def _post(self, request: Request, target: paths.ProcessPath) -> Response:
        if target.action != "schedule" or target.keys:
            raise HTTPException(405, "POST only to /schedule", {"Allow": ALLOW})
        body = await codec.read_body(request, self.limits.max_body)
        msg = self.message(body, request.headers.get("content-type"), target.pid)
        if target.pid is None:
            assignment = await self.compute_gate.run(self.node.spawn, msg)
        else:
            assignment = await self.quick_gate.run(self.node.schedule, target.pid, msg)
        return answer(assignment, True)

    def in_flight(self) -> int:
        """Engine calls still running in worker threads (the Node must not close under them)."""
        return self.compute_gate.pending + self.quick_gate.pending

    def _idle(self, pid: str) -> bool:
        """True when every scheduled slot is computed (asked inline: indexed store reads, no lock)."""
        return self.node.pending(pid) == 0

    def message(self, body: bytes, content_type: str | None, pid: str | None) -> Message:
        """A signed data item as is; unsigned JSON only with --dev, owned by the node wallet."""
        if codec.is_data_item(content_type):
            return codec.message_from_data_item(body)
        obj = codec.parse_json_object(body)
        if not self.dev:
            raise Unauthorized(codec.SIGNING_HINT)
        if pid is not None and not any(k.lower() == "target" for k in obj):
            obj = {**obj, "Target": pid}
        if not any(k.lower() == "anchor" for k in obj):
            # Each POST is a new message, as with a signing client; an explicit Anchor makes retries idempotent.
            obj = {**obj, "Anchor": secrets.token_urlsafe(24)}
        return codec.message_from_json(obj, owner=self.node.address)

    @staticmethod
    def _require(request: Request, method: str) -> None:
        if request.method not in (method, "HEAD" if method == "GET" else method):
            raise HTTPException(405, f"use {method} here", {"Allow": f"{method}, OPTIONS"})


def _header(scope: Any, name: bytes) -> str | None:
    """One request header straight from the ASGI scope (names arrive lowercased)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def answer(value: Any, as_json: bool) -> Response:
    encoded = codec.encode(value, as_json=as_json)
    return Response(encoded.body, media_type=encoded.media_type)


class AnyOriginCORS(CORSMiddleware):
    """Starlette's CORS middleware with `Access-Control-Allow-Origin: *` on every reply.

    Every answer is public, so a reply never depends on the request's Origin: no `Vary: Origin`
    (shared caches stay correct), and non-preflight requests skip the per-request header parsing
    that costs about a tenth of a state read. Preflights (OPTIONS) go through the stock middleware.
    """

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **options)
        self._raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                             for k, v in self.simple_headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await super().__call__(scope, receive, send)
            return
        extra = self._raw_headers

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(codec.error_body(message), status_code=status, media_type=codec.JSON, headers=headers)


def _error_for(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error answer; it closes the connection when the request body was left unread (refused
    early: too large, wrong path or method), because the connection cannot carry another request."""
    headers = dict(headers or {})
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if has_body and not getattr(request, "_stream_consumed", False):
        headers["Connection"] = "close"
    return error_response(status, message, headers)


async def _engine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AONodeError)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, Busy) else None
    status = exc.status if 400 <= exc.status < 600 else 500
    return _error_for(request, status, str(exc) or type(exc).__name__, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_for(request, exc.status_code, exc.detail, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _error_for(request, 500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(node: NodeAPI, *, dev: bool = False, limits: Limits | None = None,
               with_legacy: bool = True, extra_routes: list[BaseRoute] | None = None,
               cron_every: float = CRON_EVERY_SECONDS) -> Starlette:
    """The ASGI app for one Node: the legacy CU/MU/SU routes and `extra_routes`, then the HyperBEAM paths.
    While it is served, cron processes are ticked every `cron_every` seconds (0: only when messages come)."""
    server = Server(node, dev=dev, limits=limits or Limits())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if cron_every > 0:
                tasks.start_soon(server.run_crons, cron_every)
            yield
            tasks.cancel_scope.cancel()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        AONodeError: _engine_error, HTTPException: _http_error, Exception: _internal_error,
    }
    methods = ["GET", "POST", "OPTIONS"]
    routes = [
        Route("/{path:device}", server.handle, methods=methods),  # first: the hot read path matches at once
        *(legacy.routes() if with_legacy else []),
        *(extra_routes or []),
        Route("/{path:path}", server.handle, methods=methods),  # everything else: parse() says what is wrong
    ]
    middleware = [Middleware(AnyOriginCORS, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
                             expose_headers=["Retry-After", "Content-Length"], max_age=86400)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.server = server
    return app
