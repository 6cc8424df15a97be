"""Signed-message ingest, and read latency through the legacy API (server/legacy/).

1. Ingest: pre-signed messages (RSA-4096, as aoconnect signs) POSTed concurrently by a lean client
   (bench/ingest_client.py) over 8 and 16 keep-alive connections; each is parsed, verified, durably
   scheduled (group commit) and answered signed by the node (no evaluation). Routes: the legacy MU
   `POST /` and HyperBEAM's `POST /~scheduler@1.0/schedule?target=` with ANS-104 items, and
   `POST /<pid>~process@1.0/schedule` with httpsig@1.0 (RFC 9421 rsa-pss-sha512) messages. Each rate
   is set next to the in-process parse+verify rate of its kind measured in the same run: on a shared
   machine that ratio is the honest number (issue 13's target: 1,500 items/s where parse+verify does
   ~6,200/s, i.e. >= 0.24); the parse+verify rate is measured right after each run, under the same
   load. Each run starts once the node is quiet (its compiled images are kept between bench runs:
   ingest_servers.COMPILE_CACHE). CPU per item of the node's own process (with workers: the sequencer),
   of its ingest workers, and of this process posting (it shares the machine's cores with the node):
   1,500/s on 2 cores leaves 1.33 ms of CPU per item for all three. `--unsigned-answers` serves the
   same app with answer signing off: the node's cost per item outside answer signing
   (server/signing.py), the part the ingest path itself spends. Last, the same bodies are posted to a
   bare Starlette route on the same hypercorn configuration (it reads the body and answers a short
   JSON), and to the same answer from the workers' lean HTTP/1.1 server
   (server/ingest_http.py): the rate and server CPU any route has on each server and machine.
2. Reads of one value, one keep-alive connection, sequential: a dry-run (`POST /dry-run`, the
   legacy way: a wasm evaluation per read) against `GET /<pid>~process@1.0/now/cache/balances/<addr>`
   (a patched-cache read); both must answer the same balance.

The node runs in its own process (`--serve`), the load generator here. `--ingest-workers 0 2` runs
everything once per count, the node started with that many worker processes (`aonode serve
--ingest-workers`), and adds the bare route served by 1 + the most workers processes sharing one port.

    python bench/bench_ingest.py [--messages 400] [--connections 8 16] [--reads 100] [--unsigned-answers]
        [--ingest-workers 0 2]
"""

from __future__ import annotations

import argparse
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
import ingest_servers  # noqa: E402
from bench_http import free_port, start  # noqa: E402  (same folder: shared server start-up helpers)
from ingest_client import encode_post, run  # noqa: E402
from ingest_report import Cpu, print_ingest  # noqa: E402
from ingest_servers import own_cpu, tree_cpu, wait_quiet  # noqa: E402

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
    cpu_seconds: float = 0.0  # this process's CPU time over the row (verify_in_process, the client's posts)
    load: float = 0.0  # the machine's 1-minute load average at the row's end

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def bare_rows(items: list[tuple[dict[str, str], bytes]], connections: list[int], processes: int = 1,
              lean: bool = False) -> list[tuple[Row, Cpu]]:  # fmt: skip
    """The same bodies posted to `ingest_servers.bare` (hypercorn + Starlette) or `bare_lean` (the workers'
    server/ingest_http.py) in `processes` processes sharing one port, per connection count."""
    port = free_port()
    flag = "--serve-bare-lean" if lean else "--serve-bare"
    procs = [
        start([sys.executable, str(HERE), flag, str(port)], f"http://127.0.0.1:{port}/bare") for _ in range(processes)
    ]
    try:
        name = "bare lean HTTP/1.1 route (ingest_http)" if lean else "bare Starlette POST route"
        route = Route(name + (f" x{processes}" if processes > 1 else ""), "same bodies", "/bare")
        rows = [ingest(port, route, "", items, conns, *(p.pid for p in procs)) for conns in connections]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
    return rows


def setup_token(http: httpx.Client, wallet: object, scheduler: str) -> str:
    from aonode.server.cli.client import build_message, build_spawn, new_anchor

    spawned = http.post(
        "/",
        content=build_spawn(wallet, module=AOS_MODULE_ID, scheduler=scheduler).raw,  # type: ignore[arg-type]
        headers=OCTET,
    )
    spawned.raise_for_status()
    pid = spawned.json()["process"]
    boot = build_message(wallet, process=pid, tags=[("Action", "Eval")], data=TOKEN_LUA, anchor=new_anchor())  # type: ignore[arg-type]
    http.post("/", content=boot.raw, headers=OCTET).raise_for_status()
    result = http.get(f"/result/{boot.id}", params={"process-id": pid}).json()
    if result.get("Error"):
        raise RuntimeError(f"token boot failed: {result['Error']}")
    return pid


