"""Review (harden's schema fence): a PostgreSQL database a newer aonode migrated stops `aonode serve`
with one line and exit 2 (SchemaTooNew is a StartupRefused since the SQLite version gate), with its
ingest workers too, as a SQLite data dir from a newer aonode does. Real PostgreSQL, the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from aonode.engine.store import open_store
from aonode.engine.store.pg_schema import MIGRATIONS


def test_a_database_from_a_newer_aonode_stops_serve_in_one_line(pg_dsn: str, tmp_path: Path) -> None:
    open_store(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO aonode_schema (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--store", pg_dsn, "--data-dir", str(tmp_path),
           "--port", "0", "--ingest-workers", "2", "--cron-every", "0"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, lines
    assert f"version {len(MIGRATIONS) + 1}, newer than this aonode knows" in lines[0], lines
