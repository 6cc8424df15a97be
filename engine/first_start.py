"""What a node keeps in its data dir that a start prepares before the Node exists: its wallet and its
compiled images. Apart from engine/node.py, which imports the whole engine, so that `aonode serve` can
begin both on threads while the rest is still importing (server/warmup.py): making an RSA-4096 key and
compiling an image leave the GIL to the imports."""

from __future__ import annotations

from pathlib import Path

from aonode.engine.crypto import Wallet
from aonode.engine.keygen_race import KeyRace


def data_dir_wallet(data_dir: Path, race: KeyRace | None = None) -> Wallet:
    """The node's own wallet in its data dir, made and saved on its first start (an RSA-4096 key: a random
    prime search, raced in two processes: keygen_race.py; `race`: one the caller began earlier)."""
    path = data_dir / "wallet.json"
    if path.exists():
        if race is not None:
            race.cancel()
        return Wallet.load(path)
    wallet = (race or KeyRace()).wallet()
    wallet.save(path)
    return wallet


def compile_cache(data_dir: Path) -> Path:
    """Where a node on `data_dir` keeps its compiled images (serve --demo warms it up: server/warmup.py)."""
    return data_dir / "cache"


def precompile(data_dir: Path, wasm: bytes, name: str) -> None:
    """Compile `wasm` into the cache a node on `data_dir` will read, before that node exists: its first use
    then finds it compiled, or waits for this compile instead of starting another (engine/wasm/runtime.py)."""
    from aonode.engine.wasm import Runtime  # the wasm engine loads on the compiling thread, not the caller's

    Runtime(cache_dir=compile_cache(Path(data_dir)), background=True).load(wasm, name=name)
