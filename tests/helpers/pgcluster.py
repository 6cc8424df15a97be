"""Test helper: a throwaway PostgreSQL cluster (initdb + pg_ctl) in a temp dir, on a free loopback port.

Why by hand instead of a plugin: the binaries are already on every machine (Debian's `postgresql`
package, or /usr/local/bin), CI runs as root and initdb refuses root, so the cluster is created and
run as an unprivileged user (`nobody`) in a temp dir that user owns. Nothing is installed or left
behind: the cluster is stopped and its directory removed when the test session ends.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.ports import held_port

SUPERUSER = "aonode"
START_ATTEMPTS = 3  # a start that fails for another reason than its port (held: tests/helpers/ports.py)


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else the newest Debian install under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return candidates[-1]


@dataclass
class PgCluster:
    """A running cluster: connect over TCP on 127.0.0.1:`port` as `SUPERUSER` (trust auth)."""

    base: Path
    port: int
    run_as: str | None  # the unprivileged user the server runs as when the tests run as root
    hold: socket.socket | None = None  # the port, held for the cluster's life (tests/helpers/ports.py)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh empty database; its DSN."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return _as_user(list(cmd), self.run_as, self.base)

    def stop(self) -> None:
        self._run(pg_bin("pg_ctl"), "stop", "-D", str(self.base / "data"), "-m", "immediate", "-w")
        if self.hold is not None:
            self.hold.close()


def _as_user(cmd: list[str], user: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    if user is None:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    entry = pwd.getpwnam(user)
    return subprocess.run(cmd, cwd=cwd, env={**env, "HOME": str(cwd)}, capture_output=True, text=True,
                          check=False, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])


def _checked(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}")


@contextmanager
def pg_cluster(run_as: str = "nobody") -> Iterator[PgCluster]:
    """initdb + pg_ctl start into a new temp dir; stopped and removed on exit."""
    user = run_as if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="aonode-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        data = base / "data"
        _checked(_as_user([pg_bin("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                           "--encoding=UTF8", "--locale=C", "--no-sync"], user, base), "initdb")
        cluster = _start(base, user)
        try:
            _watch(cluster)
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# Stops the cluster and removes its directory if the test process dies without tearing it down
# (SIGKILL, a CI timeout); exits on its own once the directory is gone (a normal teardown). It runs
# as the test process's user, which may signal the postmaster (root, or the same user).
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, base = int(sys.argv[1]), sys.argv[2]
while os.path.isdir(base):
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        try:
            with open(os.path.join(base, "data", "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGQUIT)  # immediate shutdown
            time.sleep(2)
        except (OSError, ValueError):
            pass
        shutil.rmtree(base, ignore_errors=True)
        break
    time.sleep(1)
"""


def _watch(cluster: PgCluster) -> None:
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(cluster.base)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def _start(base: Path, user: str | None) -> PgCluster:
    # Durability of the cluster itself is not under test (fsync off); aonode's commit order is.
    last = ""
    for _ in range(START_ATTEMPTS):
        hold = held_port()
        port = hold.getsockname()[1]
        options = (f"-p {port} -h 127.0.0.1 -k {base} -c fsync=off -c full_page_writes=off "
                   f"-c max_connections=300 -c shared_buffers=64MB")
        result = _as_user([pg_bin("pg_ctl"), "start", "-D", str(base / "data"), "-w", "-t", "60",
                           "-l", str(base / "server.log"), "-o", options], user, base)
        if result.returncode == 0:
            return PgCluster(base=base, port=port, run_as=user, hold=hold)
        hold.close()
        log = base / "server.log"
        last = result.stdout + result.stderr + (log.read_text() if log.exists() else "")
    raise RuntimeError(f"pg_ctl start failed {START_ATTEMPTS} times: {last[-2000:]}")


# Fixtures (conftest imports them by name): one cluster per test session, one database per test.
@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_dsn(pg: PgCluster) -> Iterator[str]:
    dsn = pg.create_database()
    yield dsn
    pg.drop_database(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per backend: a data dir, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("pg_dsn")
