"""What `aonode serve` starts first, on threads, while the HTTP stack and the engine are still importing:
the node's wallet (a first start makes an RSA-4096 key) and, with --demo, the demo's image compiled.
Both leave the GIL to the imports, so they run truly beside them; each thread imports only what it needs
(engine/first_start.py, the catalogue), at its start, so neither waits for the rest of the engine."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aonode.engine.startup import mark

if TYPE_CHECKING:
    from aonode.engine.crypto import Wallet

DEMO_MODULE = "aos2_0_6"  # the image `aonode serve --demo` spawns its token from
log = logging.getLogger("aonode.server")


def warm_image(data_dir: Path, ref: str) -> threading.Event:
    """Compile `ref` for a node on `data_dir` (engine.first_start.precompile); a failure is left to the
    node's own load of the image, which says it where a request can see it. The event is set once the
    thread has its imports (or gave up): a caller that waits for it before importing more lets the
    compile begin ~0.1-0.8 s sooner than when both threads import at once, sharing the GIL, and its
    own imports end no later (they need the GIL either way)."""
    imported = threading.Event()

    def run() -> None:
        try:
            from aonode.engine.errors import AONodeError
            from aonode.engine.first_start import import_compiler, precompile
            from aonode.modules.catalogue import resolve

            import_compiler()
        finally:
            imported.set()
            mark("compiling")
        try:
            precompile(Path(data_dir), resolve(ref, allow_path=False).read_bytes(), ref)
            mark("compiled")
        except AONodeError as err:
            log.debug("warming image %s: %s", ref, err)

    threading.Thread(target=run, name="aonode-warm", daemon=True).start()
    return imported


def warm_wallet(data_dir: Path) -> Callable[[], Wallet | None]:
    """Make (or read) the node's own wallet; the returned call waits for it and hands it over, so the node
    does not read the file again (checking an RSA-4096 key on load costs ~0.3 s). None on a failure: the
    node's own start then reads it and says what is wrong. Call it before starting any other thread."""
    from aonode.engine.first_start import data_dir_wallet
    from aonode.engine.keygen_race import KeyRace

    made: list[Wallet] = []
    # Begun here, before any thread: the key searches then fork (keygen_race.py), no interpreter to start.
    race = None if (Path(data_dir) / "wallet.json").exists() else KeyRace()
    if race is not None:
        mark("searching")

    def run() -> None:
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            made.append(data_dir_wallet(Path(data_dir), race))
            mark("wallet")
        except Exception as err:  # noqa: BLE001 - the node's own start reads it again and says what is wrong
            log.debug("making the wallet in %s: %s", data_dir, err)

    thread = threading.Thread(target=run, name="aonode-wallet", daemon=True)
    thread.start()

    def result() -> Wallet | None:
        thread.join()
        return made[0] if made else None

    return result
