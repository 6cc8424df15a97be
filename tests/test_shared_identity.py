"""Nodes sharing one PostgreSQL sign as one scheduler and keep snapshots in one place: the first node
records its wallet's address and its snapshot place in the database; a node started with another wallet
or another --snapshots on that database refuses to start (the Node raises StartupRefused; `aonode serve`
prints one line and exits non-zero) and leaves the record as it was."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.errors import StartupRefused
from tests.helpers.httpnode import cli_node
from tests.helpers.nodeutil import make_node
from tests.helpers.s3bucket import bucket, s3_server  # noqa: F401  (fixtures)


def recorded(dsn: str, key: str = "scheduler") -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT value FROM node_identity WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def test_a_node_with_another_wallet_is_refused(pg_dsn: str, tmp_path: Path):
    first = make_node(tmp_path / "a", store=pg_dsn)
    try:
        assert recorded(pg_dsn) == first.address
        same = make_node(tmp_path / "b", store=pg_dsn)  # the same wallet: one more front end
        same.close()
        stranger = Wallet.generate("ed25519")
        with pytest.raises(StartupRefused, match=f"scheduler is {first.address} .* wallet is {stranger.address}"):
            make_node(tmp_path / "c", store=pg_dsn, wallet=stranger)
        assert recorded(pg_dsn) == first.address
    finally:
        first.close()


def test_aonode_serve_with_another_wallet_exits_with_one_line(pg_dsn: str, tmp_path: Path):
    mine, other = tmp_path / "mine.json", tmp_path / "other.json"
    Wallet.generate("ed25519").save(mine)
    Wallet.generate("ed25519").save(other)
    with cli_node(tmp_path / "n1", "--store", pg_dsn, "--wallet", str(mine), "--cron-every", "0"):
        refused = subprocess.run(
            [sys.executable, "-m", "aonode.server.cli", "serve", "--port", "0", "--data-dir", str(tmp_path / "n2"),
             "--store", pg_dsn, "--wallet", str(other)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert lines[0].startswith("aonode: this database's scheduler is ")
    assert "must share one --wallet" in lines[0] and Wallet.load(other).address in lines[0]


def test_a_node_keeping_snapshots_elsewhere_is_refused(pg_dsn: str, bucket: str, tmp_path: Path):
    first = make_node(tmp_path / "a", store=pg_dsn, snapshots=f"s3://{bucket}/shared")
    try:
        assert recorded(pg_dsn, "snapshots") == f"s3://{bucket}/shared"
        make_node(tmp_path / "b", store=pg_dsn, snapshots=f"s3://{bucket}/shared/").close()  # the same place
        with pytest.raises(StartupRefused, match=f"snapshots are in s3://{bucket}/shared but this node would "
                                                 "keep them in postgresql"):
            make_node(tmp_path / "c", store=pg_dsn)
        with pytest.raises(StartupRefused, match="must share one --snapshots"):
            make_node(tmp_path / "d", store=pg_dsn, snapshots=f"s3://{bucket}/other")
    finally:
        first.close()
