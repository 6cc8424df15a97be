"""The composition root: a Node wired to the image catalogue in `aonode.modules`.

The engine never imports the catalogue; it is handed in here as a `Catalogue` (resolve a
reference to verified wasm bytes, the default image, the list to publish). `aonode serve`, the
CLI and the tests build their Nodes with `make_node`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aonode.engine.crypto import Wallet
from aonode.engine.images import Catalogue, ModuleRef, ResolvedImage
from aonode.engine.leases import DEFAULT_LEASES, LeaseConfig
from aonode.engine.node import Node
from aonode.modules import catalogue as modules

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
