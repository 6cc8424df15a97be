"""HTTP metrics: an ASGI middleware counting requests by route, method and status, timing them, and
the `GET /metrics` endpoint that renders `aonode.engine.metrics`.

Routes are labelled by what a path means (`process/now`, `process/compute`, `meta/info`, `legacy/result`
...), never by the path itself: process ids in labels would grow the series without bound.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aonode.engine import metrics

_PROCESS_ACTIONS = frozenset({"schedule", "slot", "snapshot", "init", "compute", "now"})
_TOP = frozenset({"metrics", "dashboard", "result", "results", "dry-run", "state", "timestamp", "processes", "graphql"})
_METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})


@lru_cache(maxsize=4096)
def route_of(path: str) -> str:
    """A bounded label for a request path (remembered: front ends poll the same few paths)."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "root"
    head = segments[0]
    if "~process@1.0" in head or (len(head) == 43 and len(segments) > 1 and segments[1].lower() in _PROCESS_ACTIONS):
        action = segments[1].lower() if len(segments) > 1 else ""
        action = action if action in _PROCESS_ACTIONS else "page" if not action else "other"
        if any(s.lower().startswith("~lua@") for s in segments[2:]):
            return f"process/{action}/lua"
        return f"process/{action}"
    if head.startswith("~meta@"):
        return "meta/info"
    if head in _TOP:
        return head if head in ("metrics", "dashboard") else f"legacy/{head}"
    return "other"


@lru_cache(maxsize=1024)
def _series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children of one (route, method, status), looked up once: `labels()` costs more
    than the increment itself on the hot read path."""
    method = method if method in _METHODS else "other"
    return (metrics.HTTP_REQUESTS.labels(route, method, str(status)), metrics.HTTP_SECONDS.labels(route))


def record(path: str, method: str, status: int, seconds: float) -> None:
    """One answered request in the HTTP metrics (HttpMetrics, and the routes answered before it)."""
    count, timing = _series(route_of(path), method, status)
    count.inc()
    timing.observe(seconds)


class HttpMetrics:
    """Counts and times every HTTP request (the answer's status as sent, errors included)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        recorded = [False]

        def count() -> None:
            if not recorded[0]:
                recorded[0] = True
                record(scope["path"], scope["method"], status[0], time.perf_counter() - started)

        async def record_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                count()  # before the last byte goes out: a client that has its answer finds it counted
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            count()


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics_endpoint, methods=["GET"])]
