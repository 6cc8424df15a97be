"""Another revision of aonode, runnable beside this checkout: bench_coldstart.py `--against REV` starts it
and this one alternately, so the ratio of their cold starts is measured under the same load.

The revision's `engine/`, `server/` and `modules/` are exported with `git archive` into a temporary
folder laid out as the `aonode` namespace, byte-compiled like this checkout, and run with `python -S`
(no site: this venv's editable install of the current checkout stays out of the way) and PYTHONPATH
= that folder + this venv's site-packages (the same wasmtime, hypercorn, ...).
"""

from __future__ import annotations

import compileall
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("engine", "server", "modules")  # pyproject.toml package-dir: aonode.<folder>


@dataclass
class Reference:
    rev: str
    tree: tempfile.TemporaryDirectory[str]

    @property
    def pythonpath(self) -> str:
        return f"{Path(self.tree.name) / 'pkg'}:{sysconfig.get_paths()['purelib']}"

    def env(self) -> dict[str, str]:
        # Its variant derivation finds wasm-opt where this checkout has it (no node_modules in the export).
        return {"PYTHONPATH": self.pythonpath, "AONODE_WASM_OPT": str(ROOT / "node_modules" / ".bin" / "wasm-opt")}

    def close(self) -> None:
        self.tree.cleanup()


def export(rev: str) -> Reference:
    """`rev` of this repository as a runnable `aonode` package in a temporary folder."""
    tree = tempfile.TemporaryDirectory(prefix="aonode-reference-")
    src, pkg = Path(tree.name) / "src", Path(tree.name) / "pkg" / "aonode"
    src.mkdir()
    pkg.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *FOLDERS], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    for folder in FOLDERS:
        (pkg / folder).symlink_to(src / folder)
        compileall.compile_dir(src / folder, quiet=1)
    return Reference(rev, tree)
