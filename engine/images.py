"""Images: where a process's `Module` tag becomes a compiled image, through an injected catalogue.

The engine does not know where images come from (the catalogue in `aonode.modules`, a test's
folder, a gateway): the composition root hands the Node a `Catalogue` whose `resolve` turns a
reference into verified wasm bytes. Each reference is compiled once per Node and kept.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from aonode.engine.errors import AONodeError, Busy, ModuleError, NotFound
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
    raise NotFound(
        f"this node has no image catalogue, so it cannot load {ref!r} "
        "(build the Node with aonode.server.compose.make_node)"
    )


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


FETCH_WAIT_SECONDS = 10.0  # how long a caller (a compute worker) waits for an image being fetched
FAILURE_TTL_SECONDS = 60.0  # how long a failed fetch is answered from memory instead of retried


class Images:
    """Compiled images by reference, each resolved and compiled once.

    Resolving may fetch (npm, a gateway) and take long or hang offline, so it runs on this class's
    own two fetch threads, never on a compute worker: a caller waits `fetch_wait` seconds at most and
    then gets Busy (503, retry) while the fetch goes on; one fetch per reference at a time; a failure
    is remembered for `failure_ttl` seconds, so anyone naming a missing image cannot keep the node
    fetching (issue 10 item 7)."""

    def __init__(
        self,
        runtime: Runtime,
        catalogue: Catalogue,
        *,
        fetch_wait: float = FETCH_WAIT_SECONDS,
        failure_ttl: float = FAILURE_TTL_SECONDS,
    ) -> None:
        self.runtime = runtime
        self.catalogue = catalogue
        self.fetch_wait = fetch_wait
        self.failure_ttl = failure_ttl
        self._images: dict[str, Image] = {}
        self._fetching: dict[str, Future[ResolvedImage]] = {}
        self._failed: dict[str, tuple[float, AONodeError]] = {}
        self._fetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aonode-fetch")
        self._guard = threading.Lock()

    def load(self, ref: str) -> Image:
        with self._guard:
            image = self._images.get(ref)
        if image is None:
            image = self.runtime.load(self._resolved(ref).wasm, name=ref)
            with self._guard:
                self._images[ref] = image
        return image

    def _resolved(self, ref: str) -> ResolvedImage:
        with self._guard:
            failed = self._failed.get(ref)
            if failed is not None and failed[0] > time.monotonic():
                left = int(failed[0] - time.monotonic()) + 1
                raise type(failed[1])(f"{failed[1]} (remembered; tried again in {left} s)")
            fetch = self._fetching.get(ref)
            started = fetch is None
            if fetch is None:
                fetch = self._fetcher.submit(self.catalogue.resolve, ref)
                self._fetching[ref] = fetch
        if started:  # outside the guard: a fetch already done runs the callback here, and it takes the guard
            fetch.add_done_callback(functools.partial(self._fetched, ref))
        try:
            return fetch.result(timeout=self.fetch_wait)
        except FutureTimeout:
            raise Busy(f"image {ref} is being fetched; retry in a few seconds") from None

    def _fetched(self, ref: str, fetch: Future[ResolvedImage]) -> None:
        error = fetch.exception()
        with self._guard:
            self._fetching.pop(ref, None)
            if error is not None:
                failure = error if isinstance(error, AONodeError) else ModuleError(f"fetching image {ref}: {error}")
                self._failed[ref] = (time.monotonic() + self.failure_ttl, failure)
            else:
                self._failed.pop(ref, None)
