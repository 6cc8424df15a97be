"""HTTP read throughput: `GET /<pid>~process@1.0/now/cache/<key>` on a process with nothing new
scheduled, its answer signed by the node (server/signing.py), next to a bare Starlette route on the
same hypercorn configuration (target: ≥ 0.8× its requests/s), next to the same node app with
unsigned answers, and next to a dry-run through the wasm device (target: the read ≥ 50× faster).

Every server runs in its own process and the load generator in another one: `wrk` when it is
installed (apt-get install wrk), otherwise the small asyncio keep-alive client in this file.

    python bench/bench_http.py [--seconds 5] [--connections 16] [--client auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve()
MODULE = "aos2_0_6"
TOKEN_BOOT = """
Balances = { [Owner] = '1000000' }
TotalSupply = '1000000'
Handlers.add('Balance', 'Balance', function(msg)
  msg.reply({ Balance = Balances[msg.Target or msg.From] or '0', Ticker = 'BENCH' })
end)
Send({ device = 'patch@1.0', cache = { balances = Balances, totalsupply = TotalSupply } })
"""


@dataclass
class Measurement:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# -- servers (each in its own process) -------------------------------------------------------------


def serve_bare(port: int) -> None:
    """A one-route Starlette app answering a short text body: the ceiling for any Starlette route."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from aonode.server.serve import hypercorn_config, run_until

    async def bare(request: object) -> PlainTextResponse:
        return PlainTextResponse("1000000")

    app = Starlette(routes=[Route("/bare", bare)])
    asyncio.run(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))


def serve_unsigned(port: int, data_dir: str) -> None:
    """The same node app with its answers left unsigned: what signing (server/signing.py) costs."""
    from aonode.server.app import create_app
    from aonode.server.compose import make_node
    from aonode.server.serve import hypercorn_config, run_until

    node = make_node(Path(data_dir), dev=True)
    try:
        app = create_app(node, dev=True, sign_answers=False)
        asyncio.run(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))
    finally:
        node.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], probe: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(probe, timeout=5)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {' '.join(cmd)}")
            time.sleep(0.1)


# -- load generators (each in its own process) ----------------------------------------------------


def run_wrk(url: str, seconds: float, connections: int, body: bytes | None, accept: str | None = None) -> Measurement:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format(\'JSON {"requests":%d,"seconds":%f,"p50":%d,"p99":%d,'
            '"errors":%d}\\n\', summary.requests, summary.duration / 1e6, latency:percentile(50),'
            " latency:percentile(99), summary.errors.status + summary.errors.connect +"
            " summary.errors.read + summary.errors.write + summary.errors.timeout))\nend\n"
        )
        if body is not None:
            script.write(
                f"wrk.method = 'POST'\nwrk.body = {json.dumps(body.decode())}\n"
                "wrk.headers['Content-Type'] = 'application/json'\n"
            )
        if accept is not None:
            script.write(f"wrk.headers['Accept'] = {json.dumps(accept)}\n")
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "60s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    stats = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    return Measurement(
        "", stats["requests"], stats["seconds"], stats["p50"] / 1000, stats["p99"] / 1000, stats["errors"]
    )


def run_python_client(
    url: str, seconds: float, connections: int, body: bytes | None, accept: str | None = None
) -> Measurement:
    cmd = [sys.executable, str(HERE), "--load", url, "--seconds", str(seconds), "--connections", str(connections)]
    if body is not None:
        cmd += ["--body", body.decode()]
    if accept is not None:
        cmd += ["--accept", accept]
    stats = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return Measurement("", stats["requests"], stats["seconds"], stats["p50"], stats["p99"], stats["errors"])


