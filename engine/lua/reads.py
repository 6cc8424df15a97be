"""Dynamic reads: `.../now/~lua@5.3a&module=<id>/<function>` answers `function(state, request)`.

A computed state never changes, so an answer is a pure function of (process, slot, module,
function, arguments) and is kept in a small in-memory LRU under exactly that key; nothing is
written anywhere. Errors of the code itself (does not load, fails, runs out of instructions or
memory) are remembered the same way, so a runaway read costs its budget once per slot, not per
request. Errors of fetching the module are not remembered: the gateway may answer next time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aonode.engine import metrics
from aonode.engine.errors import AONodeError, BadInput
from aonode.engine.lua import sandbox
from aonode.engine.lua.modules import LuaModules

DEVICE = "lua@5.3a"
SEGMENT_PREFIX = "~" + DEVICE


@dataclass(frozen=True)
class LuaCall:
    """One call: the module, the global function, and the arguments the request carries."""

    module: str
    function: str
    args: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, segment: str, function: str, query: Mapping[str, str] | None = None) -> LuaCall:
        """`~lua@5.3a&module=<id>[&k=v...]` and the function name after it; query pairs are arguments too."""
        if not is_lua_segment(segment):
            raise BadInput(f"not a lua device segment: {segment!r:.80}")
        params = dict(parse_qsl(segment[len(SEGMENT_PREFIX) :].lstrip("&"), keep_blank_values=True))
        module = params.pop("module", "")
        if not module:
            raise BadInput(f"name the module: {SEGMENT_PREFIX}&module=<id>/<function>")
        if not function or not function.replace("_", "a").isalnum() or function[0].isdigit():
            raise BadInput(f"not a lua function name: {function!r:.80}")
        args = {**dict(query or {}), **params}
        return cls(module, function, tuple(sorted(args.items())))


def is_lua_segment(segment: str) -> bool:
    rest = segment[len(SEGMENT_PREFIX) :]
    return segment.lower().startswith(SEGMENT_PREFIX) and rest[:1] in ("", "&")


Key = tuple[str, int, str, str, tuple[tuple[str, str], ...]]


class LuaReads:
    """Runs dynamic reads over computed states and remembers their answers."""

    def __init__(
        self, modules: LuaModules, limits: sandbox.LuaLimits = sandbox.LuaLimits(), max_entries: int = 4096
    ) -> None:
        self.modules = modules
        self.limits = limits
        self.max_entries = max_entries
        self.runs = 0  # Lua executions since start; a read answered from memory does not count
        self._answers: OrderedDict[Key, tuple[bool, Any]] = OrderedDict()
        self._guard = threading.Lock()

    def read(self, state: Mapping[str, Any], call: LuaCall) -> Any:
        """`call.function(state, request)` for a state as `Node.compute` returns it."""
        pid, slot = str(state.get("process", "")), int(state.get("at-slot", -1))
        key: Key = (pid, slot, call.module, call.function, call.args)
        with self._guard:
            known = self._answers.get(key)
            if known is not None:
                self._answers.move_to_end(key)
        metrics.lua_read(ran=known is None)
        if known is None:
            known = self._run(state, call, pid, slot)
            with self._guard:
                self._answers[key] = known
                while len(self._answers) > self.max_entries:
                    self._answers.popitem(last=False)
        ok, value = known
        if not ok:
            raise type(value)(str(value))  # a fresh exception: a remembered one would grow its traceback
        return value

    def _run(self, state: Mapping[str, Any], call: LuaCall, pid: str, slot: int) -> tuple[bool, Any]:
        code = self.modules.code(call.module)  # fetch errors propagate and are not remembered
        request = {
            **dict(call.args),
            "path": call.function,
            "process": pid,
            "slot": slot,
            "device": DEVICE,
            "module": call.module,
        }
        with self._guard:
            self.runs += 1
        try:
            return True, sandbox.run(code, call.module, call.function, state, request, self.limits)
        except AONodeError as err:
            return False, err