def sign_many(
    wallet: object,
    pid: str,
    count: int,
    label: str,
    headers: dict[str, str] = OCTET,
) -> list[tuple[dict[str, str], bytes]]:
    from aonode.server.cli.client import build_message, new_anchor

    return [
        (
            headers,
            build_message(
                wallet,
                process=pid,
                tags=[("Action", "Ping"), ("Bench", label)],  # type: ignore[arg-type]
                data=f"{label}-{i}",
                anchor=new_anchor(),
            ).raw,
        )
        for i in range(count)
    ]


def sign_many_httpsig(wallet: object, pid: str, count: int, label: str) -> list[tuple[dict[str, str], bytes]]:
    """httpsig@1.0 messages (RFC 9421, rsa-pss-sha512) with the same content as `sign_many`'s."""
    from aonode.engine import httpsig

    out = []
    for i in range(count):
        req = httpsig.signed_message(
            wallet,
            {
                "action": b"Ping",
                "bench": label.encode(),
                "target": pid.encode(),  # type: ignore[arg-type]
                "data": f"{label}-{i}".encode(),
            },
        )
        out.append((dict(req.headers), req.body))
    return out


@dataclass(frozen=True)
class Route:
    name: str
    kind: str  # "ans104" or "httpsig": what is posted, and whose parse+verify rate it is compared with
    path: str  # with {pid}


ROUTES = (
    Route("POST / (legacy MU)", "ans104", "/"),
    Route("POST /~scheduler@1.0/schedule?target=", "ans104", "/~scheduler@1.0/schedule?target={pid}"),
    Route("POST /<pid>~process@1.0/schedule", "httpsig", "/{pid}~process@1.0/schedule"),
)
ANS104_HB = {"content-type": "application/ans104", "codec-device": "ans104@1.0"}  # as aoconnect sends


def ingest(
    port: int, route: Route, pid: str, items: list[tuple[dict[str, str], bytes]], connections: int, *node_pids: int
) -> tuple[Row, Cpu]:
    """The route's rate with pre-encoded requests (bench/ingest_client.py), once the server is quiet; the
    CPU ms/item of its processes (the first alone, and the rest with every child: the ingest workers)."""
    path = route.path.format(pid=pid)
    requests = [encode_post(f"127.0.0.1:{port}", path, headers, body) for headers, body in items]
    wait_quiet(node_pids[0])
    own_before, tree_before = own_cpu(node_pids[0]), sum(map(tree_cpu, node_pids))
    client_before = time.process_time()
    outcome = run("127.0.0.1", port, requests, connections)
    client_seconds = time.process_time() - client_before
    own_ms = (own_cpu(node_pids[0]) - own_before) * 1000 / len(items)
    tree_ms = (sum(map(tree_cpu, node_pids)) - tree_before) * 1000 / len(items)
    if outcome.failures:
        raise RuntimeError(f"{len(outcome.failures)} posts failed, e.g. {outcome.failures[0]}")
    if pid and len(set(outcome.slots)) != len(items):  # the bare routes answer one slot to all
        raise RuntimeError(f"{len(items)} items scheduled, but {len(set(outcome.slots))} distinct slots answered")
    name = f"{route.name} {route.kind}, {connections} conns"
    row = Row(name, len(items), outcome.seconds, outcome.latencies, client_seconds, os.getloadavg()[0])
    return row, Cpu(own_ms, tree_ms - own_ms)


def verify_in_process(kind: str, items: list[tuple[dict[str, str], bytes]]) -> Row:
    """Parse + verify alone, in this process, one at a time: the rate the crypto and parsing allow."""
    from aonode.engine import httpsig
    from aonode.engine.ans104 import DataItem

    latencies = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for headers, body in items:
        t0 = time.perf_counter()
        if kind == "ans104":
            valid = DataItem.parse(body).verify()
        else:
            valid = httpsig.decode(httpsig.Request("POST", "/", tuple(headers.items()), body)).signer is not None
        if not valid:
            raise RuntimeError("a freshly signed item does not verify")
        latencies.append(time.perf_counter() - t0)
    return Row(
        f"parse + verify only, {kind} (in process)",
        len(items),
        time.perf_counter() - started,
        latencies,
        time.process_time() - cpu_started,
    )


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
    body = {
        "Id": "1234",
        "Target": pid,
        "Owner": owner,
        "Data": "1234",
        "Tags": [{"name": "Action", "value": "Balance"}, {"name": "Target", "value": owner}],
    }

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


