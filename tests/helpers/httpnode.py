"""Test helper: a REAL hypercorn server on a free loopback port, in a thread, stopped gracefully.

The listening socket is bound to port 0 before hypercorn starts and handed over as `fd://`, so two
test runs never race for a port. The server runs the same hypercorn configuration `aonode serve` uses.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aonode.server.app import Limits, create_app
from aonode.server.listen import bound_socket
from aonode.server.serve import hypercorn_config, run_until

START_TIMEOUT = 180.0  # a deadline for a first start (compiles, a fresh key) on a loaded 2-core machine


@dataclass
class HttpNode:
    """A running server: its base URL and the Node behind it (for assertions on the engine side)."""

    url: str
    node: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0, **kwargs)

    def process_url(self, pid: str, rest: str = "") -> str:
        return f"{self.url}/{pid}~process@1.0{rest}"


def wait_until_answering(url: str, timeout: float = START_TIMEOUT, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll until anything answers HTTP at `url` (any status): the server is accepting requests."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=5.0)
            return
        except httpx.TransportError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve any ASGI app with hypercorn in a background thread; yields the base URL."""
    sock = bound_socket(host, 0)
    port = sock.getsockname()[1]
    config = hypercorn_config(host, port)
    config.bind = [f"fd://{sock.detach()}"]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run_until(app, config, stop))
        except BaseException as err:  # surfaced in the test thread below
            errors.append(err)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"hypercorn-{port}", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    try:
        wait_until_answering(url + "/~meta@1.0/info")
        yield url
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=120)
    if errors:
        raise errors[0]


@contextmanager
def http_node(
    data_dir: Path, *, dev: bool = True, limits: Limits | None = None, **node_kwargs: Any
) -> Iterator[HttpNode]:
    """A Node on `data_dir` behind a real hypercorn server; closed after the server has drained."""
    from aonode.server.compose import make_node

    node = make_node(data_dir, dev=dev, **node_kwargs)
    try:
        with serving(create_app(node, dev=dev, limits=limits)) as url:
            yield HttpNode(url, node)
    finally:
        node.close()


SERVING = re.compile(r" serving (http://\S+) \(")  # server/serve.py's announcement


def announced_url(log: Path, proc: subprocess.Popen[str], timeout: float = START_TIMEOUT) -> str:
    """The URL a node started with `--port 0` (or `serve(port=0)`) announces in `log`, its output."""
    deadline = time.monotonic() + timeout
    while not (found := SERVING.search(log.read_text(errors="replace"))):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no serving line after {timeout} s: {log.read_text()[-4000:]}")
        time.sleep(0.05)
    return found.group(1)


@contextmanager
def cli_node(data_dir: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`aonode serve --port 0` in a subprocess (the real CLI): the node binds a free port itself and
    announces it, so no port is chosen here and bound there later (another test could take it in
    between). Its output goes to a file that `proc.stdout` reads (a pipe nobody reads would stop the
    node at its next write once full); stopped with SIGTERM if still running."""
    fd, name = tempfile.mkstemp(prefix="aonode-serve-", suffix=".log")
    log = Path(name)
    cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *extra]
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    proc.stdout = log.open(errors="replace")
    try:
        url = announced_url(log, proc)
        wait_until_answering(url + "/~meta@1.0/info", proc=proc)
        yield url, proc
    finally:
        log.unlink()  # proc.stdout still reads it
        stopped(proc)


def stopped(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to a served node if still running; killed if not ended within 120 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def peer_flow(
    script: Path, data_dir: Path, *args: str, timeout: float = 600
) -> Iterator[tuple[dict[str, Any], httpx.Client]]:
    """`aonode serve` (no --dev), then a JS peer `node SCRIPT URL *ARGS` against it: the peer's last
    stdout line as JSON, and a client on the still-running node for assertions on what it recorded."""
    import json
    import shutil

    node_bin = shutil.which("node")
    assert node_bin, "node is required for the interop tests (the CI installs it with the JS peers)"
    with cli_node(data_dir) as (url, _proc):
        done = subprocess.run(
            [node_bin, str(script), url, *args], cwd=script.parents[2], capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with httpx.Client(base_url=url, timeout=120) as http:
            yield json.loads(done.stdout.strip().splitlines()[-1]), http
