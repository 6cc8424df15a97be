"""engine/wasm/__init__.py exports its names lazily (PEP 562: a cold start's compile thread imports only
runtime.py); every public name must still resolve, to the object its module defines, and the package
must load none of them until asked."""

from __future__ import annotations

import importlib
import subprocess
import sys

import aonode.engine.wasm as wasm


def test_every_public_name_resolves_to_its_modules_object() -> None:
    for name in wasm.__all__:
        value = getattr(wasm, name)
        home = importlib.import_module(f"aonode.engine.wasm.{wasm._HOMES[name]}")
        assert value is getattr(home, name), name
    assert set(wasm._HOMES) == set(wasm.__all__)


def test_importing_the_runtime_alone_leaves_the_rest_of_the_engine_unloaded() -> None:
    code = (
        "import sys; import aonode.engine.wasm.runtime; "
        "print(sorted(m for m in ('instance', 'linking', 'host', 'chunked', 'snapshot') "
        "if 'aonode.engine.wasm.' + m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
