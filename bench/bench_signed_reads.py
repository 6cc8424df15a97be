"""Signed reads: `GET /<pid>~process@1.0/now/cache/<key>` repeated on a process with nothing new
scheduled, its answer signed by the node wallet and kept by (slot, path) (server/read_cache.py), in one
run next to: the same read with `Accept: application/json`, the same node app with signing off, and a
bare Starlette route answering the same body bytes (and once more with the signed answer's headers too,
to show what the bigger header block costs hypercorn). Target: signed ≥ 0.8× the bare route.

Every server runs in its own process on the same hypercorn configuration (`serve.hypercorn_config`);
the load generator is bench_http.py's (`wrk` when installed, else its asyncio keep-alive client),
in its own process, the rows interleaved over `--rounds` rounds (the median round is shown).

    python bench/bench_signed_reads.py [--seconds 3] [--rounds 3] [--connections 16] [--client auto|wrk|python]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
from pathlib import Path

import httpx

from bench_http import free_port, load_generator, measure_interleaved, print_table, setup_token, start

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
            answer_file.write_text(json.dumps({"body": base64.b64encode(signed.content).decode(),
                                               "content-type": signed.headers["content-type"],
                                               "headers": list(signed.headers.multi_items())}))
            port = free_port()
            bare = f"http://127.0.0.1:{port}"
            procs.append(start([sys.executable, str(HERE), "--serve-bare", str(port), str(answer_file)], bare + "/bare"))
            assert httpx.get(bare + "/bare").content == signed.content
            rows = measure_interleaved([
                (f"GET /now/cache/{KEY} (signed)", reads["signed"], None),
                (f"GET /now/cache/{KEY} (signed, Accept: json)", reads["signed"], "application/json"),
                (f"GET /now/cache/{KEY} (signing off)", reads["unsigned"], None),
                ("GET /bare (Starlette, same body)", bare + "/bare", None),
                ("GET /bare-headers (same body + signed headers)", bare + "/bare-headers", None),
            ], args)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=120)
    print(f"answer: {len(signed.content)} body bytes, "
          f"{sum(len(k) + len(v) + 4 for k, v in signed.headers.multi_items())} header bytes (signed)")
    print_table(rows, client, args)
    signed_row, as_json, unsigned, bare_row, bare_headers = rows
    print(f"\nsigned / bare Starlette:          {signed_row.rps / bare_row.rps:.2f}x requests/s   (target >= 0.80x)")
    print(f"signed (Accept: json) / bare:     {as_json.rps / bare_row.rps:.2f}x")
    print(f"signed / signing off:             {signed_row.rps / unsigned.rps:.2f}x")
    print(f"bare + signed headers / bare:     {bare_headers.rps / bare_row.rps:.2f}x  (what the headers cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
