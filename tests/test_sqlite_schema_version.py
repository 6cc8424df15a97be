"""The SQLite data dir says which layout it has (PRAGMA user_version), like PostgreSQL's aonode_schema:
since schema 2 a scheduled message's body is only in its assignment row, which an aonode from before
would not find by id (a 404 for a message the node holds). So a data dir this aonode opened stops an
older aonode at its open, with the fence's name in its error, and a data dir from a newer aonode stops
this one with one line. Real SQLite files, the real CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aonode.engine.errors import SchemaTooNew
from aonode.engine.store import open_store
from aonode.engine.store.sqlite_db import DB_NAME, SCHEMA_VERSION
from tests.helpers.store_rows import assignment, msg

# What every aonode before the version gate runs when it opens a data dir (its schema's one index).
BEFORE_THE_GATE = "CREATE INDEX IF NOT EXISTS results_by_message ON results (process, message_id)"
OLDER_TABLES = """
CREATE TABLE processes (pid TEXT PRIMARY KEY, definition BLOB NOT NULL);
CREATE TABLE messages (id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE results (process TEXT NOT NULL, slot INTEGER NOT NULL, message_id TEXT NOT NULL,
    body BLOB NOT NULL, PRIMARY KEY (process, slot));
"""


def _raw(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / DB_NAME, isolation_level=None)


def test_a_data_dir_this_aonode_opened_stops_an_older_aonode_at_its_open(tmp_path: Path) -> None:
    conn = _raw(tmp_path)  # a data dir an older aonode made: its tables and index, no version
    conn.executescript(OLDER_TABLES + BEFORE_THE_GATE)
    conn.close()
    store = open_store(str(tmp_path))
    proc = msg(0)
    store.append_assignments([assignment(proc.id, 0, proc), assignment(proc.id, 1, msg(1))])
    store.put_process(proc.id, proc)
    store.close()
    conn = _raw(tmp_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        with pytest.raises(sqlite3.OperationalError, match="results_by_message"):  # failed before: no error
            conn.execute(BEFORE_THE_GATE)
        (why,) = conn.execute("SELECT * FROM results_by_message").fetchone()
        assert "newer aonode" in why
    finally:
        conn.close()
    store = open_store(str(tmp_path))  # this aonode opens it again, and finds what it wrote
    try:
        assert store.get_message(msg(1).id) == msg(1) and store.list_processes() == [proc.id]
    finally:
        store.close()


def test_a_data_dir_from_a_newer_aonode_is_refused_in_one_line(tmp_path: Path) -> None:
    open_store(str(tmp_path)).close()
    conn = _raw(tmp_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, newer than this aonode knows"):
        open_store(str(tmp_path))
    cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--data-dir", str(tmp_path), "--port", "0",
           "--ingest-workers", "0", "--cron-every", "0"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, lines
    assert "newer than this aonode knows" in lines[0] and str(tmp_path) in lines[0], lines
