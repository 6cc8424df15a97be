"""Signed-message ingest and read latency through the legacy API (server/legacy/).

1. Ingest: pre-signed ANS-104 items (RSA-4096, as aoconnect signs) POSTed concurrently; each is
   parsed, verified and durably scheduled before the answer (no evaluation). Measured on the
   legacy MU route `POST /` and on the HyperBEAM route `POST /<pid>~process@1.0/schedule`, there also
   with the same messages as httpsig@1.0 (RFC 9421 rsa-pss-sha512), next to the in-process
   parse+verify rate (the ceiling the crypto sets).
2. Reads of one value, one keep-alive connection, sequential: a dry-run (`POST /dry-run`, the
   legacy way: a wasm evaluation per read) against `GET /<pid>~process@1.0/now/cache/balances/<addr>`
   (a patched-cache read); both must answer the same balance.

The node runs in its own process (`--serve`), the load generator here.

    python bench/bench_ingest.py [--messages 400] [--connections 8] [--reads 100]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from bench_http import free_port, start  # noqa: E402  (same folder: shared server start-up helpers)

AOS_MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"
SHARED_MODULES = HERE.parents[2] / "shared" / "modules"
OCTET = {"Content-Type": "application/octet-stream"}
TOKEN_LUA = """
Balances = Balances or { [Owner] = '1000000' }
Handlers.add('Balance', 'Balance', function(msg)
  local who = msg.Tags.Target or msg.From
  msg.reply({ Action = 'Balance-Notice', Balance = Balances[who] or '0' })
end)
Send({ device = 'patch@1.0', cache = { balances = Balances } })
"""


@dataclass
class Row:
    name: str
    count: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def serve(port: int, data_dir: str) -> None:
    """The node with the legacy API mounted, as an operator would run it."""
    from aonode.server.compose import make_node
    from aonode.server.app import create_app
    from aonode.server.legacy import routes as legacy_routes
    from aonode.server.serve import hypercorn_config, run_until

    node = make_node(Path(data_dir), dev=False)
    try:
        app = create_app(node, with_legacy=False, extra_routes=legacy_routes())
        asyncio.run(run_until(app, hypercorn_config("127.0.0.1", port), asyncio.Event()))
    finally:
        node.close()


def setup_token(http: httpx.Client, wallet: object, scheduler: str) -> str:
    from aonode.server.cli.client import build_message, build_spawn, new_anchor

    spawned = http.post("/", content=build_spawn(wallet, module=AOS_MODULE_ID, scheduler=scheduler).raw,  # type: ignore[arg-type]
                        headers=OCTET)
    spawned.raise_for_status()
    pid = spawned.json()["process"]
    boot = build_message(wallet, process=pid, tags=[("Action", "Eval")], data=TOKEN_LUA, anchor=new_anchor())  # type: ignore[arg-type]
    http.post("/", content=boot.raw, headers=OCTET).raise_for_status()
    result = http.get(f"/result/{boot.id}", params={"process-id": pid}).json()
    if result.get("Error"):
        raise RuntimeError(f"token boot failed: {result['Error']}")
    return pid


def sign_many(wallet: object, pid: str, count: int, label: str) -> list[bytes]:
    from aonode.server.cli.client import build_message, new_anchor

    return [build_message(wallet, process=pid, tags=[("Action", "Ping"), ("Bench", label)],  # type: ignore[arg-type]
                          data=f"{label}-{i}", anchor=new_anchor()).raw for i in range(count)]


def sign_many_httpsig(wallet: object, pid: str, count: int) -> list[tuple[dict[str, str], bytes]]:
    """httpsig@1.0 messages (RFC 9421, rsa-pss-sha512) with the same content as `sign_many`'s."""
    from aonode.engine import httpsig

    out = []
    for i in range(count):
        req = httpsig.signed_message(wallet, {"action": b"Ping", "bench": b"httpsig", "target": pid.encode(),  # type: ignore[arg-type]
                                              "data": f"httpsig-{i}".encode()})
        out.append((dict(req.headers), req.body))
    return out


async def _post_all(url: str, bodies: list[bytes] | list[tuple[dict[str, str], bytes]], connections: int) -> Row:
    queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body if isinstance(body, tuple) else (OCTET, body))
    latencies: list[float] = []
    failures: list[str] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                headers, body = queue.get_nowait()
                t0 = time.perf_counter()
                answer = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                if answer.status_code != 200:
                    failures.append(answer.text[:200])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} posts failed, e.g. {failures[0]}")
    return Row("", len(bodies), elapsed, latencies)


