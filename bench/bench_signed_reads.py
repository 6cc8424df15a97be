"""Signed reads: `GET /<pid>~process@1.0/now/cache/<key>` repeated on a process with nothing new
scheduled, its answer signed by the node wallet and kept by (slot, path) (server/read_cache.py), in one
run next to: the same read with `Accept: application/json`, the same node app with signing off, and a
bare Starlette route answering the same body bytes (and once more with the signed answer's headers too,
to show what the bigger header block costs hypercorn). Target: signed ≥ 0.8× the bare route.

Every server runs in its own process on the same hypercorn configuration (`serve.hypercorn_config`);
the load generator is bench_http.py's (`wrk` when installed, else its asyncio keep-alive client),
in its own process, the rows interleaved over `--rounds` rounds (the median round is shown). On a
shared machine requests/s swing with the neighbours' load, so each row also gets the server process's
own CPU time per answer (user + system from /proc, all rounds): one core's worth of answers per second
is 1e6 / that, and its ratios hold still while the wall-clock ones move.

    python bench/bench_signed_reads.py [--seconds 3] [--rounds 3] [--connections 16] [--client auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from bench_http import Measurement, free_port, load_generator, setup_token, start

HERE = Path(__file__).resolve()
KEY = "totalsupply"


def serve_node(port: int, data_dir: str, signed: bool) -> None:
    """The node app as `aonode serve --dev` builds it, with answers signed or not."""
    from aonode.server.app import create_app
    from aonode.server.compose import make_node
    from aonode.server.serve import hypercorn_config, run_until

    node = make_node(Path(data_dir), dev=True)
    try:
        app = create_app(node, dev=True, sign_answers=signed)
        asyncio.run(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))
    finally:
        node.close()


def serve_bare(port: int, answer_file: str) -> None:
    """Two one-line Starlette routes answering the node's body: `/bare` with its content type only,
    `/bare-headers` with every header the signed answer carried (signature, digest, CORS)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from aonode.server.serve import hypercorn_config, run_until

    answer = json.loads(Path(answer_file).read_text())
    body, media_type = base64.b64decode(answer["body"]), answer["content-type"]
    headers = {k: v for k, v in answer["headers"] if k not in ("content-type", "content-length", "date", "server")}

    async def bare(request: Request) -> Response:
        return Response(body, media_type=media_type)

    async def bare_headers(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    app = Starlette(routes=[Route("/bare", bare), Route("/bare-headers", bare_headers)])
    asyncio.run(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Target = tuple[str, str, str | None, int]  # name, url, Accept header, the server's process id


def measure(targets: list[Target], args: argparse.Namespace) -> list[tuple[Measurement, float]]:
    """Each (name, url, Accept, server pid) `rounds` times in turn (A B C A B C ...): the median round's
    requests/s and latencies, and the server's CPU microseconds per answer over all rounds."""
    _, run = load_generator(args)
    for _, url, accept, _ in targets:
        run(url, 1.0, args.connections, None, accept)  # warm-up
    rounds: dict[str, list[Measurement]] = {name: [] for name, *_ in targets}
    cpu = {name: 0.0 for name, *_ in targets}
    for _ in range(args.rounds):
        for name, url, accept, pid in targets:
            before = cpu_seconds(pid)
            m = run(url, args.seconds, args.connections, None, accept)
            cpu[name] += cpu_seconds(pid) - before
            m.name = name
            rounds[name].append(m)
    rows = []
    for name, ms in rounds.items():
        median = statistics.median_low(sorted(m.rps for m in ms))
        per_answer = cpu[name] * 1e6 / max(1, sum(m.requests for m in ms))
        rows.append((next(m for m in ms if m.rps == median), per_answer))
    return rows


def print_rows(rows: list[tuple[Measurement, float]], client: str, args: argparse.Namespace) -> None:
    print(
        f"\nload generator: {client} in its own process; {args.connections} connections, "
        f"{args.seconds:g} s x {args.rounds} interleaved rounds (median round shown; CPU over all rounds)"
    )
    print(
        f"{'what':<48} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server CPU us/req':>17} "
        f"{'req/s per core':>14}"
    )
    for m, us in rows:
        print(
            f"{m.name:<48} {m.rps:>7.0f} {m.p50_ms:>7.2f} {m.p99_ms:>7.2f} {m.errors:>6} {us:>17.0f} {1e6 / us:>14.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--serve-node", nargs=3, metavar=("PORT", "DATA_DIR", "SIGNED"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "ANSWER_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_node:
        serve_node(int(args.serve_node[0]), args.serve_node[1], args.serve_node[2] == "signed")
        return 0
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return 0

    client, _ = load_generator(args)
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            urls: dict[str, str] = {}
            for kind in ("signed", "unsigned"):
                port = free_port()
                urls[kind] = f"http://127.0.0.1:{port}"
                (Path(tmp) / kind).mkdir()
                cmd = [sys.executable, str(HERE), "--serve-node", str(port), str(Path(tmp) / kind), kind]
                procs.append(start(cmd, urls[kind] + "/~meta@1.0/info"))
            reads = {kind: f"{url}/{setup_token(url)}~process@1.0/now/cache/{KEY}" for kind, url in urls.items()}
            signed = httpx.get(reads["signed"])
            assert signed.status_code == 200 and "signature" in signed.headers, signed.headers
            answer_file = Path(tmp) / "answer.json"
            answer_file.write_text(
                json.dumps(
                    {
                        "body": base64.b64encode(signed.content).decode(),
                        "content-type": signed.headers["content-type"],
                        "headers": list(signed.headers.multi_items()),
                    }
                )
            )
            port = free_port()
            bare = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, str(HERE), "--serve-bare", str(port), str(answer_file)]
            procs.append(start(cmd, bare + "/bare"))
            assert httpx.get(bare + "/bare").content == signed.content
            node_pid, unsigned_pid, bare_pid = (proc.pid for proc in procs)
            rows = measure(
                [
                    (f"GET /now/cache/{KEY} (signed)", reads["signed"], None, node_pid),
                    (f"GET /now/cache/{KEY} (signed, Accept: json)", reads["signed"], "application/json", node_pid),
                    (f"GET /now/cache/{KEY} (signing off)", reads["unsigned"], None, unsigned_pid),
                    ("GET /bare (Starlette, same body)", bare + "/bare", None, bare_pid),
                    ("GET /bare-headers (same body + signed headers)", bare + "/bare-headers", None, bare_pid),
                ],
                args,
            )
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=120)
    print(
        f"answer: {len(signed.content)} body bytes, "
        f"{sum(len(k) + len(v) + 4 for k, v in signed.headers.multi_items())} header bytes (signed)"
    )
    print_rows(rows, client, args)
    (signed_row, signed_us), (as_json, json_us), (unsigned, unsigned_us), (bare_row, bare_us), (bare_h, bare_h_us) = (
        rows
    )
    print("\n                                  requests/s   CPU per answer (per core)")
    for label, (a, a_us), (b, b_us) in (
        ("signed / bare Starlette", (signed_row, signed_us), (bare_row, bare_us)),
        ("signed (Accept: json) / bare", (as_json, json_us), (bare_row, bare_us)),
        ("signed / signing off", (signed_row, signed_us), (unsigned, unsigned_us)),
        ("signed / bare + signed headers", (signed_row, signed_us), (bare_h, bare_h_us)),
        ("bare + signed headers / bare", (bare_h, bare_h_us), (bare_row, bare_us)),
    ):
        print(f"{label:<34}{a.rps / b.rps:>9.2f}x {b_us / a_us:>12.2f}x")
    print("target: signed >= 0.80x bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
