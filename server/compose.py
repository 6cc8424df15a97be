"""The composition root: a Node wired to the image catalogue in `aonode.modules`.

The engine never imports the catalogue; it is handed in here as a `Catalogue` (resolve a
reference to verified wasm bytes, the default image, the list to publish). `aonode serve`, the
CLI and the tests build their Nodes with `make_node`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from aonode.engine.crypto import Wallet
from aonode.engine.errors import AONodeError
from aonode.engine.images import Catalogue, ModuleRef, ResolvedImage
from aonode.engine.leases import DEFAULT_LEASES, LeaseConfig
from aonode.engine.node import Node, data_dir_wallet, precompile
from aonode.engine.startup import mark
from aonode.modules import catalogue as modules

DEMO_MODULE = "aos2_0_6"  # the image `aonode serve --demo` spawns its token from
log = logging.getLogger("aonode.server")


def resolve_image(ref: str) -> ResolvedImage:
    """A Module tag (catalogue name or module id, never a path: it comes from clients) to bytes."""
    return ResolvedImage(ref=ref, wasm=modules.resolve(ref, allow_path=False).read_bytes())


def module_list() -> list[ModuleRef]:
    return [ModuleRef(name=e.name, id=e.id) for e in modules.entries()]


def module_id(ref: str) -> str | None:
    """The transaction id a catalogue name (or id) stands for; None for images the catalogue has no id for."""
    entry = modules.lookup(ref)
    return entry.id if entry is not None else None


def module_catalogue() -> Catalogue:
    return Catalogue(
        resolve=resolve_image, default_module=modules.default_name(), modules=module_list, module_id=module_id
    )


def make_node(
    data_dir: Path | str,
    dev: bool = False,
    *,
    max_live: int = 32,
    clock: Callable[[], int] | None = None,
    wallet: Wallet | None = None,
    dry_run_slots: int = 2,
    store: str | None = None,
    leases: LeaseConfig = DEFAULT_LEASES,
    snapshots: str | None = None,
) -> Node:
    """A Node on `data_dir` that runs the catalogue's images (the other arguments as `Node` takes)."""
    return Node(
        data_dir,
        dev,
        catalogue=module_catalogue(),
        max_live=max_live,
        clock=clock,
        wallet=wallet,
        dry_run_slots=dry_run_slots,
        store=store,
        leases=leases,
        snapshots=snapshots,
    )


def warm_image(data_dir: Path, ref: str) -> threading.Thread:
    """Compile `ref` for a node on `data_dir` on a thread, while the node is still starting (its wallet,
    its store, the HTTP stack's imports), through `engine.node.precompile`. `aonode serve --demo` uses it."""

    def run() -> None:
        try:
            precompile(Path(data_dir), resolve_image(ref).wasm, ref)
            mark("compiled")
        except AONodeError as err:  # the node's own load says the same, where a request can see it
            log.debug("warming image %s: %s", ref, err)

    thread = threading.Thread(target=run, name="aonode-warm", daemon=True)
    thread.start()
    return thread


def warm_wallet(data_dir: Path) -> Callable[[], Wallet | None]:
    """Make (or read) the node's own wallet on a thread while the rest loads; the returned call waits
    for it and hands it over, so the node does not read the file again (checking an RSA-4096 key on
    load costs ~0.3 s). None on a failure: the node's own start then reads it and says what is wrong."""
    made: list[Wallet] = []

    def run() -> None:
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            made.append(data_dir_wallet(Path(data_dir)))
            mark("wallet")
        except Exception as err:  # noqa: BLE001 - the node's own start reads it again and says what is wrong
            log.debug("making the wallet in %s: %s", data_dir, err)

    thread = threading.Thread(target=run, name="aonode-wallet", daemon=True)
    thread.start()

    def result() -> Wallet | None:
        thread.join()
        return made[0] if made else None

    return result
