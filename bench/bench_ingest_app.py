"""The application's own share of a signed ingest: the node's ASGI app called in-process (no hypercorn,
no socket) with pre-signed RSA-4096 items on the three schedule routes bench_ingest.py drives, `--tasks`
at a time, answers unsigned (answer signing is server/signing.py's cost, measured apart).

bench_ingest.py measures the served node, where hypercorn's own HTTP/1.1 work is a large, fixed part
of each item and the neighbours' load moves the rates. Here the CPU time of the whole process (event
loop, worker pool, group-commit writer) per item says what the app's layers cost: middleware, routing,
parse + verify, sequencing, the durable group commit and the JSON answer. `parse + verify` is the
same items' parse and signature check alone in this process (measured right after each run), so
`app - verify` is what the node adds around the crypto. Every run schedules fresh items; each answer
must be a 200 naming a new slot.

    python bench/bench_ingest_app.py [--items 300] [--tasks 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
from bench_ingest import (
    ANS104_HB,
    AOS_MODULE_ID,
    OCTET,
    ROUTES,
    SHARED_MODULES,
    Route,
    sign_many,
    sign_many_httpsig,
    verify_in_process,
)

Item = tuple[dict[str, str], bytes]
KINDS = ("other", "workers", "commit")
THREAD_KINDS = (
    ("aonode-commit", "commit"),
    ("AnyIO worker", "workers"),
    ("aonode-ingest", "workers"),
)  # thread name prefix -> column


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each live thread of this process, by native id, with its kind: the group
    commit writer, the worker pool, or the rest (the event loop, ...). SQLite and the RSA check run
    without the GIL, so a GIL profile does not show them; this does (Linux /proc; empty elsewhere)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = next((k for prefix, k in THREAD_KINDS if thread.name.startswith(prefix)), "other")
        out[thread.native_id or 0] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per kind of thread between two `thread_cpu` readings (threads born meanwhile from 0)."""
    out = {"commit": 0.0, "workers": 0.0, "other": 0.0}
    for tid, (kind, seconds) in after.items():
        out[kind] += seconds - before.get(tid, (kind, 0.0))[1]
    return out


def scope_of(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What hypercorn hands the app for the POST (one fresh scope per call, as served)."""
    raw_path, _, query = path.partition("?")
    head = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(), "query_string": query.encode(),
        "root_path": "", "headers": head, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "state": {},
    }  # fmt: skip


async def post(app: Any, path: str, item: Item) -> tuple[int, bytes]:
    headers, body = item
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope_of(path, headers, body), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def drive(app: Any, path: str, items: list[Item], tasks: int) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, process CPU seconds, CPU seconds by kind of thread) to post every item, `tasks` at a time."""
    pending = list(reversed(items))

    async def worker() -> None:
        while pending:
            status, body = await post(app, path, pending.pop())
            if status != 200 or b'"slot"' not in body:
                raise RuntimeError(f"{status}: {body[:200]!r}")

    started, cpu, threads = time.perf_counter(), time.process_time(), thread_cpu()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - started, time.process_time() - cpu, cpu_by_kind(threads, thread_cpu())


async def run(args: argparse.Namespace) -> None:
    from aonode.engine.crypto import Wallet
    from aonode.server.app import create_app
    from aonode.server.cli.client import build_spawn
    from aonode.server.compose import make_node

    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp), dev=False)
        app = create_app(node, sign_answers=False, cron_every=0)
        wallet = Wallet.generate("rsa")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
            spawn = build_spawn(wallet, module=AOS_MODULE_ID, scheduler=node.address)
            answer = await client.post("/", content=spawn.raw, headers=OCTET)
            answer.raise_for_status()
            pid = answer.json()["process"]
        runs = [(route, r) for r in range(args.rounds) for route in ROUTES]
        print(f"signing {len(runs) * args.items} RSA-4096 items/messages ...", file=sys.stderr)
        items = {
            (route, r): sign_many_httpsig(wallet, pid, args.items, f"{route.path}{r}")
            if route.kind == "httpsig"
            else sign_many(wallet, pid, args.items, f"{route.path}{r}", OCTET if route.path == "/" else ANS104_HB)
            for route, r in runs
        }
        node.images.load(AOS_MODULE_ID).wait_variant()  # its background compile is not the ingest's CPU
        rows: dict[Route, list[list[float]]] = {route: [] for route in ROUTES}
        for route, r in runs:
            seconds, cpu, kinds = await drive(app, route.path.format(pid=pid), items[route, r], args.tasks)
            verified = verify_in_process(route.kind, items[route, r])
            ms = 1000 / len(items[route, r])
            rows[route].append(
                [cpu * ms, verified.cpu_seconds * ms, *(kinds[k] * ms for k in KINDS), n_per(seconds, ms)]
            )
        node.close()
    print(
        f"\nin-process ASGI posts, answers unsigned: {args.items} items x {args.rounds} rounds per route, "
        f"{args.tasks} at a time (median round). CPU ms per item: app = the whole process, verify = parse + "
        "verify alone; by thread: loop (event loop and the rest), workers (the threads the check runs on), "
        "commit (the group-commit writer: sequencing and SQLite)"
    )
    print(
        f"{'route':<44} {'app':>6} {'verify':>6} {'app-verify':>10} {'loop':>6} {'workers':>7} {'commit':>6} "
        f"{'items/s':>8}"
    )
    for route, got in rows.items():
        app_ms, verify_ms, loop_ms, workers_ms, commit_ms, rate = (
            statistics.median(r[i] for r in got) for i in range(6)
        )
        print(
            f"{route.name + ' ' + route.kind:<44} {app_ms:>6.2f} {verify_ms:>6.2f} {app_ms - verify_ms:>10.2f} "
            f"{loop_ms:>6.2f} {workers_ms:>7.2f} {commit_ms:>6.2f} {rate:>8.0f}"
        )


def n_per(seconds: float, ms_per_item: float) -> float:
    """Items per second from the run's seconds and the factor 1000 / items."""
    return 1000 / ms_per_item / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300, help="signed items per route and round")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent posts (as client connections)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if SHARED_MODULES.is_dir():
        os.environ.setdefault("AONODE_MODULE_PATH", str(SHARED_MODULES))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
