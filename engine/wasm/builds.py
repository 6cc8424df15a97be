"""An image's compiled builds, some of them still being prepared on a background thread.

Deriving an image's fast variant takes Binaryen ~10 s (and more on a busy machine), once per machine.
A node does not make the first process of an image wait for it: the image is compiled once for the
metered engine and runs there at once, while a background thread (from PREPARE_AFTER_SECONDS on)
compiles the image for the epoch engine, derives and compiles the variant, and then `settle`s. Instances
look at `Builds.home` between messages and move to the new home with their memory (flavors.py: every
build leaves the same memory).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import wasmtime

from aonode.engine.wasm.flavors import Flavor, home_for

log = logging.getLogger("aonode.engine")
BACKGROUND_NICE = 10  # the preparation yields the CPU to messages (Linux: wasm-opt inherits it)
# The preparation starts this long after the first use began: a cold start's first answers (the rest of
# the node starting, its first messages: ~2 s on an idle 2-core machine) do not share the cores with it;
# the variant comes ~10+ s later anyway (bench/bench_coldstart.py measured the first read ~0.2-1 s sooner
# on a busy 2-core machine).
PREPARE_AFTER_SECONDS = 3.0
_LOCKS: dict[str, threading.Lock] = {}  # one preparation per image at a time in this process
_LOCKS_GUARD = threading.Lock()


class Builds:
    """The compiled modules of one image by flavour. Filled in while instances run; readers see a
    module only once it is complete (one dict assignment each)."""

    def __init__(
        self, modules: dict[Flavor, wasmtime.Module], *, variant_lowered: bool = False, preparing: bool = False
    ) -> None:
        self._modules = dict(modules)
        self.variant_lowered = variant_lowered  # the variant's memory has 32-bit addresses
        self._settled = threading.Event()
        if not preparing:
            self._settled.set()

    def get(self, flavor: Flavor) -> wasmtime.Module | None:
        return self._modules.get(flavor)

    def add(self, flavor: Flavor, module: wasmtime.Module) -> None:
        self._modules[flavor] = module

    def settle(self, variant: wasmtime.Module | None, lowered: bool) -> None:
        """The preparation is over: `variant` is the fast variant (None: the image has none)."""
        if variant is not None:
            self.variant_lowered = lowered
            self._modules[Flavor.VARIANT] = variant
        self._settled.set()

    @property
    def preparing(self) -> bool:
        return not self._settled.is_set()

    @property
    def home(self) -> Flavor:
        """Where an instance that is not always metered belongs now (read `preparing` first)."""
        return home_for(has_variant=Flavor.VARIANT in self._modules, preparing=self.preparing, metered=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the preparation is over (benchmarks and tests); False on timeout."""
        return self._settled.wait(timeout)


def prepare_in_background(sha: str, builds: Builds, work: Callable[[], tuple[wasmtime.Module | None, bool]]) -> None:
    """Run `work` (-> the variant and whether it is lowered) on a daemon thread at a lower priority,
    then settle `builds`; a failure leaves the image without a variant (it runs as it is)."""

    def run() -> None:
        variant: wasmtime.Module | None = None
        lowered = False
        time.sleep(PREPARE_AFTER_SECONDS)
        try:
            if hasattr(os, "setpriority"):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:
            pass
        try:
            with preparation_lock(sha):  # a second Runtime preparing the image meanwhile reuses these builds
                variant, lowered = work()
        except Exception as err:  # noqa: BLE001 - the image still runs as it is; say why once
            log.warning("image %s runs without its fast variant: preparing it failed: %s", sha[:12], err)
        finally:
            builds.settle(variant, lowered)

    threading.Thread(target=run, name=f"aonode-variant-{sha[:8]}", daemon=True).start()


def preparation_lock(sha: str) -> threading.Lock:
    """Held while the image `sha` is being prepared in this process."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(sha, threading.Lock())
