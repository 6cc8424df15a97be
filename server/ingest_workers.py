"""`aonode serve --ingest-workers N`: the node's process starts N worker processes beside itself.

The workers (server/ingest_worker.py) listen on the node's port with SO_REUSEPORT, and the kernel spreads
connections over them; the node's process holds that port bound without listening (so that a port in use
is refused at start), and its claim on the port (server/listen.py: else another node started at the same
instant could join it through SO_REUSEPORT), and serves on a private loopback port, which the workers
tunnel every request they do not answer to, and on the sequencer socket (server/sequencer_socket.py)
they hand checked messages to: its core sequences, the workers' cores do HTTP and signature checks. A
worker that dies is started again (ever more rarely while it dies soon after each start); at a stop the
workers get SIGTERM first and answer what they hold while the node still runs.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from aonode.server.api import NodeAPI
from aonode.server.listen import bound_socket
from aonode.server.sequencer_socket import SequencerSocket

log = logging.getLogger("aonode.server")
RESTART_POLL_SECONDS = 0.5
RESTART_LONGEST = 30.0  # seconds at most between the starts of a worker that keeps ending soon after its start
SHORT_LIFE = 20.0  # seconds: a worker that ended sooner after its start waits longer before the next
STOP_SECONDS = 35.0  # a worker's graceful stop (hypercorn's 30 s) and then some


def reuse_port_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A socket on `port` that the workers' sockets may share (SO_REUSEPORT), listening unless told."""
    sock = bound_socket(host, port, reuse_port=True)
    if listen:
        sock.listen(1024)
    return sock


@dataclass
class IngestWorkers:
    """The supervised worker processes of one served node and (once it is made) its sequencer socket.

    One worker is started before the node (`start`): its imports (~0.6 CPU-s) overlap the node's start
    instead of following it, and it then waits until the node's private port answers; `sequence(node)`
    opens the sequencer socket before the node serves (a worker that finds the node answering finds it)
    and starts the others: on a loaded machine every worker importing beside the node's start made the
    first answer wait for CPU (bench/bench_coldstart.py --against)."""

    count: int
    host: str
    port: int
    owner_url: str  # the private loopback base URL of this process
    wallet_path: str
    max_body: int
    reserved: socket.socket | None = None  # the public port, bound by this process, not listening
    owner_socket: socket.socket | None = None  # owner_url's, bound; the node's server listens on it
    name: str = field(default_factory=lambda: f"aonode-ingest-{secrets.token_hex(8)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sequencer: SequencerSocket | None = None

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def sequence(self, node: NodeAPI) -> None:
        """The node's sequencer socket, which the workers connect to once its private port answers; the
        workers but the first started."""
        self.sequencer = SequencerSocket(node, self.name, self.pids)
        with self._lock:
            self.procs += [self._spawn(i) for i in range(len(self.procs), self.count)]

    def pids(self) -> set[int]:
        with self._lock:
            return {p.pid for p in self.procs if p.poll() is None}

    def start(self) -> None:
        with self._lock:
            self.procs = [self._spawn(0)]
        threading.Thread(target=self._supervise, name="aonode-ingest-workers", daemon=True).start()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "aonode.server.ingest_worker", "--host", self.host, "--port", str(self.port),
            "--owner", self.owner_url, "--sequencer", self.name, "--wallet", self.wallet_path,
            "--max-body", str(self.max_body), "--index", str(index),
        ]  # fmt: skip
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def _supervise(self) -> None:
        """A worker that ends is started again at the next poll; one that ended within SHORT_LIFE of its
        start waits twice as long as the last time first (from RESTART_POLL_SECONDS up to RESTART_LONGEST):
        a worker that cannot start (a wallet file since replaced, a port another program took) would
        otherwise cost a worker's start (~0.6 CPU-s) every poll for ever."""
        started, waits, due = [time.monotonic()] * self.count, [0.0] * self.count, dict[int, float]()
        while not self._stopping.wait(RESTART_POLL_SECONDS):
            with self._lock:
                for i, proc in enumerate(self.procs):
                    now = time.monotonic()
                    if self._stopping.is_set():
                        return
                    if i not in due and proc.poll() is not None:
                        soon = now - started[i] < SHORT_LIFE
                        waits[i] = min(max(2 * waits[i], RESTART_POLL_SECONDS), RESTART_LONGEST) if soon else 0.0
                        due[i] = now + waits[i]
                        log.warning(
                            "ingest worker %d ended (%s); another in %.1f s", proc.pid, proc.returncode, waits[i]
                        )
                    if i in due and now >= due[i]:
                        del due[i]
                        self.procs[i], started[i] = self._spawn(i), now

    def stop_workers(self) -> None:
        """SIGTERM to every worker (they finish what they hold; the sequencer still answers them)."""
        self._stopping.set()
        with self._lock:
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """After the node's own server has stopped: wait for the workers, then close the sequencer."""
        self.stop_workers()
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.sequencer is not None:
            self.sequencer.close()
        for sock in (self.reserved, self.owner_socket):
            if sock is not None:
                sock.close()  # if not handed over (detached: nothing to close)
