"""Run untrusted Lua read functions (`~lua@5.3a`) in a fresh, restricted Lua 5.3 per call.

Why a fresh runtime each time: nothing a read does can outlive it (no globals carried to the next
read, no shared metatables), so a read persists nothing. What the code can reach is only the table
built below: no io, os, require, load, dofile, loadfile, package, debug, string.dump or Python.

Limits: an instruction budget counted by a debug hook installed from the trusted side (new
coroutines inherit it; `pcall`, `xpcall` and `coroutine.resume` re-raise once the budget is spent,
so catching the error does not buy more time), and a memory cap on top of what the state needs.
`setmetatable` refuses `__gc`, because finalizers run with hooks off and could loop unseen.
Lua executes with the GIL released (lupa), so a long read never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lupa.lua53 as lua53

from aonode.engine.errors import BadInput, ComputeLimitExceeded, MemoryLimitExceeded, NotFound

LUA_VERSION = "5.3"
_HOOK_STEP = 1000  # instructions between two hook calls

# The trusted prelude: builds the sandbox environment and the counting hook. It runs with the full
# standard library, before any untrusted code, and hands back only functions that close over it.
_PRELUDE = r"""
local budget, step = ...
local spent, exceeded = 0, false
local LIMIT = "instruction limit exceeded"
local function hook()
  spent = spent + step
  if exceeded or spent > budget then exceeded = true; error(LIMIT, 0) end
end
local function guard(...)
  if exceeded then error(LIMIT, 0) end
  return ...
end
local function copy(t, drop)
  local out = {}
  for k, v in pairs(t) do if not (drop and drop[k]) then out[k] = v end end
  return out
end
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, rawequal = rawequal,
  rawget = rawget, rawlen = rawlen, rawset = rawset, select = select, tonumber = tonumber,
  tostring = tostring, type = type, getmetatable = getmetatable, _VERSION = _VERSION,
  print = function() end,
  table = copy(table), utf8 = copy(utf8),
  string = copy(string, { dump = true }),
  math = copy(math, { random = true, randomseed = true }),
  coroutine = copy(coroutine),
}
local pcall_, xpcall_, resume_ = pcall, xpcall, coroutine.resume
env.pcall = function(...) return guard(pcall_(...)) end
env.xpcall = function(...) return guard(xpcall_(...)) end
env.coroutine.resume = function(...) return guard(resume_(...)) end
-- debug.sethook keeps one hook per coroutine: every coroutine the code makes gets the same one.
env.coroutine.create = function(f)
  local co = coroutine.create(f)
  debug.sethook(co, hook, "", step)
  return co
end
env.coroutine.wrap = function(f)
  local co = env.coroutine.create(f)
  return function(...)
    local results = table.pack(resume_(co, ...))
    guard()
    if not results[1] then error(results[2], 0) end
    return table.unpack(results, 2, results.n)
  end
end
env.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then error("__gc metamethods are not allowed", 2) end
  return setmetatable(t, mt)
end
env._G = env
local strings = getmetatable("")
strings.__index = env.string  -- ("").dump must not reach the real string.dump
strings.__metatable = false  -- and the string metatable stays as it is
local function load_module(code, name)
  local chunk, err = load(code, "=" .. name, "t", env)
  if not chunk then return false, err end
  return pcall(chunk)
end
local function call(fname, state, request)
  local f = rawget(env, fname)
  if type(f) ~= "function" then return false, "aonode:no-such-function" end
  return pcall(f, state, request)
