"""kill -9 of `aonode serve` while 12 clients post signed items to one process at once: every item
answered 200 is scheduled at the slot its answer named, and every answer was signed by the node.

This is the whole ingest path a client sees: HTTP, ANS-104 verify, the group commit (concurrent
schedules of one process share one fsync) and the signer (answers waiting together share one
signature), so "answered" must still mean "durable" with all of them at work."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import pytest

from aonode.engine.answer_signature import verify_answer
from aonode.engine.crypto import Wallet
from aonode.modules import catalogue
from aonode.server.cli.client import build_message, build_spawn, new_anchor
from tests.helpers.acknowledged import assert_all_stored
from tests.helpers.httpnode import cli_node
from tests.helpers.threads import Threads

pytestmark = pytest.mark.slow  # a served node killed with -9 under concurrent load, then reopened

CLIENTS = 12
ITEMS = 240
KILL_AFTER = 90  # acknowledged answers before the kill
OCTET = {"content-type": "application/octet-stream"}


def _signed_by(answer: httpx.Response) -> str:
    assert 'alg="ed25519"' in answer.headers["signature-input"]  # the session key: no RSA per answer
    return verify_answer(answer.headers.multi_items(), answer.content)


@pytest.mark.parametrize(
    ("workers", "sync_apart"),
    [(["--ingest-workers", "0"], False), ([], False), ([], True)],
    ids=["one-process", "default-workers", "default-workers-sync-apart"],
)
def test_kill_9_under_concurrent_signed_ingest_loses_nothing_answered(
    tmp_path: Path, workers: list[str], sync_apart: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one process, and `aonode serve`'s default (ingest workers on more than one CPU: a worker
    whose node died answers what it held 503, retry; nothing it answered 200 is lost); also with the
    fsync apart from the group's commit (AONODE_SYNC_APART=1: its syncer thread answers)."""
    if sync_apart:
        monkeypatch.setenv("AONODE_SYNC_APART", "1")
    _kill_9_under_load(tmp_path / "node", workers, str(tmp_path / "node"))


def test_kill_9_with_default_workers_on_postgresql_loses_nothing_answered(tmp_path: Path, pg_dsn: str) -> None:
    """The same on a PostgreSQL store (its own group commit, synchronous_commit=on for assignments)."""
    _kill_9_under_load(tmp_path / "node", ["--store", pg_dsn], pg_dsn)


def _kill_9_under_load(data: Path, args: list[str], store: str) -> None:
    """kill -9 of `aonode serve *args` once KILL_AFTER items were answered; then every answered one is in
    `store` at the slot its answer named, and every answer was the node's."""
    wallet = Wallet.generate("rsa")
    module = catalogue.lookup("aos2_0_6")
    assert module is not None and module.id
    acknowledged: dict[str, int] = {}  # item id -> slot its answer named
    signers: set[str] = set()
    lock = threading.Lock()
    with cli_node(data, *args) as (url, proc):
        address = httpx.get(f"{url}/~meta@1.0/info/address").text
        spawned = httpx.post(
            f"{url}/", content=build_spawn(wallet, module=module.id, scheduler=address).raw, headers=OCTET, timeout=300
        )
        assert spawned.status_code == 200, spawned.text
        pid = spawned.json()["process"]
        items = [
            build_message(wallet, process=pid, tags=[("Action", "Ping")], data=str(i), anchor=new_anchor())
            for i in range(ITEMS)
        ]
        queue = list(reversed(items))
        enough, killed = threading.Event(), threading.Event()

        def client(_n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        item = queue.pop()
                    try:
                        answer = http.post("/", content=item.raw, headers=OCTET)
                    except httpx.TransportError:
                        return  # the node is gone: this one was never answered
                    if answer.status_code == 503 and killed.is_set():
                        return  # a worker's answer for the node it lost: retry, nothing acknowledged
                    assert answer.status_code == 200, answer.text
                    with lock:
                        acknowledged[item.id] = json.loads(answer.content)["slot"]
                        signers.add(_signed_by(answer))
                        if len(acknowledged) >= KILL_AFTER:
                            enough.set()

        clients = Threads(client, CLIENTS, "client").start()
        assert clients.until(enough, timeout=300)
        killed.set()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        clients.join(timeout=120)  # raises what a client raised (an answer that was not 200, ...)
    assert signers == {address}
    assert len(acknowledged) >= KILL_AFTER
    assert_all_stored(store, pid, acknowledged)