async def _load(url: str, seconds: float, connections: int, body: bytes | None, accept: str | None = None) -> dict:
    """Keep-alive HTTP/1.1 clients on raw sockets: cheap enough not to be the bottleneck."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    method = "POST" if body is not None else "GET"
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body is not None else "")
        + (f"Accept: {accept}\r\n" if accept is not None else "")
        + "\r\n"
    ).encode()
    request = head + (body or b"")
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def one_connection() -> None:
        """One keep-alive connection; reconnects when the server closes it (hypercorn does after
        `keep_alive_max_requests`, as wrk does)."""
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                if not status_line:  # closed before this request: reconnect and send it again
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                    continue
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not status_line.startswith(b"HTTP/1.1 2"):
                    errors += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "seconds": elapsed, "p50": pick(0.50), "p99": pick(0.99), "errors": errors}


# -- the benchmark --------------------------------------------------------------------------------


def load_generator(args: argparse.Namespace) -> tuple[str, Callable[..., Measurement]]:
    if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")):
        return "wrk", run_wrk
    return "python asyncio", run_python_client


def measure_interleaved(
    targets: list[tuple[str, str]] | list[tuple[str, str, str | None]], args: argparse.Namespace
) -> list[Measurement]:
    """Each target `rounds` times, in turn (A B C A B C ...), so a noisy neighbour hits all alike;
    the row is the round with the median requests/s. A target is (name, url[, Accept header])."""
    _, run = load_generator(args)
    for _, url, *accept in targets:
        run(url, 1.0, args.connections, None, *accept)  # warm-up
    rounds: dict[str, list[Measurement]] = {target[0]: [] for target in targets}
    for _ in range(args.rounds):
        for name, url, *accept in targets:
            m = run(url, args.seconds, args.connections, None, *accept)
            m.name = name
            rounds[name].append(m)
    return [sorted(ms, key=lambda m: m.rps)[len(ms) // 2] for ms in rounds.values()]


def measure_two_connections(name: str, url: str, args: argparse.Namespace, body: bytes | None = None) -> Measurement:
    """Dry-runs evaluate wasm on a copy of the process, so two connections already fill the node;
    the read is measured the same way so the latencies compare like for like."""
    _, run = load_generator(args)
    m = run(url, max(args.seconds, 5.0), 2, body)
    m.name = f"{name} (2 connections)"
    return m


def setup_token(base: str) -> str:
    with httpx.Client(base_url=base, timeout=300) as c:
        r = c.post(
            "/~process@1.0/schedule",
            json={
                "Tags": [{"name": "Module", "value": MODULE}, {"name": "On-Boot", "value": "Data"}],
                "Data": TOKEN_BOOT,
            },
        )
        r.raise_for_status()
        pid = r.json()["process"]
        assert c.get(f"/{pid}~process@1.0/now/cache/totalsupply").text == "1000000"
        return pid


def print_table(rows: list[Measurement], client: str, args: argparse.Namespace) -> None:
    print(
        f"\nload generator: {client} in its own process; {args.connections} connections, "
        f"{args.seconds:g} s x {args.rounds} interleaved rounds (median round shown)"
    )
    print(f"{'what':<48} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for m in rows:
        print(f"{m.name:<48} {m.rps:>10.0f} {m.p50_ms:>9.2f} {m.p99_ms:>9.2f} {m.errors:>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-unsigned", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--accept", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if args.serve_unsigned:
        serve_unsigned(int(args.serve_unsigned[0]), args.serve_unsigned[1])
        return 0
    if args.load:
        body = args.body.encode() if args.body is not None else None
        print(json.dumps(asyncio.run(_load(args.load, args.seconds, args.connections, body, args.accept))))
        return 0

    client, _ = load_generator(args)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as tmp_unsigned:
        node_port, bare_port, unsigned_port = free_port(), free_port(), free_port()
        node_url, bare_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{bare_port}"
        unsigned_url = f"http://127.0.0.1:{unsigned_port}"
        node_proc = start(
            [sys.executable, "-m", "aonode.server.cli", "serve", "--dev", "--port", str(node_port), "--data-dir", tmp],
            node_url + "/~meta@1.0/info",
        )
        bare_proc = start([sys.executable, str(HERE), "--serve-bare", str(bare_port)], bare_url + "/bare")
        unsigned_proc = start(
            [sys.executable, str(HERE), "--serve-unsigned", str(unsigned_port), tmp_unsigned],
            unsigned_url + "/~meta@1.0/info",
        )
        try:
            pid = setup_token(node_url)
            base = f"{node_url}/{pid}~process@1.0"
            unsigned_base = f"{unsigned_url}/{setup_token(unsigned_url)}~process@1.0"
            rows = measure_interleaved(
                [
                    ("GET /now/cache/totalsupply (aonode, signed)", f"{base}/now/cache/totalsupply"),
                    ("GET /compute/cache/totalsupply (aonode, signed)", f"{base}/compute/cache/totalsupply"),
                    ("GET /bare (Starlette, same hypercorn config)", f"{bare_url}/bare"),
                    ("GET /now/cache/totalsupply (aonode, unsigned)", f"{unsigned_base}/now/cache/totalsupply"),
                ],
                args,
            )
            body = json.dumps({"Tags": [{"name": "Action", "value": "Balance"}]}).encode()
            rows.append(measure_two_connections("GET /now/cache/totalsupply", f"{base}/now/cache/totalsupply", args))
            rows.append(
                measure_two_connections(
                    "POST /dry-run Action=Balance (wasm)", f"{node_url}/dry-run?process-id={pid}", args, body
                )
            )
        finally:
            for proc in (node_proc, bare_proc, unsigned_proc):
                proc.terminate()
                proc.wait(timeout=120)
    print_table(rows, client, args)
    now, bare, unsigned, now2, dry = rows[0], rows[2], rows[3], rows[4], rows[5]
    print(f"\nnow-read (signed) / bare Starlette: {now.rps / bare.rps:.2f}x requests/s   (target >= 0.80x)")
    print(f"now-read signed / unsigned: {now.rps / unsigned.rps:.2f}x requests/s")
    if dry.rps:
        print(
            f"now-read / dry-run (2 connections each): {now2.rps / dry.rps:.0f}x requests/s, "
            f"p50 latency {dry.p50_ms / now2.p50_ms:.0f}x lower   (target >= 50x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