def node_rows(
    args: argparse.Namespace, workers: int
) -> tuple[list[tuple[Row, Cpu, Row]], list[tuple[dict[str, str], bytes]], list[Row]]:
    """A node with `workers` ingest workers: each route's run per connection count (with the parse+verify
    of the same items right after it), the first run's items, and the read rows."""
    from aonode.engine.crypto import Wallet

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        signed = "unsigned" if args.unsigned_answers else "signed"
        proc = start(
            [sys.executable, str(HERE), "--serve", str(port), tmp, signed, str(workers)], base + "/~meta@1.0/info"
        )
        try:
            with httpx.Client(base_url=base, timeout=300) as http:
                address = wait_for_address(http)
                wallet = Wallet.generate("rsa")
                pid = setup_token(http, wallet, address)
                reads = read_latency(http, pid, wallet.address, args.reads) if args.reads else []
                runs = [(route, conns) for conns in args.connections for route in ROUTES]
                print(f"signing {len(runs) * args.messages} RSA-4096 items/messages ...", file=sys.stderr)
                items = {
                    (r, c): (
                        sign_many(wallet, pid, args.messages, f"{i}", OCTET if r.path == "/" else ANS104_HB)
                        if r.kind == "ans104"
                        else sign_many_httpsig(wallet, pid, args.messages, f"{i}")
                    )
                    for i, (r, c) in enumerate(runs)
                }
                before = http.get(f"/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()["current"]
                ingests = []
                for r, c in runs:  # each run's parse+verify rate measured right after it: the same machine load
                    row, cpu = ingest(port, r, pid, items[r, c], c, proc.pid)
                    row.name += f", {workers} workers" if workers else ""
                    ingests.append((row, cpu, verify_in_process(r.kind, items[r, c])))
                after = http.get(f"/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()["current"]
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    if after - before != len(runs) * args.messages:
        raise RuntimeError(f"expected {len(runs) * args.messages} new slots, got {after - before}")
    return ingests, items[runs[0]], reads


def wait_for_address(http: httpx.Client) -> str:
    """The node's address once its own process answers (a worker relays to it and says 503 until then)."""
    for _ in range(600):
        answer = http.get("/~meta@1.0/info/address")
        if answer.status_code == 200:
            return answer.text
        time.sleep(0.1)
    raise RuntimeError(f"the node does not answer: {answer.status_code} {answer.text[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400, help="signed items per ingest route")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--reads", type=int, default=100, help="dry-runs (cache reads: 10x as many)")
    parser.add_argument(
        "--unsigned-answers",
        action="store_true",
        help="the node answers unsigned: its per-item cost outside answer signing",
    )
    parser.add_argument(
        "--ingest-workers",
        type=int,
        nargs="+",
        default=[0],
        help="run the ingest once per count: the node with that many `--ingest-workers` (0: none)",
    )
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "DATA_DIR", "SIGNED", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-lean", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if SHARED_MODULES.is_dir():
        os.environ.setdefault("AONODE_MODULE_PATH", str(SHARED_MODULES))
    if args.serve:
        port, data_dir, signed, workers = args.serve
        ingest_servers.node(int(port), data_dir, sign_answers=signed == "signed", workers=int(workers))
        return 0
    if args.serve_bare:
        ingest_servers.bare(args.serve_bare)
        return 0
    if args.serve_bare_lean:
        ingest_servers.bare_lean(args.serve_bare_lean)
        return 0
    if args.unsigned_answers and any(args.ingest_workers):
        parser.error("--unsigned-answers is for the node without --ingest-workers")

    load_before = os.getloadavg()
    ingests: list[tuple[Row, Cpu, Row]] = []
    reads: list[Row] = []
    for workers in args.ingest_workers:
        got, items, read_rows = node_rows(args, workers)
        ingests += got
        reads = reads or read_rows
    bare = bare_rows(items, args.connections) + bare_rows(items, args.connections, lean=True)
    most = max(args.ingest_workers)
    bare += bare_rows(items, args.connections, 1 + most) if most else []
    print_ingest(args, ingests, bare, load_before)
    if reads:
        print_table("reads of the same balance: one connection, sequential", reads, "reads/s")
        ratio = statistics.median(reads[0].latencies) / statistics.median(reads[1].latencies)
        print(f"\ncache read is {ratio:.0f}x faster than a dry-run at the median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
