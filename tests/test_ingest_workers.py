"""`aonode serve --ingest-workers 2` (server/ingest_workers.py, ingest_worker.py, sequencer_socket.py):
worker processes sharing the port check signed schedule POSTs and hand them to the node's process.
The real CLI on loopback, real SQLite: under concurrent load on every schedule route the answers come
from more than one process and all name one gapless chain holding every acknowledged message; reads
and spawns reach the node through any connection; a worker killed with -9 is replaced while the node
goes on; the node's process killed with -9 loses nothing it answered and takes its workers with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aonode.engine import httpsig
from aonode.engine.answer_signature import SESSION_FIELD, verify_answer
from aonode.engine.crypto import Wallet
from aonode.server.cli.client import build_message, new_anchor
from tests.helpers.acknowledged import assert_all_stored
from tests.helpers.httpnode import cli_node
from tests.helpers.ingest import ANS104, OCTET, _spawned, _workers
from tests.helpers.threads import Threads

pytestmark = pytest.mark.slow  # served nodes with worker processes, some killed with -9

CLIENTS = 8
WALLET = Wallet.generate("ed25519")  # the client's
Post = tuple[str, dict[str, str], bytes, str]  # path, headers, body, the message id


def _posts(wallet: Wallet, pid: str, count: int) -> list[Post]:
    out: list[Post] = []
    for n in range(count):
        item = build_message(wallet, process=pid, tags=[("Action", "Ping")], data=str(n), anchor=new_anchor())
        if n % 3 == 2:
            fields = {
                "action": b"Ping",
                "target": pid.encode(),
                "data": str(n).encode(),
                "nonce": new_anchor().encode(),
            }
            req = httpsig.signed_message(wallet, fields)
            mid = httpsig.decode(httpsig.Request("POST", "/", req.headers, req.body)).committed()
            assert mid is not None
            out.append((f"/{pid}~process@1.0/schedule", dict(req.headers), req.body, mid.to_message().id))
        else:
            path = "/" if n % 3 == 0 else f"/~scheduler@1.0/schedule?target={pid}"
            out.append((path, OCTET if path == "/" else ANS104, item.raw, item.id))
    return out


def _load(url: str, posts: list[Post], acknowledged: dict[str, int], keys: set[str], address: str,
          after: Callable[[int], None] = lambda n: None) -> None:  # fmt: skip
    """Every post, CLIENTS at a time on keep-alive connections; a post whose connection broke or that got a
    503 is sent again (at most 3 tries: a repeat of a committed one answers its slot). Any other answer
    fails the test (raised again here from the client's thread)."""
    queue, lock = [(post, 0) for post in reversed(posts)], threading.Lock()

    def client(_n: int) -> None:
        http = httpx.Client(base_url=url, timeout=60)
        while True:
            with lock:
                if not queue:
                    return
                (path, headers, body, mid), tries = queue.pop()
            try:
                answer = http.post(path, content=body, headers=headers)
            except httpx.TransportError:
                http = httpx.Client(base_url=url, timeout=60)  # that connection's process is gone
                answer = None
            if answer is None or answer.status_code == 503:  # 503: a worker lost its link to the node
                if tries < 2:
                    with lock:
                        queue.append(((path, headers, body, mid), tries + 1))
                continue
            assert answer.status_code == 200, answer.text
            assert verify_answer(answer.headers.multi_items(), answer.content) == address
            with lock:
                acknowledged[mid] = json.loads(answer.content)["slot"]
                keys.add(answer.headers[SESSION_FIELD])
                after(len(acknowledged))

    Threads(client, CLIENTS, "client").start().join(timeout=300)


@contextmanager
def _served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], str, set[int], str]]:
    """`aonode serve --ingest-workers 2` with a spawned process: (url, its process, pid, workers, address)."""
    with cli_node(tmp_path / "node", "--ingest-workers", "2", "--cron-every", "0") as (url, proc):
        pid = _spawned(url, WALLET)
        workers = _workers(proc, url)
        yield url, proc, pid, workers, httpx.get(f"{url}/~meta@1.0/info/address").text


def test_workers_take_schedules_into_one_chain_and_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    acknowledged: dict[str, int] = {}
    keys: set[str] = set()
    with _served(tmp_path) as (url, proc, pid, first, address):
        _load(url, _posts(WALLET, pid, 90), acknowledged, keys, address)
        assert len(acknowledged) == 90 and len(keys) >= 2  # answered by more than one process
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _load(url, _posts(WALLET, pid, 60), acknowledged, keys, address)
        assert len(acknowledged) == 150
        replaced = _workers(proc, url)
        assert victim not in replaced and len(replaced) == 2
        slot = httpx.get(f"{url}/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()
        assert slot["current"] == 150
        reads = {httpx.get(f"{url}/{pid}~process@1.0/now/at-slot").text for _ in range(6)}  # any process
        assert reads == {"150"}
    assert assert_all_stored(tmp_path / "node", pid, acknowledged) == 151


def test_the_node_killed_under_load_loses_nothing_answered_and_its_workers_end(tmp_path: Path) -> None:
    acknowledged: dict[str, int] = {}
    keys: set[str] = set()
    with _served(tmp_path) as (url, proc, pid, workers, address):

        def kill_at_60(n: int) -> None:
            if n == 60:
                proc.send_signal(signal.SIGKILL)

        _load(url, _posts(WALLET, pid, 240), acknowledged, keys, address, kill_at_60)
        proc.wait()
    assert 60 <= len(acknowledged) < 240
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{w}") and _alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    assert_all_stored(tmp_path / "node", pid, acknowledged)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
