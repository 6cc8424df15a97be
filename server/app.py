"""The Starlette app for one Node: the route table, CORS, engine errors as HTTP statuses, crons.

Every decision about processes lives in `aonode.engine`; the route modules only map HTTP onto
NodeAPI calls (server/api.py) through the two pools of server/gates.py. The route table is a list
of route lists, one per module, in match order: HyperBEAM's own verbs (server/hyperbeam.py), the
device paths (the hot read path matches at once), then the legacy MU/CU/SU/gateway routes, then
any `extra_routes`, and the HyperBEAM catch-all last. A new group of routes is one more list here.

Cron processes are ticked every `cron_every` seconds while the app is served (Server.run_crons).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message as ASGIMessage, Receive, Scope, Send

from aonode.engine.errors import AONodeError, Busy
from aonode.server import codec, device_paths, hyperbeam, legacy, lua_paths, observe
from aonode.server.api import NodeAPI
from aonode.server.dashboard.views import Dashboard
from aonode.server.gates import RETRY_AFTER_SECONDS, Limits
from aonode.server.ingest_front import IngestFront, lean_ingest_enabled
from aonode.server.read_cache import CachedReads
from aonode.server.signing import EXPOSED, SignedResponses, answer_signer
from aonode.server.state import Server

__all__ = ["CRON_EVERY_SECONDS", "Limits", "NodeAPI", "Server", "create_app", "error_response"]

CRON_EVERY_SECONDS = 1.0  # how often a served node looks for due cron messages


class AnyOriginCORS(CORSMiddleware):
    """Starlette's CORS middleware with `Access-Control-Allow-Origin: *` on every reply.

    Every answer is public, so a reply never depends on the request's Origin: no `Vary: Origin`
    (shared caches stay correct), and non-preflight requests skip the per-request header parsing
    that costs about a tenth of a state read. Preflights (OPTIONS) go through the stock middleware.
    """

    @functools.cached_property
    def _raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.simple_headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await super().__call__(scope, receive, send)
            return
        extra = self._raw_headers

        async def send_with_cors(message: ASGIMessage) -> None:
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


def cors_for(app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> AnyOriginCORS:
    return AnyOriginCORS(
        app,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "Content-Length", *EXPOSED],
        max_age=86400,
    )


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("only read for its CORS headers")


def cors_headers() -> list[tuple[bytes, bytes]]:
    """The headers the CORS middleware adds to every answer (for answers made before it)."""
    return cors_for(_no_app)._raw_headers


def _lean_ingest(server: Server, routes: list[BaseRoute], cors: list[tuple[bytes, bytes]]) -> list[Middleware]:
    """The schedule POSTs answered before the route table (server/ingest_front.py), unless turned off."""
    if not lean_ingest_enabled():
        return []
    mu = any(isinstance(r, Route) and r.path == "/" and "POST" in (r.methods or ()) for r in routes)
    hb = hyperbeam.Hyperbeam(server, device_paths.DevicePaths(server))
    return [Middleware(IngestFront, server=server, hyperbeam=hb, mu=mu, cors=cors)]


def create_app(
    node: NodeAPI,
    *,
    dev: bool = False,
    limits: Limits | None = None,
    with_legacy: bool = True,
    extra_routes: list[BaseRoute] | None = None,
    cron_every: float = CRON_EVERY_SECONDS,
    sign_answers: bool = True,
) -> Starlette:
    """The ASGI app for one Node: the legacy CU/MU/SU routes and `extra_routes`, then the HyperBEAM paths.
    While it is served, cron processes are ticked every `cron_every` seconds (0: only when messages come)."""
    signer = answer_signer(node.wallet) if sign_answers else None
    server = Server(node, dev=dev, limits=limits or Limits(), signer=signer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if cron_every > 0:
                tasks.start_soon(server.run_crons, cron_every)
            yield
            tasks.cancel_scope.cancel()

    handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]] = {
        AONodeError: _engine_error,
        HTTPException: _http_error,
        Exception: _internal_error,
    }
    first, catch_all = device_paths.routes(server)
    dashboard = Dashboard(node, server.quick_gate.run, device_paths.DevicePaths(server).handle, dev=dev)
    route_lists: list[list[BaseRoute]] = [
        dashboard.routes(),  # `/` and `/<pid>~process@1.0` for browsers; JSON clients fall through
        observe.routes(),
        lua_paths.routes(server),  # `.../~lua@5.3a&module=<id>/<function>`: before hyperbeam's `&k=v` reads
        hyperbeam.routes(server),  # /push, scheduler and relay devices, POST reads, key=value segments
        first,
        legacy.routes() if with_legacy else [],
        extra_routes or [],
        catch_all,
    ]
    table = [route for routes in route_lists for route in routes]
    middleware = [
        *_lean_ingest(server, table, cors_headers()),
        Middleware(observe.HttpMetrics),
        Middleware(CachedReads, node=node),  # whole answers to state reads (server/read_cache.py)
        Middleware(cors_for),
    ]
    if signer is not None:  # every answer signed for the node wallet (server/signing.py)
        middleware.append(Middleware(SignedResponses, signer=signer))
    app = Starlette(
        routes=table,
        middleware=middleware,
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.server = server
    return app