def ingest(url: str, bodies: list[bytes] | list[tuple[dict[str, str], bytes]], connections: int, name: str) -> Row:
    row = asyncio.run(_post_all(url, bodies, connections))
    row.name = name
    return row


def verify_in_process(bodies: list[bytes]) -> Row:
    from aonode.engine.ans104 import DataItem

    latencies = []
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        if not DataItem.parse(body).verify():
            raise RuntimeError("a freshly signed item does not verify")
        latencies.append(time.perf_counter() - t0)
    return Row("parse + verify only (in process, no HTTP)", len(bodies), time.perf_counter() - started, latencies)


def timed_reads(name: str, count: int, read: object) -> tuple[Row, str]:
    latencies: list[float] = []
    value = ""
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        value = read()  # type: ignore[operator]
        latencies.append(time.perf_counter() - t0)
    return Row(name, count, time.perf_counter() - started, latencies), value


def read_latency(http: httpx.Client, pid: str, owner: str, count: int) -> list[Row]:
    body = {"Id": "1234", "Target": pid, "Owner": owner, "Data": "1234",
            "Tags": [{"name": "Action", "value": "Balance"}, {"name": "Target", "value": owner}]}

    def dry_run() -> str:
        answer = http.post("/dry-run", params={"process-id": pid}, json=body)
        answer.raise_for_status()
        reply = answer.json()["Messages"][0]
        return next(t["value"] for t in reply["Tags"] if t["name"] == "Balance")

    def cache_read() -> str:
        answer = http.get(f"/{pid}~process@1.0/now/cache/balances/{owner}")
        answer.raise_for_status()
        return answer.text

    dry_run(), cache_read()  # warm-up: first dry-run restores the image, first read computes
    dry_row, dry_value = timed_reads("POST /dry-run Balance (wasm per read)", count, dry_run)
    get_row, get_value = timed_reads("GET /now/cache/balances/<owner>", count * 10, cache_read)
    if dry_value != get_value:
        raise RuntimeError(f"dry-run says {dry_value}, the cache read says {get_value}")
    return [dry_row, get_row]


def print_table(title: str, rows: list[Row], unit: str) -> None:
    print(f"\n{title}")
    print(f"{'what':<52} {'n':>6} {unit:>10} {'p50 ms':>9} {'p99 ms':>9}")
    for r in rows:
        print(f"{r.name:<52} {r.count:>6} {r.rate:>10.0f} {r.pct(0.50):>9.2f} {r.pct(0.99):>9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400, help="signed items per ingest route")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--reads", type=int, default=100, help="dry-runs (cache reads: 10x as many)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if SHARED_MODULES.is_dir():
        os.environ.setdefault("AONODE_MODULE_PATH", str(SHARED_MODULES))
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0

    from aonode.engine.crypto import Wallet

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start([sys.executable, str(HERE), "--serve", str(port), tmp], base + "/~meta@1.0/info")
        try:
            with httpx.Client(base_url=base, timeout=300) as http:
                address = http.get("/~meta@1.0/info/address").text
                wallet = Wallet.generate("rsa")
                pid = setup_token(http, wallet, address)
                reads = read_latency(http, pid, wallet.address, args.reads)
                print(f"signing {3 * args.messages} RSA-4096 items/messages ...", file=sys.stderr)
                legacy_items = sign_many(wallet, pid, args.messages, "mu")
                hb_items = sign_many(wallet, pid, args.messages, "hb")
                httpsig_items = sign_many_httpsig(wallet, pid, args.messages)
                before = http.get(f"/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()["current"]
                ingests = [
                    ingest(f"{base}/", legacy_items, args.connections, "POST / (legacy MU): verify + schedule"),
                    ingest(f"{base}/{pid}~process@1.0/schedule", hb_items, args.connections,
                           "POST /<pid>~process@1.0/schedule: verify + schedule"),
                    ingest(f"{base}/{pid}~process@1.0/schedule", httpsig_items, args.connections,
                           "POST /<pid>~process@1.0/schedule httpsig@1.0: verify + schedule"),
                    verify_in_process(legacy_items),
                ]
                after = http.get(f"/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()["current"]
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    if after - before != 3 * args.messages:
        raise RuntimeError(f"expected {3 * args.messages} new slots, got {after - before}")
    print_table(f"ingest: {args.messages} signed items per route, {args.connections} connections", ingests, "items/s")
    print_table("reads of the same balance: one connection, sequential", reads, "reads/s")
    ratio = statistics.median(reads[0].latencies) / statistics.median(reads[1].latencies)
    print(f"\ncache read is {ratio:.0f}x faster than a dry-run at the median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
