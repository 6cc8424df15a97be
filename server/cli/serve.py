"""`aonode serve`: run the HTTP node (server/serve.py builds it and serves it)."""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import aonode.server.cli.checks as checks
from aonode.engine.errors import StartupRefused
from aonode.engine.frozen_heap import freeze_start
from aonode.engine.leases import LeaseConfig
from aonode.engine.startup import mark

IMPORTS_WAIT_SECONDS = 5.0  # at most, for the demo image's compile thread to import (server/warmup.py)
MOST_WORKERS_BY_DEFAULT = 4  # ingest workers when not told: one sequencing core keeps about this many busy


def default_ingest_workers() -> int:
    """`--ingest-workers` when not given: one per CPU this process may run on, 2 to
    MOST_WORKERS_BY_DEFAULT; none on one CPU (a worker and the node would take turns on it). Why workers
    by default: on 2 cores signed ingest with 2 workers answers 2-2.5x the items per second of the one
    process (bench/bench_ingest.py), and the first read after a cold start waits no longer
    (bench/bench_coldstart.py)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cpus < 2 else min(cpus, MOST_WORKERS_BY_DEFAULT)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP node")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=checks.port,
        default=8734,
        help="TCP port to listen on (0: any free port, named in the line saying where it serves)",
    )
    serve.add_argument("--data-dir", default=".aonode", help="embedded store directory (created on first start)")
    serve.add_argument("--dev", action="store_true", help="accept unsigned JSON messages, signed by the node wallet")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="spawn a token process from the default AOS module on first start and print how to read it",
    )
    serve.add_argument(
        "--cron-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often cron processes are ticked without any traffic (0: only when messages come)",
    )
    serve.add_argument(
        "--store",
        default=os.environ.get("AONODE_STORE") or None,
        metavar="URL",
        help="postgresql://user@host:port/db to share one store with other nodes "
        "(docs/scale-out.md; also AONODE_STORE); default: SQLite in --data-dir",
    )
    serve.add_argument(
        "--snapshots",
        default=os.environ.get("AONODE_SNAPSHOTS") or None,
        metavar="URL",
        help="s3://bucket/prefix: keep snapshots in an S3-compatible bucket (credentials as the AWS "
        "tools read them; also AONODE_SNAPSHOTS); default: in the store",
    )
    serve.add_argument(
        "--s3-endpoint",
        default=None,
        metavar="URL",
        help="with --snapshots: the S3-compatible server (MinIO, Ceph, R2, ...); default AWS_ENDPOINT_URL, else AWS",
    )
    serve.add_argument(
        "--wallet",
        default=None,
        metavar="JWK",
        help="the node's key (default: <data-dir>/wallet.json, made on first start); nodes sharing a "
        "--store share one, so pushed messages and Authority are the same whichever computes",
    )
    serve.add_argument(
        "--ingest-workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes that share the port and check signed schedule POSTs on their own cores, "
        "handing them to this process to sequence (server/ingest_workers.py); 0: none, this process "
        "alone; default: as many as CPUs this process may use, 2 to 4, or 0 with one CPU",
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=LeaseConfig.ttl,
        metavar="SECONDS",
        help="with --store: how long a dead node's processes wait before another takes them",
    )
    serve.add_argument(
        "--lease-wait",
        type=float,
        default=LeaseConfig.wait,
        metavar="SECONDS",
        help="with --store: how long a `now` waits for the node computing the process (then 503)",
    )
    serve.add_argument(
        "--max-compute",
        type=int,
        default=None,
        metavar="FUEL",
        help="the most wasm instructions one message may run on this node, whatever its process "
        "asks for (definitions asking more are refused at spawn); default 20000000000 "
        "(a few seconds), or AONODE_MAX_COMPUTE",
    )
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    gc.disable()  # until the start is over (_started): see there
    lock = checks.data_dir_locked(Path(args.data_dir))  # held until this process ends
    if args.max_compute is not None:
        if args.max_compute <= 0:
            raise checks.UserError("--max-compute must be a positive number of instructions")
        os.environ["AONODE_MAX_COMPUTE"] = str(args.max_compute)  # read by engine/devices/wasm64.py
    if args.s3_endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = args.s3_endpoint  # read by boto3 (engine/store/s3_blobs.py)
    if args.ingest_workers is None:
        args.ingest_workers = default_ingest_workers()
    if args.ingest_workers < 0:
        raise checks.UserError("--ingest-workers is a number of processes, 0 or more")
    checks.address_free(args.host, args.port)
    from aonode.server.warmup import DEMO_MODULE, warm_image, warm_wallet

    # A first start makes a key and compiles the demo's image: both go on while the rest loads.
    own_wallet = warm_wallet(Path(args.data_dir)) if args.wallet is None else None
    if args.demo:  # the compile begins once its thread has imported the wasm engine: let it import alone
        warm_image(Path(args.data_dir), DEMO_MODULE).wait(IMPORTS_WAIT_SECONDS)
    # hypercorn and the engine load only for this command; the node's own modules (compose) too, before
    # waiting for the key: a first start's key search (random, up to seconds) is then all that the Node
    # waits for, not these imports after it (~0.1-0.2 s).
    import aonode.server.compose  # noqa: F401
    from aonode.server.serve import serve

    mark("serve-imports")

    try:
        serve(
            host=args.host,
            port=args.port,
            data_dir=Path(args.data_dir),
            dev=args.dev,
            demo=args.demo,
            cron_every=args.cron_every,
            store=args.store,
            wallet=own_wallet if own_wallet is not None else args.wallet,  # waited for once the workers start
            announce=_started,
            snapshots=args.snapshots,
            leases=LeaseConfig(ttl=args.lease_ttl, wait=args.lease_wait),
            ingest_workers=args.ingest_workers,
        )
    except StartupRefused as err:  # a wallet other than the database's, an unreachable bucket: one line
        raise checks.UserError(str(err)) from err
    lock.close()
    return 0


def _started(line: str) -> None:
    """Print what the node announces; the first line (the demo computed, or serving next) ends the start.
    Python's cycle collector is off until then: a start allocates ~10^5 long-lived objects (modules,
    classes, functions) and every collection walked them again, ~0.08 CPU-s of the main thread holding
    the GIL while the compile, the key search and the demo waited for it; they are frozen (never
    walked again, still freed when unreferenced) and collection resumes for what the node makes later."""
    print(line)
    if not gc.isenabled():
        freeze_start()  # for good: a backlog's end leaves them frozen (engine/frozen_heap.py)
        gc.enable()
