"""The dashboard's HTTP side: `GET /` and `GET /<pid>~process@1.0` for browsers (Accept: text/html),
the fragments the pages poll to stay live, and the static files. Everything is rendered on the
server with Jinja2 from templates shipped in the package; the one script only polls and posts.

JSON clients asking the same two paths get exactly what they got before: the request goes on to
the regular handler.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from aonode.engine.errors import BadInput
from aonode.server.dashboard import model

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).resolve().parent
Run = Callable[..., Awaitable[Any]]  # runs a blocking Node call off the event loop
Handler = Callable[[Request], Awaitable[Response]]


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """`42s`, `7m 3s`, `5h 12m`, `3d 4h`: as long as a person wants to read."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def _ago(seconds: float | None) -> str:
    return "—" if seconds is None else f"{duration(time.time() - seconds)} ago"


def _short(value: str, keep: int = 8) -> str:
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-keep:]}"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _show(value: Any) -> str:
    """A leaf as a reader would want to see it: text as is (without AOS's terminal colours),
    everything else as JSON."""
    return _ANSI.sub("", value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@cache
def _templates() -> jinja2.Environment:
    """Jinja2 loads with the first page a browser asks for, not with the node (~0.1 s of a start)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters.update(
        when=_when, ago=_ago, duration=duration, short=_short, show=_show, json=lambda v: json.dumps(v, indent=1)
    )
    return env


def wants_html(request: Request) -> bool:
    """A browser navigating here: it asks for HTML and not for JSON."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(template).render(**context))


class Dashboard:
    """Pages for one node; `fallback` answers non-browser requests (the regular handler)."""

    def __init__(self, node: model.Reads, run: Run, fallback: Handler, *, dev: bool) -> None:
        self.node, self.run, self.fallback, self.dev = node, run, fallback, dev
        self.started = time.time()

    async def index(self, request: Request) -> Response:
        if not wants_html(request) or request.method != "GET":
            return await self.fallback(request)
        view = await self.run(model.overview, self.node, self.started)
        return render("index.html", o=view, dev=self.dev)

    async def processes(self, request: Request) -> Response:
        view = await self.run(model.overview, self.node, self.started)
        return render("_processes.html", o=view)

    async def process(self, request: Request) -> Response:
        if not wants_html(request) or request.method != "GET":
            return await self.fallback(request)
        page = await self.run(model.process_page, self.node, request.path_params["pid"], _from(request))
        return render("process.html", p=page, dev=self.dev)

    async def process_live(self, request: Request) -> Response:
        """A live part of the process page: `?part=head` (slots, activity) or the body (state, schedule)."""
        pid = request.path_params["pid"]
        if request.query_params.get("part") == "head":
            return render("_process_head.html", p=await self.run(model.process_head, self.node, pid))
        page = await self.run(model.process_page, self.node, pid, _from(request))
        return render("_process_live.html", p=page, dev=self.dev)

    def routes(self) -> list[BaseRoute]:
        """Put these before the regular routes: two of them share paths with JSON reads."""
        return [
            Route("/", self.index, methods=["GET"]),  # POST / stays the legacy MU route
            Route("/{pid}~process@1.0", self.process, methods=["GET"]),
            Route("/dashboard/processes", self.processes, methods=["GET"]),
            Route("/dashboard/process/{pid}", self.process_live, methods=["GET"]),
            Mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static"),
        ]


def _from(request: Request) -> int | None:
    text = request.query_params.get("from", "")
    if not text:
        return None
    if not text.isdigit():
        raise BadInput(f"?from= must be a slot number, got {text!r:.40}")
    return int(text)
