"""The seed flows a web front end relies on, end to end over real HTTP against real AOS processes.

A token whose boot code patches its balances into the readable cache, a PublishData handler, an
owner-only EnableStatePatch checked with HEAD, `compute` answering the last known value while `now`
works, a full compute queue answering 503, and `aonode serve` stopping cleanly on SIGTERM.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.startup import ENV as STARTUP_TRACE
from aonode.server.app import Limits
from tests.helpers.httpnode import HttpNode, announced_url, cli_node, http_node, wait_until_answering
from tests.helpers.threads import Threads, started

pytestmark = pytest.mark.slow  # starts and stops `aonode serve` subprocesses

MODULE = "aos2_0_6"

TOKEN_BOOT = """
Balances = Balances or { [Owner] = '1000' }
TotalSupply = TotalSupply or '1000'
CurrentStatus = CurrentStatus or 'booting'

function InitialSync()
  Send({ device = 'patch@1.0', cache = { balances = Balances, totalsupply = TotalSupply } })
end

Handlers.add('PublishData', 'PublishData', function(msg)
  CurrentStatus = msg.Data
  Send({ device = 'patch@1.0', cache = { currentstatus = CurrentStatus } })
end)

Handlers.add('EnableStatePatch', 'EnableStatePatch', function(msg)
  if msg.From ~= Owner then
    print('EnableStatePatch refused for ' .. msg.From)
    return
  end
  Send({ device = 'patch@1.0', cache = { patchedstate = { status = CurrentStatus, supply = TotalSupply } } })
  print('state patch enabled')
end)

