"""A/B of the served ingest path: bench_ingest's node with 2 workers, runs of the variants alternating.

Why: on this shared 2-core machine one run's rate moves by 2x with the other work on the cores, so two
trees (or settings) are compared in alternating runs minutes apart, each run's CPU per item read beside
the load it saw. A variant is `NAME=TREE[,VAR=VALUE...]`: TREE is a folder holding an `aonode` package
(e.g. a `git archive` of engine/, server/ and modules/ under TREE/aonode/) put first on PYTHONPATH for
the node and its workers, or empty for this checkout; the VARs are set for its node (e.g.
AONODE_FLUSH_WINDOW_MS=0). Each run signs its own items for a fresh node (bench_ingest.node_rows).

    python bench/bench_ingest_ab.py [--rounds 2] [--messages 800] [--connections 8 16] -- \\
        before=/tmp/before after= after-w0=,AONODE_FLUSH_WINDOW_MS=0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_ingest

Record = tuple[float, float, float, float, float, float]  # items/s, node, workers, client ms/item, p50 ms, load


def run_variant(spec: str, args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, Record]]:
    """One node_rows run of the variant `spec`: (route and connections, its numbers) per row."""
    tree, *settings = spec.partition("=")[2].split(",")
    os.environ.clear()
    os.environ.update(env)
    if tree:
        os.environ["PYTHONPATH"] = tree
    for setting in settings:
        name, _, value = setting.partition("=")
        os.environ[name] = value
    try:
        rows, _, _ = bench_ingest.node_rows(args, 2)
    finally:
        os.environ.clear()
        os.environ.update(env)
    out = []
    for row, cpu, _ in rows:
        route = f"{row.name.split(' ')[1]} {row.name.split(', ')[1]}"
        client = row.cpu_seconds * 1000 / row.count
        out.append((route, (row.rate, cpu.node_ms, cpu.workers_ms, client, row.pct(0.5), row.load)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="each round runs every variant once")
    parser.add_argument("--messages", type=int, default=800, help="signed items per route and run")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16])
    parser.add_argument("variants", nargs="+", help="NAME=TREE[,VAR=VALUE...]")
    options = parser.parse_args(argv)
    if bench_ingest.SHARED_MODULES.is_dir():
        os.environ.setdefault("AONODE_MODULE_PATH", str(bench_ingest.SHARED_MODULES))
    env = dict(os.environ)
    args = argparse.Namespace(
        messages=options.messages, connections=options.connections, reads=0, unsigned_answers=False
    )
    results: dict[tuple[str, str], list[Record]] = {}
    print("time     variant  route, connections: items/s, CPU ms per item node / workers / client (all), p50, load")
    for round_ in range(options.rounds):
        for spec in options.variants if round_ % 2 == 0 else options.variants[::-1]:
            name = spec.partition("=")[0]
            for route, rec in run_variant(spec, args, env):
                results.setdefault((route, name), []).append(rec)
                rate, node, workers, client, p50, load = rec
                all_ms = node + workers + client
                print(f"{time.strftime('%H:%M:%S')} {name:8} {route:42} {rate:6.0f}/s {node:.2f} / {workers:.2f} / "
                      f"{client:.2f} ({all_ms:.2f}) p50 {p50:.1f} ms, load {load:.1f}", flush=True)  # fmt: skip
    print("\nmedians over the runs: route, variant: items/s, node / workers / client (all) ms per item")
    for (route, name), recs in sorted(results.items()):
        rate, node, workers, client, _, _ = (statistics.median(column) for column in zip(*recs, strict=True))
        print(f"{route:42} {name:8} {rate:6.0f}/s {node:.2f} / {workers:.2f} / {client:.2f} "
              f"({node + workers + client:.2f}), {len(recs)} runs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
