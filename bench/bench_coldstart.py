"""Cold start of `aonode serve --dev --demo`: how long until the node listens and answers its first read.

"Cold" is a machine that has the AOS image but nothing derived from it: a fresh `AONODE_HOME` (no fast
variant, no compiled artifacts) and a fresh data dir, with the image found through AONODE_MODULE_PATH
(tests/helpers/images.py's folder), so nothing is fetched. The real CLI runs in a subprocess; the
phases are read from outside:

- `listening`: the first answer of `GET /~meta@1.0/info`.
- `first read`: the first 200 of `GET /<demo pid>~process@1.0/now/cache/totalsupply`.
- `variant s`: when the fast variant the node prepared in the background is compiled and kept
  (data dir `cache/`: the metered, original and variant builds); the process moves to it at its next
  message. The cold node is stopped only then, so the restart finds everything cached.
- `warm`: the same start again on the same data dir and home (nothing to compile).
- `cpu s`: CPU seconds the node process had used (all its threads) at its first read. The machine
  these benches run on is shared, so wall times move with its load; the CPU seconds much less: on an
  idle 2-core machine the wall time is about CPU / 2 to CPU (compiles use both cores, imports one).

    python bench/bench_coldstart.py [--runs 1]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.images import SHARED_MODULES  # noqa: E402

DEADLINE_SECONDS = 900.0  # deriving the variant on a loaded machine
BUILDS = 3  # compiled builds a node keeps of an image it prepared: metered, original, variant


@dataclass
class Start:
    listening: float
    first_read: float
    cpu: float | None
    answer: str
    variant: float | None = None


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def start_once(home: Path, data_dir: Path, wait_variant: bool = True) -> Start:
    """Start the CLI, time listening and the demo's first read, then stop it (SIGTERM, graceful)."""
    port = _free_port()
    env = {**os.environ, "AONODE_HOME": str(home), "AONODE_MODULE_PATH": str(SHARED_MODULES)}
    cmd = [sys.executable, "-m", "aonode.server.cli", "serve", "--dev", "--demo", "--port", str(port),
           "--data-dir", str(data_dir), "--cron-every", "0"]
    log = data_dir.parent / "node.log"
    started = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        listening = first_read = 0.0
        cpu: float | None = None
        pid, answer = "", ""
        marker = data_dir / "demo-process.txt"
        while time.perf_counter() - started < DEADLINE_SECONDS:
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited: {log.read_text()[-3000:]}")
            if not listening and _get(f"{url}/~meta@1.0/info")[0] == 200:
                listening = time.perf_counter() - started
            if listening and not pid and marker.exists():
                pid = marker.read_text().strip()
            if pid:
                status, answer = _get(f"{url}/{pid}~process@1.0/now/cache/totalsupply")
                if status == 200:
                    first_read = time.perf_counter() - started
                    cpu = _cpu_seconds(proc.pid)
                    break
            time.sleep(0.02)
        if not first_read:
            raise RuntimeError("no first read before the deadline")
        variant = None
        while wait_variant and time.perf_counter() - started < DEADLINE_SECONDS and proc.poll() is None:
            if len(list((data_dir / "cache").glob("*.cwasm"))) >= BUILDS:
                variant = time.perf_counter() - started
                break
            time.sleep(0.1)
        return Start(listening, first_read, cpu, answer, variant)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="cold starts (each in fresh directories)")
    parser.add_argument("--cold-only", action="store_true", help="stop at the first read: no variant, no warm start")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'start':<22}{'listening s':>12}{'first read s':>14}{'cpu s':>8}{'variant s':>11}  answer")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="aonode-coldstart-") as tmp:
            home, data_dir = Path(tmp) / "home", Path(tmp) / "data"
            cold = start_once(home, data_dir, wait_variant=not args.cold_only)
            print(f"{'cold #' + str(run + 1):<22}{cold.listening:>12.2f}{cold.first_read:>14.2f}{_fmt(cold.cpu)}"
                  f"{_fmt(cold.variant, 11)}  {cold.answer}")
            if args.cold_only:
                continue
            warm = start_once(home, data_dir)
            print(f"{'warm (same dirs)':<22}{warm.listening:>12.2f}{warm.first_read:>14.2f}{_fmt(warm.cpu)}"
                  f"{_fmt(None, 11)}  {warm.answer}")


def _fmt(seconds: float | None, width: int = 8) -> str:
    return f"{seconds:>{width}.2f}" if seconds is not None else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