InitialSync()
"""

# Enough Lua work that a `now` over it is still running while the test makes its other requests.
HEAVY_EVAL = "local t = 0; for i = 1, 20000000 do t = t + i % 7 end; return 'heavy done ' .. t"


def spawn_token(c: httpx.Client, name: str = "seed-token") -> str:
    r = c.post("/~process@1.0/schedule", json={
        "Tags": [{"name": "Module", "value": MODULE}, {"name": "Name", "value": name},
                 {"name": "On-Boot", "value": "Data"}],
        "Data": TOKEN_BOOT,
    })
    assert r.status_code == 200, r.text
    return r.json()["process"]


def schedule(c: httpx.Client, pid: str, action: str, data: str = "", **tags: str) -> int:
    r = c.post(f"/{pid}~process@1.0/schedule", json={"Action": action, "data": data, **tags})
    assert r.status_code == 200, r.text
    return r.json()["slot"]


@pytest.fixture(scope="module")
def token(c: httpx.Client) -> str:
    return spawn_token(c)


def test_balances_and_supply_are_readable_right_after_spawn(c: httpx.Client, srv: HttpNode, token: str) -> None:
    supply = c.get(f"/{token}~process@1.0/now/cache/totalsupply")
    assert supply.status_code == 200 and supply.text == "1000"
    assert supply.headers["content-type"].startswith("text/plain")
    balances = c.get(f"/{token}~process@1.0/now/cache/balances")
    assert balances.status_code == 200 and balances.headers["content-type"] == "application/json"
    assert balances.json() == {srv.node.address: "1000"}  # the owner's address, exactly
    assert c.get(f"/{token}~process@1.0/now/cache/balances/{srv.node.address}").text == "1000"
    assert c.get(f"/{token}~process@1.0/compute/at-slot").text == "0"


def test_publish_data_lands_in_the_cache(c: httpx.Client, token: str) -> None:
    slot = schedule(c, token, "PublishData", "all systems go")
    before = c.get(f"/{token}~process@1.0/compute/at-slot").text
    assert int(before) < slot  # nothing computed it yet: compute never does new work
    assert c.get(f"/{token}~process@1.0/compute/cache/currentstatus").status_code == 404
    assert c.get(f"/{token}~process@1.0/now/at-slot").text == str(slot)
    assert c.get(f"/{token}~process@1.0/compute/cache/currentstatus").text == "all systems go"
    schedule(c, token, "PublishData", "second update")
    assert c.get(f"/{token}~process@1.0/now/cache/currentstatus").text == "second update"
    assert c.get(f"/{token}~process@1.0/now/cache/totalsupply").text == "1000"  # earlier patches stay


def test_enable_state_patch_is_owner_only_and_head_tells(c: httpx.Client, token: str) -> None:
    key = f"/{token}~process@1.0/now/cache/patchedstate"
    assert c.head(key).status_code == 404

    stranger = Wallet.generate("ed25519")
    item = build_and_sign(stranger, data="", tags=[("Action", "EnableStatePatch")], target=token)
    r = c.post(f"/{token}~process@1.0/schedule", content=item.raw,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    refused_slot = r.json()["slot"]
    assert (c.head(key).status_code, c.head(key).content) == (404, b"")
    refused = c.get(f"/{token}~process@1.0/compute/{refused_slot}/results/data").text
    assert f"refused for {stranger.address}" in refused

    enabled_slot = schedule(c, token, "EnableStatePatch")
    head = c.head(key)
    assert (head.status_code, head.content) == (200, b"")
    assert "state patch enabled" in c.get(f"/{token}~process@1.0/compute/{enabled_slot}/results/data").text
    assert c.get(key + "/supply").text == "1000"


def wait_until_compute_is_busy(c: httpx.Client, idle_pid: str, worker: Threads[httpx.Response]) -> httpx.Response:
    """Ask for an already computed slot of an idle process (a request that always takes a compute
    worker, and is cheap) until that worker is seen taken (503). With one worker and no queue, a 503
    there proves the heavy request in `worker` is being computed. Probed with HEAD, because a GET
    answered 200 is kept by server/read_cache.py and then never needs a worker again; a GET once the
    worker is seen taken gives the 503 with its JSON body."""
    path = f"/{idle_pid}~process@1.0/compute/0/at-slot"
    while True:
        probe = c.head(path)
        if probe.status_code == 503:
            probe = c.get(path)
        if probe.status_code == 503 or not worker.is_alive():
            return probe


def start_busy_now(c: httpx.Client, pid: str, idle_pid: str) -> tuple[Threads[httpx.Response], httpx.Response]:
    """`now` on `pid` in a thread (`.join(timeout)[0]`: its answer), and the first probe that sees it take
    the one compute worker. A probe may hold that worker at the moment the `now` arrives, which then gets
    the 503 itself and computes nothing: it is asked again (a few times at most)."""
    for _ in range(5):
        worker = started(lambda: c.get(f"/{pid}~process@1.0/now/at-slot"), "now")
        probe = wait_until_compute_is_busy(c, idle_pid, worker)
        if probe.status_code == 503 or worker.is_alive() or worker.join(120)[0].status_code != 503:
            return worker, probe
    return worker, probe


def test_compute_answers_the_last_value_while_now_computes_and_a_full_queue_is_503(tmp_path: Path) -> None:
    with http_node(tmp_path, dev=True, limits=Limits(compute_workers=1, compute_queue=0)) as busy, \
            busy.client() as c:
        pid, idle = spawn_token(c, "busy"), spawn_token(c, "idle")
        assert c.get(f"/{idle}~process@1.0/now/at-slot").text == "0"
        assert c.get(f"/{pid}~process@1.0/now/cache/totalsupply").text == "1000"
        heavy_slot = schedule(c, pid, "Eval", HEAVY_EVAL)

        worker, probe = start_busy_now(c, pid, idle)
        try:
            last_known = c.get(f"/{pid}~process@1.0/compute/at-slot")
            still_running = worker.is_alive()
        finally:
            now = worker.join(300)[0]
        assert probe.status_code == 503 and probe.headers["retry-after"].isdigit() and probe.json()["error"]
        assert last_known.status_code == 200 and last_known.text == "0"
        assert still_running
        assert now.text == str(heavy_slot)
        assert "heavy done" in c.get(f"/{pid}~process@1.0/compute/results/data").text
        assert c.get(f"/{idle}~process@1.0/now/at-slot").status_code == 200


DEMO_SCRIPT = ("import sys; from aonode.server.app import Limits; from aonode.server.serve import serve; "
               "serve(port=0, data_dir=sys.argv[1], dev=True, demo=True, "
               "limits=Limits(compute_workers=1, compute_queue=0))")


# A first start makes an RSA-4096 key, compiles the image and boots the demo before it answers: ~30 s on
# this 2-core machine at load 3, minutes at load 14 (START_TIMEOUT's 180 s is for starts with less to do).
COLD_START_SECONDS = 600.0


def _start_demo(data_dir: Path, log: Path) -> subprocess.Popen[str]:
    """The demo server, its stdout and stderr (with its startup marks) in `log`: a file, not a pipe that
    nobody reads until the end (a full pipe would stop the server at its next write)."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-c", DEMO_SCRIPT, str(data_dir)], stdout=out,
                                stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", STARTUP_TRACE: "1"})


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid`'s threads at nice 0 so far (Linux /proc): not the threads
    that prepare an image's fast variant in the background (engine/wasm/builds.py runs them niced)."""
    ticks = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # that thread ended between the listing and the read
            continue
        if fields[16] == "0":
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_computing(server: int, request: Threads[httpx.Response], cpu: float = 0.3) -> None:
    """Until the server spent `cpu` more seconds of CPU while `request` (a `now` holding the one compute
    worker, nothing else asked of the server) is in flight: its message is being computed. A probe's 503
    says only that the worker is taken, and a SIGTERM in the moment before the message begins is answered
    503 (the node stops before a message it had not begun) instead of the message's drained answer."""
    start, deadline = _cpu_seconds(server), time.monotonic() + 300
    while request.is_alive() and _cpu_seconds(server) - start < cpu and time.monotonic() < deadline:
        time.sleep(0.01)


def test_serve_demo_and_sigterm_drains_then_closes(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _start_demo(tmp_path, log)  # on port 0: the node binds a free port and names it

    def said() -> str:
        return f"\n--- aonode serve (exit code {proc.poll()}) said:\n{log.read_text()[-8000:]}"

    try:
        try:
            url = announced_url(log, proc, COLD_START_SECONDS)
            wait_until_answering(url + "/~meta@1.0/info", COLD_START_SECONDS, proc)
        except (httpx.TransportError, RuntimeError, TimeoutError) as err:
            raise AssertionError(f"not answering after {COLD_START_SECONDS} s: {err!r}{said()}") from err
        pid = (tmp_path / "demo-process.txt").read_text().strip()
        with httpx.Client(base_url=url, timeout=120) as c:
            supply = c.get(f"/{pid}~process@1.0/now/cache/totalsupply")
            assert supply.status_code == 200, supply.text + said()
            idle = spawn_token(c, "idle")
            assert (at := c.get(f"/{idle}~process@1.0/now/at-slot")).text == "0", at.text + said()
            for _attempt in range(3):  # a heavy `now` that ended before SIGTERM tested no drain: another one
                heavy_slot = schedule(c, pid, "Eval", HEAVY_EVAL)
                worker, probe = start_busy_now(c, pid, idle)
                assert probe.status_code == 503, f"the heavy `now` never held the compute worker: {probe.text}{said()}"
                wait_until_computing(proc.pid, worker)
                if in_flight := worker.is_alive():
                    break
                assert worker.join(1)[0].text == str(heavy_slot), said()
            proc.send_signal(signal.SIGTERM)  # stops the server under the heavy request
            try:
                now = worker.join(300)[0]
            except httpx.TransportError as err:
                raise AssertionError(f"the heavy `now` was cut, not drained: {err!r}{said()}") from err
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"still running 120 s after SIGTERM{said()}") from err
        assert in_flight, f"three heavy `now`s had each ended before the SIGTERM: nothing to drain{said()}"
        assert (code, now.status_code, now.text) == (0, 200, str(heavy_slot)), f"{now.text}{said()}"
        out = log.read_text()
        assert f"demo token process: {pid}" in out and f"curl {url}/{pid}~process@1.0/now/cache/totalsupply" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # Same data dir through the real CLI (`aonode serve --dev --demo`): the demo process is reused.
    with cli_node(tmp_path, "--dev", "--demo") as (url, again), httpx.Client(base_url=url, timeout=120) as c:
        assert (tmp_path / "demo-process.txt").read_text().strip() == pid
        assert c.get(f"/{pid}~process@1.0/compute/at-slot").text == str(heavy_slot)
        assert "heavy done" in c.get(f"/{pid}~process@1.0/compute/results/data").text
        recipient = "R" * 43  # the transfer the printed instructions suggest
        schedule(c, pid, "Transfer", Recipient=recipient, Quantity="5")
        assert c.get(f"/{pid}~process@1.0/now/cache/balances/{recipient}").text == "5"
    assert again.returncode == 0  # cli_node stopped it with SIGTERM
    assert f"demo token process: {pid}" in (again.stdout.read() if again.stdout else "")
