"""`aonode serve`: one Node behind hypercorn, with a graceful stop on Ctrl-C / SIGTERM.

On a stop signal hypercorn stops accepting, lets in-flight requests finish (a compute in a worker
thread runs to the end of its message), and only then is the Node closed, so its live processes are
snapshotted and nothing is replayed on the next start.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from starlette.applications import Starlette

from aonode.engine.crypto import Wallet
from aonode.engine.first_start import WALLET
from aonode.engine.gateway import gateway_url
from aonode.engine.leases import DEFAULT_LEASES, LeaseConfig
from aonode.engine.message import Message
from aonode.engine.startup import mark
from aonode.server.api import NodeAPI
from aonode.server.app import CRON_EVERY_SECONDS, Limits, create_app
from aonode.server.chainwatch import watch_chain
from aonode.server.event_loop import run_served
from aonode.server.ingest_workers import IngestWorkers
from aonode.server.listen import base_url, claimed_socket
from aonode.server.state import server_of_app
from aonode.server.warmup import DEMO_MODULE

GRACEFUL_SECONDS = 30.0
CHAIN_FIRST_AFTER = 3.0  # seconds: the first gateway poll waits until a cold start has answered (chainwatch.py)
DEMO_MARKER = "demo-process.txt"

# The demo token: balances and supply are patched into the readable cache at boot and after every
# change, so a front end reads them with a GET instead of a dry-run.
DEMO_TOKEN_LUA = """
Name = Name or 'aonode demo token'
Ticker = Ticker or 'DEMO'
Denomination = Denomination or 12
Balances = Balances or { [Owner] = '1000000000000000' }
TotalSupply = TotalSupply or '1000000000000000'

local function sync()
  Send({ device = 'patch@1.0', cache = { balances = Balances, totalsupply = TotalSupply,
    ticker = Ticker, name = Name } })
end

Handlers.add('Transfer', 'Transfer', function(msg)
  local qty = tonumber(msg.Quantity or '0') or 0
  local have = tonumber(Balances[msg.From] or '0')
  if qty <= 0 or have < qty then
    msg.reply({ Action = 'Transfer-Error', Error = 'Insufficient balance or bad quantity' })
    return
  end
  Balances[msg.From] = tostring(math.floor(have - qty))
  Balances[msg.Recipient] = tostring(math.floor(tonumber(Balances[msg.Recipient] or '0') + qty))
  sync()
end)

sync()
"""


def hypercorn_config(host: str, port: int) -> Config:
    """The one hypercorn configuration the node and the benchmarks' reference route both use."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = GRACEFUL_SECONDS
    config.accesslog = None
    config.keep_alive_timeout = 30
    return config


