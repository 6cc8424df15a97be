"""The servers bench_ingest.py measures, each run in its own process: the node as an operator runs it
(`node`, with `--ingest-workers` when asked), one bare Starlette POST route on the same hypercorn
configuration (`bare`, on a port several such processes may share, as the node and its workers do), and
the same bare answer from the ingest workers' lean HTTP/1.1 server (`bare_lean`, server/ingest_http.py):
what HTTP alone costs per item on each."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

BARE_ANSWER = b'{"slot":1}'
COMPILE_CACHE = Path(tempfile.gettempdir()) / "aonode-bench-compile-cache"


def node(port: int, data_dir: str, sign_answers: bool = True, workers: int = 0) -> None:
    """The node with the legacy API mounted (answers signed unless told); with `workers`, `aonode serve
    --ingest-workers` itself (server/serve.py). Its compiled images are kept between runs (a fresh data
    dir compiled the image again, ~20 CPU-s on the cores the bench measures)."""
    from aonode.engine.first_start import compile_cache
    from aonode.engine.frozen_heap import freeze_start
    from aonode.server.event_loop import run_served
    from aonode.server.serve import hypercorn_config, run_until, serve

    COMPILE_CACHE.mkdir(exist_ok=True)
    compile_cache(Path(data_dir)).symlink_to(COMPILE_CACHE, target_is_directory=True)

    if workers:  # frozen at the first announce, as `aonode serve` does (server/cli/serve.py _started)
        serve(port=port, data_dir=Path(data_dir), ingest_workers=workers, announce=lambda _: freeze_start())
        return
    from aonode.server.app import create_app
    from aonode.server.compose import make_node
    from aonode.server.legacy import routes as legacy_routes

    made = make_node(Path(data_dir), dev=False)
    try:
        app = create_app(made, with_legacy=False, extra_routes=legacy_routes(), sign_answers=sign_answers)
        run_served(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))
    finally:
        made.close()


def bare(port: int) -> None:
    """One Starlette POST route that reads the body and answers a short JSON, on the node's hypercorn
    configuration: what HTTP alone costs per item here."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route as StarletteRoute

    from aonode.server.event_loop import run_served
    from aonode.server.ingest_workers import reuse_port_socket
    from aonode.server.serve import hypercorn_config, run_until

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(BARE_ANSWER, media_type="application/json")

    app = Starlette(routes=[StarletteRoute("/bare", answer, methods=["POST", "GET"])])
    config = hypercorn_config("127.0.0.1", port)
    config.bind = [f"fd://{reuse_port_socket('127.0.0.1', port).detach()}"]
    run_served(run_until(app, config, asyncio.Event()))


def bare_lean(port: int) -> None:
    """The same answer to any POST from server/ingest_http.py's server on uvloop (no tunnel taken)."""
    from aonode.server import ingest_http
    from aonode.server.event_loop import run_served
    from aonode.server.ingest_workers import reuse_port_socket

    headers = [(b"content-length", str(len(BARE_ANSWER)).encode()), (b"content-type", b"application/json")]

    async def answer(scope: dict[str, object], body: bytes) -> ingest_http.Answer:
        return ingest_http.Answer(200, headers, BARE_ANSWER)

    async def unreachable(err: BaseException) -> ingest_http.Answer:
        return ingest_http.Answer(503, headers, BARE_ANSWER)

    async def main() -> None:
        server = ingest_http.Server(answer, ("127.0.0.1", 9), unreachable, 1 << 24)
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: ingest_http.Connection(server), sock=reuse_port_socket("127.0.0.1", port))
        await asyncio.Event().wait()

    run_served(main())


def own_cpu(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far, its children not counted."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, seconds: float = 120.0) -> None:
    """Until a process and its children use under 5% of a core over half a second (start-up work over)."""
    before = tree_cpu(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = tree_cpu(pid)
        if now - before < 0.025:
            return
        before = now


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used so far (Linux /proc; nan elsewhere)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu(int(child)) for child in children)
