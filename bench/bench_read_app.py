"""The application's own share of a signed read: `GET /<pid>~process@1.0/now/cache/<key>` called on the
node's ASGI app in-process (no hypercorn, no socket, no load generator), next to a bare async Starlette
route answering the same body, with and without the signed answer's headers.

bench_signed_reads.py measures the served node, where one answer costs ~500-650 µs of server CPU and
the neighbours' load moves every row by ±15 %. Here the same calls cost ~10-20 µs of the calling
thread's CPU each and nothing but the app runs, so the ratio says what the node's layers (metrics,
the signed-answer cache, Starlette's wrappers) cost over the bare route, and whether a gap seen over
HTTP is in the app at all.

    python bench/bench_read_app.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
from bench_http import MODULE, TOKEN_BOOT
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KEY = "totalsupply"
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def scope_of(path: str) -> dict[str, Any]:
    """What hypercorn hands the app for `GET path` from wrk (one fresh scope per call, as served)."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


async def per_call(app: ASGIApp, path: str, calls: int) -> float:
    """CPU microseconds of this thread per call of `app` on GET `path`, the answer sent nowhere
    (thread time: the neighbours' load and the node's own background threads do not count)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    started = time.thread_time()
    for _ in range(calls):
        await app(scope_of(path), receive, send)
    return (time.thread_time() - started) * 1e6 / calls


async def node_app(data_dir: Path, signed: bool) -> tuple[Starlette, str, httpx.Response, Any]:
    """The node app as `aonode serve --dev` builds it, a token process spawned on it and read once."""
    from aonode.server.app import create_app
    from aonode.server.compose import make_node

    node = make_node(data_dir, dev=True)
    app = create_app(node, dev=True, sign_answers=signed, cron_every=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node", timeout=300) as c:
        spawn = {"Tags": [{"name": "Module", "value": MODULE}, {"name": "On-Boot", "value": "Data"}]}
        r = await c.post("/~process@1.0/schedule", json={**spawn, "Data": TOKEN_BOOT})
        r.raise_for_status()
        path = f"/{r.json()['process']}~process@1.0/now/cache/{KEY}"
        answer = await c.get(path)
    assert answer.status_code == 200 and (not signed or "signature" in answer.headers), answer.headers
    return app, path, answer, node


def bare_app(answer: httpx.Response) -> Starlette:
    body, media_type = answer.content, answer.headers["content-type"]
    skip = ("content-type", "content-length", "date", "server")
    headers = {k: v for k, v in answer.headers.multi_items() if k not in skip}

    async def bare(request: Request) -> Response:
        return Response(body, media_type=media_type)

    async def bare_headers(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return Starlette(routes=[Route("/bare", bare), Route("/bare-headers", bare_headers)])


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        signed, path, answer, node = await node_app(Path(tmp) / "signed", True)
        unsigned, upath, _, unode = await node_app(Path(tmp) / "unsigned", False)
        bare = bare_app(answer)
        rows: list[tuple[str, ASGIApp, str]] = [
            (f"node app, GET /now/cache/{KEY} (signed)", signed, path),
            (f"node app, GET /now/cache/{KEY} (signing off)", unsigned, upath),
            ("bare Starlette route, same body", bare, "/bare"),
            ("bare Starlette route, same body + signed headers", bare, "/bare-headers"),
        ]
        timings: dict[str, list[float]] = {name: [] for name, _, _ in rows}
        for _, app, p in rows:
            await per_call(app, p, args.calls // 10)  # warm-up
        for _ in range(args.rounds):  # interleaved: A B C D A B C D ...
            for name, app, p in rows:
                timings[name].append(await per_call(app, p, args.calls))
        node.close()
        unode.close()
    us = {name: statistics.median(t) for name, t in timings.items()}
    print(f"in-process ASGI calls: {args.calls} calls x {args.rounds} interleaved rounds (median round)")
    for name, value in us.items():
        print(f"{name:<52} {value:>7.2f} CPU µs/call")
    signed_us, _, bare_us, bare_h_us = us.values()
    print(f"{'calls/s, signed / bare route':<52} {bare_us / signed_us:>7.2f}x")
    print(f"{'calls/s, signed / bare route + signed headers':<52} {bare_h_us / signed_us:>7.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
