"""Where the code of a `~lua@5.3a&module=<id>` read comes from: a local directory, or the node's
Arweave gateway (`$AONODE_GATEWAY/raw/<id>`), fetched once and then kept by id in the data dir.

Arweave data never changes under its id, so a module fetched once is good forever; the gateway is
asked only for ids of Arweave's shape (43 base64url characters).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aonode.engine.errors import BadInput, ModuleError, NotFound
from aonode.engine.files import write_atomic

MAX_MODULE_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_ARWEAVE_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


def module_path_from_env() -> tuple[Path, ...]:
    """`$AONODE_LUA_PATH`: directories (separated like PATH) holding `<name>.lua` read modules."""
    text = os.environ.get("AONODE_LUA_PATH", "")
    return tuple(Path(p) for p in text.split(os.pathsep) if p)


@dataclass
class LuaModules:
    """Module code by id; `cache_dir` keeps what came from the gateway (inside the node's data dir)."""

    cache_dir: Path
    dirs: tuple[Path, ...] = ()
    max_size: int = MAX_MODULE_BYTES
    _code: dict[str, str] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def code(self, module_id: str) -> str:
        if not _NAME.match(module_id) or ".." in module_id:
            raise BadInput(f"not a lua module id: {module_id!r:.80}")
        with self._guard:
            known = self._code.get(module_id)
        if known is not None:
            return known
        code = _text(self._bytes(module_id), module_id)
        with self._guard:
            if len(self._code) >= 256:
                self._code.clear()
            self._code[module_id] = code
        return code

    def _bytes(self, module_id: str) -> bytes:
        for folder in (self.cache_dir, *self.dirs):
            for name in (module_id, f"{module_id}.lua"):
                path = folder / name
                if path.is_file():
                    if path.stat().st_size > self.max_size:
                        raise BadInput(f"lua module {module_id} is larger than {self.max_size} bytes")
                    return path.read_bytes()
        if not _ARWEAVE_ID.match(module_id):
            raise NotFound(
                f"no lua module {module_id!r} in {', '.join(map(str, self.dirs)) or 'any local directory'}"
                " (and it is not an Arweave id to fetch)"
            )
        from aonode.engine.gateway import fetch_gateway

        data = fetch_gateway(module_id, self.max_size)  # SourceUnavailable (a ModuleError, 400) names the URL
        write_atomic(self.cache_dir / module_id, data, mode=0o644)
        return data


def _text(data: bytes, module_id: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ModuleError(f"lua module {module_id} is not UTF-8 Lua source (byte {err.start})") from err
