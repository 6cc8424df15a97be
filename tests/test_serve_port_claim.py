"""One port, one node (server/listen.py's claim): two `aonode serve --ingest-workers 2 --port P` started
at the same instant: one serves with its two workers sharing P, the other exits with one line naming the
port (before the claim both bound P with SO_REUSEPORT and the kernel spread connections over four
workers of two nodes); the winner killed with -9 leaves nothing that stops a restart on P. And the claim
itself on real sockets: a claimed port is refused even to a socket the kernel would let share it.
Real CLI, loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aonode.server.listen import PortInUse, claimed_socket
from tests.helpers.httpnode import SERVING, cli_node, stopped, wait_until_answering
from tests.helpers.ingest import _listeners, _workers
from tests.helpers.ports import held_port

pytestmark = pytest.mark.slow  # two served nodes with worker processes, one killed with -9

START_SECONDS = 180.0


def _start(data: Path, port: int, log: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--data-dir", str(data), "--port", str(port),
           "--ingest-workers", "2", "--cron-every", "0"]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def test_two_nodes_started_at_once_on_one_port_one_serves_the_other_says_in_use(tmp_path: Path) -> None:
    with held_port() as hold:  # bound, never listening: the nodes may bind it, nothing else takes it
        port = hold.getsockname()[1]
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        procs = [_start(tmp_path / name, port, log) for name, log in zip("ab", logs, strict=True)]
        try:
            deadline = time.monotonic() + START_SECONDS
            while time.monotonic() < deadline:  # until one has ended or both announce that they serve
                if any(p.poll() is not None for p in procs) or all(SERVING.search(log.read_text()) for log in logs):
                    break
                time.sleep(0.1)
            ended = [i for i, p in enumerate(procs) if p.poll() is not None]
            assert len(ended) == 1, [log.read_text()[-2000:] for log in logs]  # before the claim: both served
            loser, winner = ended[0], 1 - ended[0]
            assert procs[loser].returncode == 2
            lines = [line for line in logs[loser].read_text().splitlines() if line.strip()]
            assert len(lines) == 1 and f"port {port} is in use" in lines[0], lines
            url = f"http://127.0.0.1:{port}"
            wait_until_answering(url + "/~meta@1.0/info", proc=procs[winner])
            _workers(procs[winner], url, 2)  # its two workers share P, and nobody else listens there
            assert _listeners(port) == 2
            assert httpx.get(url + "/~meta@1.0/info/address", timeout=60).status_code == 200

            procs[winner].send_signal(signal.SIGKILL)  # a stale leftover: then a restart on the same port
            procs[winner].wait()
            with cli_node(tmp_path / "ab"[winner], "--port", str(port), "--ingest-workers", "2") as (again, proc):
                assert again == url
                _workers(proc, url, 2)
                assert httpx.get(url + "/~meta@1.0/info/address", timeout=60).status_code == 200
        finally:
            for proc in procs:
                stopped(proc)


def test_a_claimed_port_is_refused_even_where_the_kernel_would_share_it() -> None:
    first, claim = claimed_socket("127.0.0.1", 0, reuse_port=True)
    with first, claim:
        port = first.getsockname()[1]
        with socket.socket() as sharer:  # what a second node's socket would do without the claim: it may
            sharer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sharer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sharer.bind(("127.0.0.1", port))
        for reuse_port in (True, False):
            with pytest.raises(PortInUse, match=f"port {port} is in use"):
                claimed_socket("127.0.0.1", port, reuse_port=reuse_port)
        other, other_claim = claimed_socket("127.0.0.1", 0, reuse_port=True)  # port 0: a free, unclaimed one
        with other, other_claim:
            assert other.getsockname()[1] != port
    again, again_claim = claimed_socket("127.0.0.1", port, reuse_port=True)  # closed: the port is free again
    again.close()
    again_claim.close()


def test_a_port_another_program_listens_on_is_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} is in use"):
            claimed_socket("127.0.0.1", port, reuse_port=True)
        assert _claim_free(port)  # the failed bind let go of its claim


def _claim_free(port: int) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(f"\0aonode-port-{port}")  # the claims' gate (and what an older aonode claims)
        except OSError:
            return False
    return f"@aonode-port-{port}@" not in Path("/proc/net/unix").read_text()


def test_a_claim_is_for_an_address_and_a_wildcard_overlaps_every_address() -> None:
    """127.0.0.1:P and 127.0.0.2:P are two endpoints (a node on each is fine); 0.0.0.0:P and [::]:P
    overlap both (refused while either is claimed, and either refused while they are)."""
    first, claim = claimed_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    with first, claim:
        second, second_claim = claimed_socket("127.0.0.2", port, reuse_port=True)  # failed before: in use
        with second, second_claim:
            for wildcard in ("0.0.0.0", "::"):
                with pytest.raises(PortInUse, match=f"port {port} is in use by another aonode serve"):
                    claimed_socket(wildcard, port, reuse_port=True)
            with pytest.raises(PortInUse, match=f"port {port} is in use by another aonode serve"):
                claimed_socket("127.0.0.2", port, reuse_port=True)  # the same endpoint twice
    assert _claim_free(port)
    wide, wide_claim = claimed_socket("0.0.0.0", port, reuse_port=True)
    with wide, wide_claim:
        for address in ("127.0.0.3", "::", "0.0.0.0"):
            with pytest.raises(PortInUse, match=f"port {port} is in use by another aonode serve"):
                claimed_socket(address, port, reuse_port=True)
    assert _claim_free(port)


def test_two_nodes_on_one_port_of_two_addresses_both_serve_and_a_wildcard_one_is_refused(tmp_path: Path) -> None:
    """The real CLI: `--host 127.0.0.1` and `--host 127.0.0.2` on one port both serve (the second was
    refused: the claim was per port); `--host 0.0.0.0` there exits 2 with one line naming the port."""
    with cli_node(tmp_path / "a", "--ingest-workers", "1") as (url, _a):
        port = int(url.rsplit(":", 1)[1])
        other = tmp_path / "b.log"
        cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--data-dir", str(tmp_path / "b"), "--port",
               str(port), "--host", "127.0.0.2", "--ingest-workers", "0", "--cron-every", "0"]  # fmt: skip
        with other.open("w") as out:
            b = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_answering(f"http://127.0.0.2:{port}/~meta@1.0/info", proc=b)
            assert httpx.get(url + "/~meta@1.0/info/address", timeout=60).status_code == 200
            wide = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "aonode.server.cli",
                    "serve",
                    "--data-dir",
                    str(tmp_path / "c"),
                    "--port",
                    str(port),
                    "--host",
                    "0.0.0.0",
                    "--ingest-workers",
                    "1",
                ],  # fmt: skip
                capture_output=True,
                text=True,
                timeout=START_SECONDS,
            )
            lines = [line for line in (wide.stdout + wide.stderr).splitlines() if line.strip()]
            assert wide.returncode == 2 and len(lines) == 1, lines
            assert f"port {port} is in use by another aonode serve" in lines[0], lines
        finally:
            stopped(b)


def test_a_program_listening_with_so_reuseport_before_the_node_starts_is_refused(tmp_path: Path) -> None:
    """README's operator note: a same-user program could join the workers' group once they listen (the
    kernel allows it), but one already there when `aonode serve` starts is refused, not shared with."""
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--data-dir", str(tmp_path), "--port", str(port),
               "--ingest-workers", "2"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_SECONDS)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and f"port {port} is in use on 127.0.0.1" in lines[0], lines


def test_without_proc_net_unix_a_claim_is_per_port_as_before(tmp_path: Path, monkeypatch) -> None:
    """Review: where /proc/net/unix cannot be read (a locked-down /proc) the claims held are unknown:
    the node keeps the port's gate as its claim, one node per port as before the per-address claims
    (failed before: FileNotFoundError, so `aonode serve` could not start at all)."""
    from aonode.server import port_claim

    monkeypatch.setattr(port_claim, "_UNIX_SOCKETS", tmp_path / "no-such-file")
    monkeypatch.setattr(port_claim, "GATE_WAIT", 0.1)
    first, claim = claimed_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    with first, claim:
        for other in ("127.0.0.2", "127.0.0.1", "0.0.0.0"):
            with pytest.raises(PortInUse, match=f"port {port} is in use by another aonode serve"):
                claimed_socket(other, port, reuse_port=True)
    again, again_claim = claimed_socket("127.0.0.2", port, reuse_port=True)  # the gate went with the claim
    again.close()
    again_claim.close()


def test_ipv6_names_and_mapped_addresses_claim_the_endpoint_they_bind() -> None:
    """Review guard: [::1]:P and 127.0.0.1:P are two endpoints; `localhost`, `127.1` and
    ::ffff:127.0.0.1 are 127.0.0.1's; :: (dual-stack) overlaps both; 0.0.0.0 only the IPv4 one."""
    v6, v6_claim = claimed_socket("::1", 0, reuse_port=True)
    port = v6.getsockname()[1]
    with v6, v6_claim:
        v4, v4_claim = claimed_socket("127.0.0.1", port, reuse_port=True)
        with v4, v4_claim:
            for same in ("localhost", "127.1", "::ffff:127.0.0.1", "::", "0:0:0:0:0:0:0:1", "0.0.0.0"):
                with pytest.raises(PortInUse, match=f"port {port} is in use by another aonode serve"):
                    claimed_socket(same, port, reuse_port=True)
    assert _claim_free(port)
    wide, wide_claim = claimed_socket("0.0.0.0", port, reuse_port=True)
    with wide, wide_claim:
        beside, beside_claim = claimed_socket("::1", port, reuse_port=True)
        beside.close()
        beside_claim.close()
    assert _claim_free(port)
