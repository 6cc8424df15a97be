"""One running process image: message in, result JSON out, and its state exactly as before on failure.

The parts: linking.py makes a wasmtime instance of one flavour (flavors.py: which build runs, and when
to move), aos_abi.py speaks ao-loader's `handle(msg, env)`, budget.py bounds each call and maps its
failures, journal.py keeps the rollback point. This class ties them together.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from aonode.engine.errors import ModuleError, WasmError
from aonode.engine.wasm.budget import DeadlineReached, ProcExitError, quick
from aonode.engine.wasm.chunked import PendingChunks, Restorable, Shadow, StoredSnapshot, Taken, take
from aonode.engine.wasm.drive_store import DriveStore
from aonode.engine.wasm.flavors import Flavor, Itinerary
from aonode.engine.wasm.journal import CHECKPOINT_EVERY, Journal
from aonode.engine.wasm.limits import Limits
from aonode.engine.wasm.linking import ExtraImports, Setup, link, load_snapshot
from aonode.engine.wasm.runtime import Image, Runtime
from aonode.engine.wasm.snapshot import PendingSnapshot, Snapshot, SparseCopy
from aonode.engine.wasm.weavedrive import SuspendNeeded
from aonode.engine.wasm.written_pages import WrittenPages


class Instance:
    """A wasmtime instance of an image plus the host that serves its imports. `metered` runs every
    message on the fuel-counting engine; `fast_imports=False` serves every import from Python."""

    def __init__(
        self,
        runtime: Runtime,
        image: Image,
        limits: Limits = Limits(),
        weavedrive_dir: Path | DriveStore | None = None,
        extra_imports: ExtraImports | None = None,
        _snapshot: Snapshot | StoredSnapshot | None = None,
        *,
        fast_imports: bool = True,
        metered: bool = False,
    ) -> None:
        self.runtime, self.image, self.limits, self.weavedrive_dir = runtime, image, limits, weavedrive_dir
        self._setup = Setup(runtime, image, limits, weavedrive_dir, extra_imports or {}, fast_imports)
        self.always_metered = metered
        self._settling = image.preparing and not metered  # its home may change (builds.py)
        self._itinerary = Itinerary.start(
            has_variant=image.variant is not None,
            metered=metered,
            restored=_snapshot is not None,
            max_stay=CHECKPOINT_EVERY,
            preparing=self._settling,
        )
        self.last_gas_used = 0
        self.redos = 0  # messages redone metered because their time proved nothing (benches count them)
        self._instantiate(_snapshot)
        self._journal = Journal(_snapshot)
        # The previous chunked snapshot's memory (chunked.py): restored ones arrive filled.
        self.shadow = _snapshot.shadow if isinstance(_snapshot, StoredSnapshot) else Shadow()

    @classmethod
    def restore(
        cls,
        runtime: Runtime,
        image: Image,
        snapshot: Snapshot | StoredSnapshot,
        limits: Limits = Limits(),
        weavedrive_dir: Path | DriveStore | None = None,
        extra_imports: ExtraImports | None = None,
        *,
        fast_imports: bool = True,
        metered: bool = False,
    ) -> Instance:
        return cls(
            runtime,
            image,
            limits,
            weavedrive_dir,
            extra_imports,
            _snapshot=snapshot,
            fast_imports=fast_imports,
            metered=metered,
        )

    def _instantiate(self, snapshot: Restorable | None) -> None:
        flavor = self._itinerary.current
        linked = link(self._setup, flavor)
        self._linked = linked
        self._written = WrittenPages()  # of this wasmtime memory: a new one is compared whole once
        self.store, self.host, self.instance, self.exports = linked.store, linked.host, linked.instance, linked.exports
        self.memory: wasmtime.Memory | None = linked.memory
        if snapshot is not None:
            linked.abi.resume()
            load_snapshot(linked, self.image, flavor, snapshot, self.memory_view)
        else:
            linked.abi.start(linked.budget.guarded)

    # ---- what it is -------------------------------------------------------------------------------
    @property
    def flavor(self) -> Flavor:
        """Which build and engine runs the next message (flavors.py)."""
        if self._settling:
            self._settle()  # only plans the move: it happens when the next message comes
        return self._itinerary.next

    @property
    def has_handle(self) -> bool:
        return "handle" in self.exports and self.memory is not None

    @property
    def memory_size(self) -> int:
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def memory_view(self) -> memoryview:
        """Zero-copy view of linear memory (valid until the memory grows)."""
        buf = (ctypes.c_ubyte * self.memory_size).from_address(self.host.base())
        return memoryview(buf).cast("B")

    def memory_sha256(self) -> str:
        return hashlib.sha256(self.memory_view()).hexdigest()

    @property
    def stdout(self) -> bytes:
        return bytes(self.host.stdout)

    @property
    def python_imports(self) -> int:
        """How many of the image's imports Python serves (the helper module serves the hot ones)."""
        return len(self._linked.callbacks)

    # ---- snapshots ----------------------------------------------------------------------------------
    def fork(self) -> Snapshot:
        """An unnamed copy of the current state for a throwaway instance (a dry-run): it skips the
        sha256 that names published snapshots and leaves the rollback checkpoint alone."""
        return self._unnamed()

    def snapshot(self) -> Snapshot:
        """The current state; it also becomes the rollback checkpoint (the journal restarts)."""
        snap = Snapshot.from_memory(self.memory_view(), self.host.state.to_dict())
        self.checkpoint(snap)
        return snap

    def snapshot_in_background(self, then: Callable[[Snapshot], None] | None = None) -> PendingSnapshot:
        """`snapshot()` with the hashing and compression (and `then`, e.g. storing it) moved off this
        thread: only a copy of the memory is made here. It is also the rollback checkpoint."""
        copy = SparseCopy.of(self.memory_view(), self.host.base())
        pending = PendingSnapshot(copy, self.host.state.to_dict(), then)
        self.checkpoint(pending)
        return pending

    def snapshot_chunks(self, then: Callable[[Taken], None] | None = None) -> PendingChunks:
        """An incremental snapshot (chunked.py): only chunks changed since this instance's previous
        one are copied here, then named and stored in the background. It is also the rollback
        checkpoint, read back from the shadow without compression."""
        address, size = self.host.base(), self.memory_size
        written = self._written.take_written(address, size)  # None: compare every chunk
        pending, copy = take(self.shadow, address, size, self.host.state.to_dict(), then, written)
        self._written.protect(pending.changed)  # not where this slot wrote: the next one will too
        # Only the rollback point moves: an instance away from home (metered after slow messages)
        # stays there as its itinerary says, instead of a re-instantiation at every snapshot.
        self._journal.restart(copy)
        return pending

    def checkpoint(self, snapshot: Restorable | PendingSnapshot | None = None) -> None:
        """Make the current state the rollback point (done every CHECKPOINT_EVERY messages and
        whenever a snapshot is taken, which the caller does anyway)."""
        # An internal checkpoint is never published, so it skips the ~1 ms/MiB hash that names a snapshot.
        self._journal.restart(snapshot or self._unnamed())
        if self._itinerary.away:
            self.close()  # back home after messages that needed metering or suspending
            self._itinerary.go_home()
            self._instantiate(self._journal.checkpoint())

    def _unnamed(self) -> Snapshot:
        return Snapshot.from_memory(self.memory_view(), self.host.state.to_dict(), sha256="unnamed")

    # ---- calls --------------------------------------------------------------------------------------
    def call(self, export: str, *args: Any) -> Any:
        """Call an export directly (tiny modules, `_start`); errors map to the WasmError family."""
        func = self.exports.get(export)
        if not isinstance(func, wasmtime.Func):
            raise ModuleError(f"image has no exported function {export!r}")
        raw = self.host.fn.get(export)
        return self._linked.budget.guarded(lambda: raw(*args) if raw else func(self.store, *args))

    def run_start(self) -> int:
        """Run `_start` (a WASI command) and return its exit code."""
        try:
            self.call("_start")
        except ProcExitError as done:
            return done.code
        return 0

    def handle(self, msg_json: str, env_json: str) -> str:
        """Evaluate one message; on any failure the state is exactly as before and an error is raised.

        The epoch engine has no fuel counter. A message it finishes in less CPU time (this thread's)
        than the fuel limit could possibly take (budget.FUEL_RATE_MAX) is certainly within the limit;
        any other message (including one stopped by the deadline) is redone on the metered engine,
        whose verdict is deterministic. CPU time, not wall time: a wait for the GIL (the compute
        thread's Python while this runs on the wasm-ahead thread) or for a core (a loaded machine)
        burns no fuel, and a redo costs a rebuild and a stay on the slow engine (hundreds of ms). A
        message that needs to suspend in the fast variant is redone on the original image. Results
        never depend on which flavour ran: all leave the same memory."""
        if not self.has_handle:
            raise ModuleError("image exports no `handle`")
        fuel = self.limits.fuel
        if self._settling:
            self._settle()
        if self._itinerary.stay_over:
            self.checkpoint()  # home again (deferred to here: a snapshot taken meanwhile did it for free)
        redone = False
        while True:
            started = time.thread_time()
            try:
                raw = self._handle_once(msg_json, env_json, fuel)
                seconds = time.thread_time() - started
                if self._linked.budget.fits(seconds, fuel):
                    if redone and quick(seconds, fuel):
                        self._itinerary.light()  # metered, it ran under the bound: not heavy
                    break
                redo = Flavor.METERED  # undecided: it may have used more than its fuel
            except DeadlineReached:
                redo = Flavor.METERED
            except SuspendNeeded:
                redo = Flavor.ORIGINAL
            except WasmError:
                # An error is a verdict too: after more CPU than the fuel bound the metered engine may
                # have run out of fuel first (the wall deadline is no bound: its ticker can run late).
                if self._linked.budget.fits(time.thread_time() - started, fuel):
                    self._rebuild()
                    raise
                redo = Flavor.METERED
            self._rebuild()  # the state before this message
            self.redos += redo == Flavor.METERED
            redone = redo == Flavor.METERED
            self._leave_home(redo)
        self._journal.record(msg_json, env_json)
        self._itinerary.ran_one()
        if self._journal.full:
            self.checkpoint()
        return raw

    def _handle_once(self, msg_json: str, env_json: str, fuel: int | None) -> str:
        msg, env = msg_json.encode() + b"\x00", env_json.encode() + b"\x00"
        linked = self._linked
        self.host.inputs = (msg_json, env_json)  # WeaveDrive's admissibility reads the process tags
        result = linked.budget.guarded(lambda: linked.abi.handle(msg, env), fuel)
        self.last_gas_used = linked.budget.gas_used(fuel)
        return result

    def _settle(self) -> None:
        """Follow the image's home while its variant is prepared: the move itself is the usual one
        home (a checkpoint, then a fresh instance of the new build from it), before the next message."""
        settled = not self.image.preparing  # read first: once settled, `home` is final
        home = self.image.builds.home
        if settled:
            self._settling = False
        if home != self._itinerary.home:
            self._itinerary.rehome(home)

    def _leave_home(self, flavor: Flavor) -> None:
        """Continue on another flavour for a while (flavors.Itinerary says how long)."""
        if flavor != self._itinerary.current:
            # Carry the current state over to a fresh instance on the other flavour.
            snap = self._unnamed()
            self.close()
            self._itinerary.current = flavor
            self._instantiate(snap)
            self._journal.restart(snap)
        self._itinerary.arrive(flavor)

    def _rebuild(self) -> None:
        """Fresh wasmtime instance from the checkpoint, then replay the journal."""
        journal = list(self._journal.messages)
        self.close()
        self._instantiate(self._journal.checkpoint())
        for msg_json, env_json in journal:
            self._handle_once(msg_json, env_json, None)

    def close(self) -> None:
        """Free the linear memory now rather than when the garbage collector finds the cycles."""
        self.host.fn.clear()
        self._written.close()
        self.store.close()
