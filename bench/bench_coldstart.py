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
- `cpu s`: CPU seconds the node process had used (all its threads, and its wallet's key searches:
  engine/keygen_race.py) at its first read. The machine
  these benches run on is shared, so wall times move with its load; the CPU seconds much less: on an
  idle 2-core machine the wall time is about CPU / 2 to CPU (compiles use both cores, imports one).
- phases: the node marks where its start is (engine/startup.py, AONODE_STARTUP_TRACE=1), each as
  wall seconds since launch / CPU seconds of the node so far: `searching` (the two key searches
  forked), `compiling` (the compile thread has wasmtime: its compile begins), `imports` (the CLI and
  the HTTP stack loaded), `wallet` (the node's key made, on a thread), `compiled` (the demo image
  compiled for the metered engine, on a thread), `node` (the Node built: it waits for the wallet),
  `demo` (the demo token spawned and computed: it waits for the image).

Python's own bytecode of aonode is compiled up front (`compileall`), as `pip install` does and as a
first run writes it: it is part of an installation, not of a cold start. `--source` measures starts
that compile every aonode module from source instead (no `__pycache__`, PYTHONDONTWRITEBYTECODE=1, as
in a sandbox that never writes bytecode): ~0.2 CPU s more.

`--against REV` alternates cold starts of another git revision with this checkout's and prints the ratio
of their first reads per pair (bench/coldstart_reference.py): e.g. `--against 7236e5a`, main before
issue 13 goal 4's work on the start; with `--with-wallet` both starts of a pair find the same wallet.json,
so the key search's random time stays out of the ratio.

    python bench/bench_coldstart.py [--runs 5] [--cold-only] [--source] [--against REV]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aonode.engine.crypto import Wallet  # noqa: E402
from bench.coldstart_reference import Reference, export  # noqa: E402
from tests.helpers.images import SHARED_MODULES  # noqa: E402

DEADLINE_SECONDS = 900.0  # deriving the variant on a loaded machine
BUILDS = 3  # compiled builds a node keeps of an image it prepared: metered, original, variant
TARGET_SECONDS = 3.0  # issue 13 goal 4: a cold first read within this
PACKAGE_DIRS = ("engine", "server", "modules")  # aonode's sources (pyproject.toml package-dir)
PHASES = ("searching", "compiling", "serve-imports", "wallet", "compiled", "node", "demo")  # engine/startup.py marks


