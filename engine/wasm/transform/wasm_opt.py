"""Binaryen's wasm-opt, the one external tool the transforms use: finding it, running it, and where
its products are cached."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import threading
from pathlib import Path

from aonode.engine.errors import ModuleError
from aonode.engine.files import aonode_home

# Features beyond the ones a pass needs: harmless when unused, and they keep wasm-opt's validator
# from rejecting user images built with the usual emscripten defaults.
FEATURES = (
    "--enable-exception-handling",
    "--enable-memory64",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-simd",
)

MISSING_TOOL = (
    "Binaryen's wasm-opt was not found (it derives the fast variants and translates legacy-exception "
    "images): run `npm ci` in the aonode checkout "
    "(npm package binaryen), or set AONODE_WASM_OPT"
)

# The checkout's root (engine/wasm/transform/ is three folders down): `npm ci` installs wasm-opt there.
_CHECKOUT = Path(__file__).resolve().parents[3]


def default_cache_dir() -> Path:
    """`$AONODE_HOME/cache`, else `~/.cache/aonode` (shared with the compile cache)."""
    return aonode_home() / "cache" if os.environ.get("AONODE_HOME") else aonode_home()


def find_wasm_opt() -> Path:
    """`$AONODE_WASM_OPT`, then the checkout's `node_modules/.bin/wasm-opt`, then PATH."""
    configured = os.environ.get("AONODE_WASM_OPT")
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ModuleError(f"AONODE_WASM_OPT={configured} is not an executable file. {MISSING_TOOL}")
    bundled = _CHECKOUT / "node_modules" / ".bin" / "wasm-opt"
    if bundled.exists():
        return bundled
    on_path = shutil.which("wasm-opt")
    if on_path:
        return Path(on_path)
    raise ModuleError(MISSING_TOOL)


class Stopped(ModuleError):
    """wasm-opt was stopped by a signal (this process is exiting): nothing to learn about the image."""


_RUNNING: set[subprocess.Popen[str]] = set()  # stopped when this process exits (a background preparation)
_RUNNING_LOCK = threading.Lock()


def run_wasm_opt(tool: Path, args: list[str], what: str = "") -> None:
    """Run `tool` with `args`; a failure becomes a ModuleError naming `what` was asked and the tool's
    last words. A run still going when this process exits is stopped with it."""
    try:
        proc = subprocess.Popen([str(tool), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as err:
        raise ModuleError(f"cannot run {tool}: {err}. {MISSING_TOOL}") from err
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate()
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    if proc.returncode < 0:
        raise Stopped(f"wasm-opt{' ' + what if what else ''} was stopped (signal {-proc.returncode})")
    if proc.returncode != 0:
        detail = (stderr or stdout).strip()[-2000:]
        raise ModuleError(f"wasm-opt{' ' + what if what else ''} failed (exit {proc.returncode}): {detail}")


@atexit.register
def _stop_running() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        proc.kill()
