"""bench_ingest.py's ingest table: per run the rate, latency and CPU per item of each part, with the load."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench_ingest import Row


@dataclass(frozen=True)
class Cpu:
    """CPU ms per item over a run: the node's own process (with workers: the sequencer), its workers."""

    node_ms: float
    workers_ms: float

    @property
    def total_ms(self) -> float:
        return self.node_ms + self.workers_ms


def print_ingest(args: argparse.Namespace, ingests: list[tuple[Row, Cpu, Row]], bare: list[tuple[Row, Cpu]],
                 load_before: tuple[float, float, float]) -> None:  # fmt: skip
    answers = "UNSIGNED answers (--unsigned-answers)" if args.unsigned_answers else "signed answers"
    print(
        f"\ningest: {args.messages} signed items per run, {answers}; load average (1, 5, 15 min) before "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in os.getloadavg())}."
        "\nverify/s: in-process parse+verify of the same items right after the run; ratio = items/s / verify/s. CPU "
        "ms per item: node = the node's own process (with workers: the sequencer), workers = its ingest workers, "
        "client = this process posting; all = the three (1,500/s on 2 cores needs all <= 1.33); load = 1-min "
        "load average at the row's end"
    )
    print(
        f"{'what':<70} {'items/s':>8} {'verify/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'node':>6} {'workers':>7} {'client':>6} {'all':>6} {'load':>5}"
    )
    rows = [(row, cpu, f"{verified.rate:>9.0f} {row.rate / verified.rate:>6.2f}") for row, cpu, verified in ingests]
    rows += [(row, cpu, f"{'-':>9} {'-':>6}") for row, cpu in bare]
    for row, cpu, verify in rows:
        client_ms = row.cpu_seconds * 1000 / row.count
        print(
            f"{row.name:<70} {row.rate:>8.0f} {verify} {row.pct(0.5):>7.2f} {row.pct(0.99):>7.2f} "
            f"{cpu.node_ms:>6.2f} {cpu.workers_ms:>7.2f} {client_ms:>6.2f} {cpu.total_ms + client_ms:>6.2f} "
            f"{row.load:>5.1f}"
        )
