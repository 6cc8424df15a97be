"""The servers bench_ingest.py measures, each run in its own process: the node as an operator runs it
(`node`, with `--ingest-workers` when asked), and one bare Starlette POST route on the same hypercorn
configuration (`bare`, on a port several such processes may share, as the node and its workers do)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path


def node(port: int, data_dir: str, sign_answers: bool = True, workers: int = 0) -> None:
    """The node with the legacy API mounted (answers signed unless told); with `workers`, `aonode serve
    --ingest-workers` itself (server/serve.py)."""
    from aonode.server.serve import hypercorn_config, run_served, run_until, serve

    if workers:
        serve(port=port, data_dir=Path(data_dir), ingest_workers=workers, announce=lambda _: None)
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

    from aonode.server.ingest_workers import reuse_port_socket
    from aonode.server.serve import hypercorn_config, run_served, run_until

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(b'{"slot":1}', media_type="application/json")

    app = Starlette(routes=[StarletteRoute("/bare", answer, methods=["POST", "GET"])])
    config = hypercorn_config("127.0.0.1", port)
    config.bind = [f"fd://{reuse_port_socket('127.0.0.1', port).detach()}"]
    run_served(run_until(app, config, asyncio.Event()))


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used so far (Linux /proc; nan elsewhere)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu(int(child)) for child in children)
