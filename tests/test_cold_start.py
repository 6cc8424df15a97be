"""A cold `aonode serve --dev --demo` (the image on the machine, nothing derived from it: fresh AONODE_HOME
and data dir) answers the demo's first read with the right value. The start makes the wallet and compiles
the image on threads (server/warmup.py) and hands the wallet to the node: the node must sign as the key
saved in the data dir, and the restart must find the same one. Timings live in bench/bench_coldstart.py."""

from __future__ import annotations

import httpx
import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.startup import PREFIX
from tests.helpers.httpnode import cli_node
from tests.helpers.images import use_shared_modules

pytestmark = pytest.mark.slow  # two real CLI starts, the first one compiling an AOS image

SUPPLY = "1000000000000000"  # server/serve.py DEMO_TOKEN_LUA
MARKS = ("cli-imports", "searching", "compiling", "wallet", "compiled", "serve-imports", "node", "demo")


def test_cold_demo_answers_its_first_read_signed_by_the_saved_wallet(tmp_path, monkeypatch):
    use_shared_modules()
    monkeypatch.setenv("AONODE_HOME", str(tmp_path / "home"))  # no variant, no compiled artifact
    monkeypatch.setenv("AONODE_STARTUP_TRACE", "1")
    data = tmp_path / "data"
    with cli_node(data, "--dev", "--demo", "--cron-every", "0") as (url, proc):
        pid = (data / "demo-process.txt").read_text().strip()
        with httpx.Client(base_url=url, timeout=120) as http:
            assert http.get(f"/{pid}~process@1.0/now/cache/totalsupply").text == SUPPLY
            address = http.get("/~meta@1.0/info").json()["address"]
    saved = Wallet.load(data / "wallet.json")
    assert address == saved.address
    log = proc.stdout.read() if proc.stdout else ""
    marks = [line.split()[1] for line in log.splitlines() if line.startswith(PREFIX)]
    assert set(MARKS) <= set(marks), log[-2000:]
    assert marks.index("node") < marks.index("demo") and marks.index("compiled") < marks.index("demo")

    with cli_node(data, "--dev", "--demo", "--cron-every", "0") as (url, _again):  # warm: same key, same token
        assert (data / "demo-process.txt").read_text().strip() == pid
        with httpx.Client(base_url=url, timeout=120) as http:
            assert http.get("/~meta@1.0/info").json()["address"] == saved.address
            assert http.get(f"/{pid}~process@1.0/now/cache/totalsupply").text == SUPPLY