async def run_until(app: object, config: Config, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then drain in-flight requests."""
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def _stop_on_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, then: Callable[[], None] = lambda: None
) -> None:
    def stopping() -> None:
        stop.set()
        then()  # computes end after their current message instead of running their backlog

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stopping)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support
            pass


def serve(
    host: str = "127.0.0.1",
    port: int = 8734,
    data_dir: Path = Path(".aonode"),
    dev: bool = False,
    demo: bool = False,
    limits: Limits | None = None,
    cron_every: float = CRON_EVERY_SECONDS,
    announce: Callable[[str], None] = print,
    store: str | None = None,
    leases: LeaseConfig = DEFAULT_LEASES,
    wallet: str | Wallet | Callable[[], Wallet | None] | None = None,
    snapshots: str | None = None,
    ingest_workers: int = 0,
) -> None:
    """Run the node until Ctrl-C or SIGTERM; the Node is closed after the last request is answered.
    `port` 0: a free port, which the announced URL names (bound before the node starts: server/listen.py).
    `ingest_workers`: processes beside this one that take schedule POSTs on the same port
    (server/ingest_workers.py).
    `store`: a postgresql:// URL shared with other nodes (docs/scale-out.md); default the data dir.
    `snapshots`: an s3://bucket/prefix for the snapshots' bytes; default the store.
    `wallet`: a JWK file, or the wallet itself, or a call that gives it (the CLI's first-start key search,
    waited for once the ingest workers are started); default the data dir's own."""
    from aonode.server.compose import make_node

    public, claim = claimed_socket(host, port, reuse_port=ingest_workers > 0)  # the workers' sockets share its port
    workers: IngestWorkers | None = None
    try:
        if ingest_workers > 0:  # started first: their start overlaps the node's (server/ingest_workers.py)
            wallet_path = wallet if isinstance(wallet, str) else str(Path(data_dir) / WALLET)
            workers = _workers(ingest_workers, wallet_path, (limits or Limits()).max_body, public)
        if callable(wallet):
            wallet = wallet()
        node = make_node(
            Path(data_dir),
            dev=dev,
            store=store,
            leases=leases,
            snapshots=snapshots,
            wallet=Wallet.load(wallet) if isinstance(wallet, str) else wallet,
        )
    except BaseException:
        if workers is not None:
            workers.close()
        public.close()
        claim.close()
        raise
    mark("node")
    chain_watch = watch_chain(node, gateway_url(), first_after=CHAIN_FIRST_AFTER)
    try:
        url = base_url(host, public)
        if demo:
            announce(demo_instructions(url, ensure_demo_process(node, Path(data_dir)), dev))
            mark("demo")
        where = (
            f"data: {data_dir}"
            + (f", store: {store.rsplit('@', 1)[-1]}" if store else "")  # no password
            + (f", snapshots: {snapshots}" if snapshots else "")
        )
        announce(f"aonode {node.address} serving {url} ({where}, dev: {dev}); Ctrl-C stops")
        app = create_app(node, dev=dev, limits=limits, cron_every=cron_every)
        config = hypercorn_config(host, port)
        if workers is not None:
            assert workers.owner_socket is not None
            config.bind = [f"fd://{workers.owner_socket.detach()}"]  # the node's own server: the private port
            workers.sequence(node)
        else:
            config.bind = [f"fd://{public.detach()}"]  # hypercorn listens on it and closes it
        run_served(_main(app, config, workers))
    finally:
        if workers is not None:
            workers.close()
        public.close()  # if not handed over (detached: nothing to close)
        claim.close()  # after the workers: they listened on the port until now
        chain_watch.set()
        node.close()


def _workers(count: int, wallet_path: str, max_body: int, public: socket.socket) -> IngestWorkers:
    """The workers started on the public port (this process's core sequences; what they do not answer they
    tunnel to its private loopback port, bound here, listening once the node serves). This process holds
    the public socket bound, not listening (no connection comes to it), so that the port stays this node's."""
    host, port = public.getsockname()[:2]
    private = socket.socket()
    private.bind(("127.0.0.1", 0))  # listening once the node serves: a worker's wait is refused until then
    owner = f"http://127.0.0.1:{private.getsockname()[1]}"
    workers = IngestWorkers(count, host, port, owner, wallet_path, max_body, public, private)
    workers.start()
    return workers


async def _main(app: Starlette, config: Config, workers: IngestWorkers | None = None) -> None:
    stop = asyncio.Event()
    server = server_of_app(app)

    def stopping() -> None:
        server.node.stop_computing()
        if workers is not None:
            workers.stop_workers()

    _stop_on_signals(asyncio.get_running_loop(), stop, stopping)
    await run_until(app, config, stop)
    while server.in_flight():  # a compute past hypercorn's graceful timeout still ends its message
        await asyncio.sleep(0.05)


def ensure_demo_process(node: NodeAPI, data_dir: Path) -> str:
    """Spawn the demo token once per data directory; later starts reuse it."""
    marker = data_dir / DEMO_MARKER
    if marker.exists():
        pid = marker.read_text().strip()
        if pid in node.info()["processes"]:
            return pid
    msg = Message.create(
        owner=node.address,
        tags=[("Module", DEMO_MODULE), ("Name", "aonode-demo-token"), ("On-Boot", "Data")],
        data=DEMO_TOKEN_LUA,
    )
    pid = node.spawn(msg)["process"]
    mark("demo-spawned")
    node.now(pid)
    marker.write_text(pid + "\n")
    return pid


def demo_instructions(url: str, pid: str, dev: bool = False) -> str:
    base = f"{url}/{pid}~process@1.0"
    lines = [
        f"demo token process: {pid}",
        f"  curl {base}/now/cache/totalsupply",
        f"  curl {base}/now/cache/balances",
        f"  curl {base}/compute/at-slot",
        f"  curl {base}/slot",
        f"  curl {url}/~meta@1.0/info",
    ]
    if dev:
        recipient = "R" * 43
        lines += [
            "  # --dev: send an unsigned message as the node wallet, then read the result",
            f"  curl -X POST {base}/schedule -H 'content-type: application/json' "
            f'-d \'{{"Action": "Transfer", "Recipient": "{recipient}", "Quantity": "5"}}\'',
            f"  curl {base}/now/cache/balances/{recipient}",
        ]
    return "\n".join(lines)
