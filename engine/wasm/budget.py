"""How long a call into wasm may run, and what its failure means.

The metered flavour gets exactly its fuel. The others get a wall-clock deadline no call within that
fuel can reach (FUEL_RATE_MAX): the epoch's for the image itself, the interrupt flag for the variant
(the ticker sets it). A call that reaches it is undecided, and the instance redoes it metered.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime

from aonode.engine.errors import ComputeLimitExceeded, WasmError, WasmTrap
from aonode.engine.wasm.cxx import Unwind
from aonode.engine.wasm.fastcall import take_parked
from aonode.engine.wasm.flavors import Flavor
from aonode.engine.wasm.host import ProcExit
from aonode.engine.wasm.ticker import TICK_SECONDS, clear_deadline, keep_ticking, watch_deadline

UNLIMITED_FUEL = 2**62
NO_DEADLINE = 2**62
# wasmtime takes fuel and epoch deadlines as u64 and wraps larger ones (2**64 + 5 is 5): a cap past these
# is unlimited in effect (2**62 fuel is years of CPU), so it is clamped to them.
# No CPU burns more fuel per second than this, so a message that finishes in under fuel/FUEL_RATE_MAX
# seconds of its thread's CPU time used less than `fuel`. Fuel counts the original image's wasm
# operators, several of which can share one machine instruction; the fast variant ran a tight Lua loop
# at 2.3e10 fuel/s on the development machine (a 3,000,000-step `for` loop), so 4e11/s leaves a ~17x margin.
FUEL_RATE_MAX = 4e11
# The deadline is this many times that CPU time (the epoch engine's in wall-clock time; the variant's in
# its thread's CPU time, ticker.py: waits for a core or for the GIL never count): a call slowed meanwhile
# (a loaded machine, two compute threads and the snapshot encoders on two cores) is not cut short and
# redone metered (a rebuild and a stay on the slow engine: hundreds of ms); a runaway loop only runs
# this much longer before its metered redo, which takes far longer anyway.
DEADLINE_SLACK = 4


class DeadlineReached(WasmTrap):
    """The deadline (epoch or interrupt flag) passed: undecided, the message is redone metered."""


class ProcExitError(WasmTrap):
    def __init__(self, code: int) -> None:
        super().__init__(f"the image exited with code {code}")
        self.code = code


class Budget:
    """Runs calls on one store under a fuel limit, mapping every failure to the WasmError family."""

    def __init__(self, store: wasmtime.Store, flavor: Flavor) -> None:
        self.store = store
        self.flavor = flavor
        # Byte 0 of the variant's interrupt memory, once it is instantiated.
        self.interrupt: ctypes.Array[ctypes.c_ubyte] | None = None

    def fits(self, seconds: float, fuel: int | None) -> bool:
        """Whether a call that ran `seconds` of CPU time certainly stayed within `fuel` (always, when metered)."""
        return self.flavor == Flavor.METERED or quick(seconds, fuel)

    def gas_used(self, fuel: int | None) -> int:
        """Fuel the last call burnt; only the metered engine counts it (ao-loader reports 0 as well)."""
        if self.flavor != Flavor.METERED:
            return 0
        return _fuel(fuel) - self.store.get_fuel()

    def set(self, fuel: int | None) -> list | None:
        """Metered: exactly `fuel`. Otherwise a deadline no call within `fuel` can reach: the epoch's,
        or the variant's interrupt flag; either holds the ticker awake (returned: clear_deadline)."""
        fuel = None if fuel is None else _fuel(fuel)  # (a cap past a float's range overflowed below)
        if self.flavor == Flavor.METERED:
            self.store.set_fuel(_fuel(fuel))
        elif self.flavor == Flavor.VARIANT:
            assert self.interrupt is not None
            self.interrupt[0] = 0
            if fuel is not None:
                return watch_deadline(self.interrupt, DEADLINE_SLACK * fuel / FUEL_RATE_MAX, cpu=True)
        elif fuel is None:
            self.store.set_epoch_deadline(NO_DEADLINE)
        else:
            self.store.set_epoch_deadline(
                min(int(DEADLINE_SLACK * fuel / FUEL_RATE_MAX / TICK_SECONDS) + 2, NO_DEADLINE)
            )
            return keep_ticking()
        return None

    def guarded(self, fn: Callable[[], Any], fuel: int | None = None) -> Any:
        deadline = self.set(fuel)
        try:
            return fn()
        except (ProcExit, Unwind, WasmError, wasmtime.WasmtimeError, wasmtime.Trap) as err:
            if isinstance(err, (wasmtime.WasmtimeError, wasmtime.Trap)):
                err = take_parked() or err
            if self.interrupt is not None and self.interrupt[0]:
                raise DeadlineReached("deadline reached (interrupt flag)") from None
            raise _translate(err) from None
        finally:
            if deadline is not None:
                clear_deadline(deadline)


def quick(seconds: float, fuel: int | None) -> bool:
    """Whether `seconds` of a call's CPU time is under the bound that proves it within `fuel`."""
    return fuel is None or seconds < _fuel(fuel) / FUEL_RATE_MAX


def _fuel(fuel: int | None) -> int:
    """The fuel the metered engine gets: `fuel`, at most UNLIMITED_FUEL and at least 0 (wasmtime wraps
    past u64 both ways: -1 would be 2**64 - 1)."""
    return UNLIMITED_FUEL if fuel is None else max(0, min(fuel, UNLIMITED_FUEL))


def _translate(err: BaseException) -> BaseException:
    """Any failure inside wasm → the engine's WasmError family."""
    if isinstance(err, ProcExit):
        return ProcExitError(err.code)
    if isinstance(err, Unwind):
        return WasmTrap(f"uncaught exception or longjmp ({err.value})")
    if isinstance(err, wasmtime.Trap):
        return _map_trap(err)
    if isinstance(err, wasmtime.WasmtimeError):
        return WasmTrap(str(err))
    return err


def _map_trap(trap: wasmtime.Trap) -> WasmError:
    code = trap.trap_code
    text = str(trap).splitlines()[0] if str(trap) else "trap"
    if code == wasmtime.TrapCode.INTERRUPT:
        return DeadlineReached("epoch deadline reached")
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ComputeLimitExceeded("compute limit exceeded (out of fuel)")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return WasmTrap("wasm stack overflow")
    return WasmTrap(f"wasm trap: {text}")
