"""What a node keeps in its data dir that a start prepares before the Node exists: its wallet and its
compiled images. Apart from engine/node.py, which imports the whole engine, so that `aonode serve` can
begin both on threads while the rest is still importing (server/warmup.py): making an RSA-4096 key and
compiling an image leave the GIL to the imports."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from aonode.engine.keygen_race import KeyRace

if TYPE_CHECKING:
    from aonode.engine.crypto import Wallet

WALLET = "wallet.json"
# The sha256 of the wallet file's bytes as this program last made or fully checked them. A load of the
# same bytes skips OpenSSL's check of the key (testing an RSA-4096 key's primes: ~0.3-0.6 CPU-s on every
# start): the check could only find again what it found before, and any changed byte (a damaged file,
# another key put there) is checked in full. Whoever can write this record can replace the key anyway.
CHECKED = "wallet.checked"


def data_dir_wallet(data_dir: Path, race: KeyRace | None = None) -> Wallet:
    """The node's own wallet in its data dir, made and saved on its first start (an RSA-4096 key: a random
    prime search, raced in two processes: keygen_race.py; `race`: one the caller began earlier)."""
    path = data_dir / WALLET
    if path.exists():
        if race is not None:
            race.cancel()
        from aonode.engine.crypto import Wallet  # not at import: the key searches fork first (keygen_race.py)

        data = path.read_bytes()
        known = _digest(data) == _recorded(data_dir)
        wallet = Wallet.from_jwk_bytes(data, str(path), known_valid=known)  # BadInput: nothing recorded
        if not known:
            _record(data_dir, data)
        return wallet
    wallet = (race or KeyRace()).wallet()
    wallet.save(path)
    _record(data_dir, path.read_bytes())
    return wallet


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _recorded(data_dir: Path) -> str | None:
    try:
        return (data_dir / CHECKED).read_text().strip()
    except OSError:
        return None


def _record(data_dir: Path, data: bytes) -> None:
    """Remember `data` as a wallet file checked (or made) here; a data dir it cannot be written in is
    only checked in full again next time."""
    from aonode.engine.files import write_atomic

    try:
        write_atomic(data_dir / CHECKED, (_digest(data) + "\n").encode(), mode=0o600)
    except OSError:
        pass


def compile_cache(data_dir: Path) -> Path:
    """Where a node on `data_dir` keeps its compiled images (serve --demo warms it up: server/warmup.py)."""
    return data_dir / "cache"


def import_compiler() -> None:
    """Import what `precompile` runs (wasmtime and the compile settings: engine/wasm/runtime.py) and no
    more of the engine, so that a caller waiting for it before importing the rest (server/warmup.py)
    has the compile begin as soon as it can, with no other import holding the GIL meanwhile."""
    import aonode.engine.wasm.runtime  # noqa: F401


def precompile(data_dir: Path, wasm: bytes, name: str) -> None:
    """Compile `wasm` into the cache a node on `data_dir` will read, before that node exists: its first use
    then finds it compiled, or waits for this compile instead of starting another (engine/wasm/runtime.py)."""
    from aonode.engine.wasm.runtime import Runtime  # only what compiles, on the compiling thread (not the caller)

    Runtime(cache_dir=compile_cache(Path(data_dir)), background=True).load(wasm, name=name)