@dataclass
class Start:
    listening: float
    first_read: float
    cpu: float | None
    answer: str
    variant: float | None = None
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # mark -> (wall s, cpu s)


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process and of the children it reaped (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _phases(log_tail: str, started_monotonic: float) -> dict[str, tuple[float, float]]:
    """The startup marks in the node's log (engine/startup.py), relative to the bench's launch."""
    marks = {}
    for line in log_tail.splitlines():
        if line.startswith("aonode-startup: "):
            _, phase, at, cpu = line.split()
            marks[phase] = (float(at) - started_monotonic, float(cpu))
    return marks


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def start_once(home: Path, data_dir: Path, wait_variant: bool = True, reference: Reference | None = None) -> Start:
    """Start the CLI (of `reference`, another revision, when given), time listening and the demo's first
    read, then stop it (SIGTERM, graceful)."""
    port = _free_port()
    env = {
        **os.environ,
        "AONODE_HOME": str(home),
        "AONODE_MODULE_PATH": str(SHARED_MODULES),
        "AONODE_STARTUP_TRACE": "1",
        **(reference.env() if reference else {}),
    }
    cmd = [
        sys.executable,
        *(["-S"] if reference else []),
        "-m",
        "aonode.server.cli",
        "serve",
        "--dev",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--cron-every",
        "0",
    ]
    log = data_dir.parent / "node.log"
    log_from = log.stat().st_size if log.exists() else 0
    started_monotonic = time.monotonic()
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
        with log.open() as text:
            text.seek(log_from)
            phases = _phases(text.read(), started_monotonic)
        return Start(listening, first_read, cpu, answer, variant, phases)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts (each in fresh directories)")
    parser.add_argument("--cold-only", action="store_true", help="stop at the first read: no variant, no warm start")
    parser.add_argument("--source", action="store_true", help="no bytecode: every start compiles aonode's modules")
    parser.add_argument("--against", metavar="REV", help="alternate with cold starts of this git revision (ratio)")
    parser.add_argument(
        "--with-wallet",
        action="store_true",
        help="each fresh data dir already holds a wallet.json (an operator's own key): no key search at start",
    )
    args = parser.parse_args()
    _bytecode(present=not args.source)
    print(
        f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; aonode bytecode: "
        + ("none (--source)" if args.source else "compiled up front")
    )
    print(
        f"{'start':<18}{'listening s':>12}{'first read s':>14}{'cpu s':>8}{'variant s':>11}  "
        + "".join(f"{name.removeprefix('serve-'):>13}" for name in PHASES)
        + "  (phases: wall/cpu s)"
    )
    if args.against:
        _against(args.against, args.runs, args.with_wallet)
        return
    colds: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="aonode-coldstart-") as tmp:
            home, data_dir = Path(tmp) / "home", Path(tmp) / "data"
            if args.with_wallet:
                data_dir.mkdir()
                Wallet.generate().save(data_dir / "wallet.json")  # made before the clock starts
            cold = start_once(home, data_dir, wait_variant=not args.cold_only)
            colds.append(cold.first_read)
            _row(f"cold #{run + 1}", cold)
            if args.cold_only:
                continue
            _row("warm (same dirs)", start_once(home, data_dir))
    within = sum(seconds <= TARGET_SECONDS for seconds in colds)
    print(
        f"cold first read: min {min(colds):.2f} s, median {statistics.median(colds):.2f} s, max {max(colds):.2f} s; "
        f"{within}/{len(colds)} within {TARGET_SECONDS:.0f} s; load average after: {os.getloadavg()[0]:.1f}"
    )


def _against(rev: str, runs: int, with_wallet: bool = False) -> None:
    """Cold starts of `rev` and of this checkout, alternating which goes first; their ratio per pair.
    `with_wallet`: both starts of a pair find the same wallet.json (no key search: its random time, the
    largest noise in a pair, is out of the comparison)."""
    reference = export(rev)
    ratios: list[float] = []
    try:
        for run in range(runs):
            pair: dict[str, Start] = {}
            wallet = Wallet.generate() if with_wallet else None  # made before either clock starts
            for which in ("reference", "this") if run % 2 == 0 else ("this", "reference"):
                with tempfile.TemporaryDirectory(prefix="aonode-coldstart-") as tmp:
                    if wallet is not None:
                        (Path(tmp) / "data").mkdir()
                        wallet.save(Path(tmp) / "data" / "wallet.json")
                    pair[which] = start_once(
                        Path(tmp) / "home", Path(tmp) / "data", False, reference if which == "reference" else None
                    )
                _row(f"{rev[:10] if which == 'reference' else 'this'} #{run + 1}", pair[which])
            ratios.append(pair["this"].first_read / pair["reference"].first_read)
    finally:
        reference.close()
    print(
        f"cold first read, this / {rev}: {' '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}"
        f"; load average after: {os.getloadavg()[0]:.1f}"
    )


def _bytecode(present: bool) -> None:
    """Compile aonode's bytecode where Python looks for it, or remove it and have starts not write it."""
    for folder in PACKAGE_DIRS:
        if present:
            compileall.compile_dir(ROOT / folder, quiet=1)
        else:
            for cache in (ROOT / folder).rglob("__pycache__"):
                shutil.rmtree(cache, ignore_errors=True)
    if present:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def _row(label: str, start: Start) -> None:
    phases = "".join(
        f"{f'{start.phases[name][0]:.2f}/{start.phases[name][1]:.2f}':>13}" if name in start.phases else f"{'-':>13}"
        for name in PHASES
    )
    print(
        f"{label:<18}{start.listening:>12.2f}{start.first_read:>14.2f}{_fmt(start.cpu)}{_fmt(start.variant, 11)}  "
        f"{phases}  {start.answer}"
    )


def _fmt(seconds: float | None, width: int = 8) -> str:
    return f"{seconds:>{width}.2f}" if seconds is not None else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
