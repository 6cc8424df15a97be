"""Where the real AOS images are, and the in-memory process the wasm-level tests run them as."""
from __future__ import annotations

import os
from pathlib import Path

from aonode.engine.aos import ProcessSpec

SHARED_MODULES = Path(__file__).resolve().parents[3] / "shared" / "modules"

# A process identity for tests that drive an Instance directly (no Node): spawn, then numbered messages.
AOS_MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"
SPEC = ProcessSpec(pid="PROCESS" + "p" * 36, owner="OWNER" + "o" * 38, module_id=AOS_MODULE_ID, name="demo")


def use_shared_modules() -> None:
    """Point the catalogue at ../shared/modules when it exists, so no test or bench needs the network."""
    if SHARED_MODULES.is_dir():
        os.environ.setdefault("AONODE_MODULE_PATH", str(SHARED_MODULES))


def image_path(filename: str) -> Path:
    """A real image from ../shared/modules, or fetched through the catalogue when that folder is absent."""
    local = SHARED_MODULES / filename
    if local.exists():
        return local
    from aonode.modules.catalogue import resolve

    return resolve(filename.removesuffix(".wasm")).path
