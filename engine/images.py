"""Images: where a process's `Module` tag becomes a compiled image, through an injected catalogue.

The engine does not know where images come from (the catalogue in `aonode.modules`, a test's
folder, a gateway): the composition root hands the Node a `Catalogue` whose `resolve` turns a
reference into verified wasm bytes. Each reference is compiled once per Node and kept.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aonode.engine.errors import NotFound
from aonode.engine.wasm import Image, Runtime


@dataclass(frozen=True)
class ResolvedImage:
    """Verified wasm bytes for one reference (a catalogue name or a module id)."""

    ref: str
    wasm: bytes = field(repr=False)


@dataclass(frozen=True)
class ModuleRef:
    """An image the node can run, as `/~meta@1.0/info` lists it."""

    name: str
    id: str | None


ImageResolver = Callable[[str], ResolvedImage]  # raises an AONodeError (e.g. ModuleError) when unknown
ModuleIdOf = Callable[[str], str | None]  # a reference -> the module's transaction id, None when it has none


def _no_id(ref: str) -> str | None:
    return None


def _no_images(ref: str) -> ResolvedImage:
    raise NotFound(f"this node has no image catalogue, so it cannot load {ref!r} "
                   "(build the Node with aonode.server.compose.make_node)")


@dataclass(frozen=True)
class Catalogue:
    """What the Node needs from an image catalogue: resolve a reference, the image a definition
    that names none gets (None: such a definition is refused), the list to publish, and the
    module id a name stands for (processes see ids, as on the network; names are only labels)."""

    resolve: ImageResolver = _no_images
    default_module: str | None = None
    modules: Callable[[], list[ModuleRef]] = list
    module_id: ModuleIdOf = _no_id

    def canonical(self, ref: str) -> str:
        """The module id `ref` names when the catalogue knows one, else `ref` as given."""
        return self.module_id(ref) or ref


class Images:
    """Compiled images by reference, each resolved and compiled once."""

    def __init__(self, runtime: Runtime, catalogue: Catalogue) -> None:
        self.runtime = runtime
        self.catalogue = catalogue
        self._images: dict[str, Image] = {}
        self._guard = threading.Lock()

    def load(self, ref: str) -> Image:
        with self._guard:
            image = self._images.get(ref)
        if image is None:
            image = self.runtime.load(self.catalogue.resolve(ref).wasm, name=ref)
            with self._guard:
                self._images[ref] = image
        return image