end
local function start() debug.sethook(hook, "", step) end
local function stop() debug.sethook() end
local function was_exceeded() return exceeded end
return load_module, call, start, stop, was_exceeded
"""


@dataclass(frozen=True)
class LuaLimits:
    """How much one read may use; beyond these it fails and the node goes on."""

    instructions: int = 20_000_000
    memory: int = 64 * 1024 * 1024  # bytes, on top of the state handed in
    result_depth: int = 64
    result_items: int = 1_000_000


def run(
    code: str,
    name: str,
    function: str,
    state: Mapping[str, Any],
    request: Mapping[str, Any],
    limits: LuaLimits = LuaLimits(),
) -> Any:
    """Run module `code` once, then `function(state, request)`; its first return value as plain
    Python (tables with keys 1..n become lists, other tables dicts with string keys, nil None)."""
    runtime = lua53.LuaRuntime(register_eval=False, register_builtins=False, max_memory=0, unpack_returned_tuples=True)
    runtime.set_overflow_handler(float)  # integers past 64 bits arrive as floats, as in JSON
    load_module, call, start, stop, was_exceeded = runtime.execute(_PRELUDE, limits.instructions, _HOOK_STEP)
    lua_state = runtime.table_from(_plain(state), recursive=True)
    lua_request = runtime.table_from(_plain(request), recursive=True)
    runtime.set_max_memory(runtime.get_memory_used() + limits.memory)
    stage, out = "load", []
    try:
        start()
        ok, *out = _values(load_module(code, name))
        if ok:
            stage = "call"
            ok, *out = _values(call(function, lua_state, lua_request))
        stop()
    except lua53.LuaMemoryError as err:
        raise MemoryLimitExceeded(f"lua module {name}: memory limit of {limits.memory} bytes exceeded") from err
    except lua53.LuaError as err:  # an error escaping the prelude's pcall: treat like one inside it
        ok, out = False, [str(err)]
    finally:
        runtime.set_max_memory(0)
    if was_exceeded():
        raise ComputeLimitExceeded(f"lua module {name}: {function} ran past {limits.instructions} instructions")
    if ok:
        return to_python(out[0] if out else None, limits)
    message = str(out[0]) if out and out[0] is not None else "error"
    if "not enough memory" in message:
        raise MemoryLimitExceeded(f"lua module {name}: memory limit of {limits.memory} bytes exceeded")
    if stage == "load":
        raise BadInput(f"lua module {name} does not load: {message}")
    if message == "aonode:no-such-function":
        raise NotFound(f"lua module {name} defines no global function {function!r}")
    raise BadInput(f"lua module {name}: {function} failed: {message}")


def _values(returned: Any) -> tuple[Any, ...]:
    """lupa gives several Lua return values as a tuple and one as itself."""
    return returned if isinstance(returned, tuple) else (returned,)


def _plain(value: Any) -> Any:
    """The state as Lua-friendly values: bytes as text, tuples as lists, None dropped from tables."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return value


def to_python(value: Any, limits: LuaLimits = LuaLimits()) -> Any:
    """A Lua value as JSON-able Python; functions, threads and userdata cannot be answered."""
    budget = [limits.result_items]
    return _convert(value, limits.result_depth, budget)


def _convert(value: Any, depth: int, budget: list[int]) -> Any:
    kind = lua53.lua_type(value)
    if kind is None:  # already Python: nil, booleans, numbers, strings
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value
    if kind != "table":
        raise BadInput(f"a lua read cannot answer a {kind}")
    if depth <= 0:
        raise BadInput("the lua result nests too deep (a table that contains itself?)")
    items = list(value.items())
    budget[0] -= len(items)
    if budget[0] < 0:
        raise BadInput("the lua result has too many entries")
    keys = [k for k, _ in items]
    if (
        keys
        and all(isinstance(k, int) and not isinstance(k, bool) for k in keys)
        and sorted(keys) == list(range(1, len(keys) + 1))
    ):
        ordered = sorted(items, key=lambda kv: kv[0])
        return [_convert(v, depth - 1, budget) for _, v in ordered]
    return {_key(k): _convert(v, depth - 1, budget) for k, v in items}


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (str, int, float)):
        return str(key)
    raise BadInput(f"a lua result table has a key of type {lua53.lua_type(key) or type(key).__name__}")
