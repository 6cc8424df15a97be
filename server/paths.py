"""HyperBEAM-style request paths, parsed into plain values so app.py only routes.

`/<pid>~process@1.0/<action>[/<slot>][/<key>/...][~json@1.0]`, `/~process@1.0/schedule` (spawn) and
`/~meta@1.0/info`. Parsing and reading into a state live here together because both define what a
path means; nothing in this module knows HTTP or the Node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from aonode.engine.errors import BadInput, NotFound
from aonode.engine.lua.reads import LuaCall, is_lua_segment
from aonode.server.codec import parse_int

PROCESS_DEVICE = "~process@1.0"
META_DEVICE = "~meta@1.0"
JSON_SUFFIX = "~json@1.0"
JSON_CALLS = frozenset({"serialize"})  # `serialize~json@1.0`: the whole value, as JSON

# Actions a process path may name; every answer can be read into by deeper keys, and `compute`
# also takes a slot.
ACTIONS = frozenset({"schedule", "slot", "snapshot", "init", "compute", "now"})
STATE_ACTIONS = frozenset({"compute", "now"})
META_KEYS = frozenset({"info"})

_PID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_INT = re.compile(r"^-?[0-9]+$")
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")

# Friendly names for places in a state that HyperBEAM clients use (compared lowercased).
_ALIASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("results", "outbox"): ("results", "messages"),
}


@dataclass(frozen=True)
class ProcessPath:
    """A request about one process (`pid` None: the spawn path `/~process@1.0/schedule`)."""

    pid: str | None
    action: str
    slot: int | None = None
    keys: tuple[str, ...] = ()
    as_json: bool = False
    frm: int | None = None
    to: int | None = None
    lua: LuaCall | None = None  # `.../~lua@5.3a&module=<id>/<function>`: a dynamic read of the state


@dataclass(frozen=True)
class MetaPath:
    """A request about the node itself (`/~meta@1.0/info`)."""

    key: str
    keys: tuple[str, ...] = ()
    as_json: bool = False


def parse(path: str, query: Mapping[str, str] | None = None) -> ProcessPath | MetaPath:
    """Parse a URL path (already percent-decoded) and its query. NotFound/BadInput on anything else."""
    query = query or {}
    segments, as_json = _split(path)
    if not segments:
        raise NotFound("no such path; try /~meta@1.0/info or /<pid>~process@1.0/now")
    head, rest = segments[0], segments[1:]
    if head == META_DEVICE:
        return _parse_meta(rest, as_json)
    if _ID.match(head) and rest and rest[0].lower() in ACTIONS:
        head += PROCESS_DEVICE  # `/<pid>/now/...`: a process id names its device implicitly
    if not head.endswith(PROCESS_DEVICE):
        raise NotFound(f"no such path: /{head}; process paths look like /<pid>{PROCESS_DEVICE}/now")
    pid = head[: -len(PROCESS_DEVICE)] or None
    if pid is not None and not _PID.match(pid):
        raise BadInput(f"not a process id: {pid!r:.80}")
    if not rest:
        raise NotFound(f"name an action after {PROCESS_DEVICE}: one of {', '.join(sorted(ACTIONS))}")
    action, rest = rest[0].lower(), rest[1:]
    if action not in ACTIONS:
        raise NotFound(f"unknown action {action!r}; one of {', '.join(sorted(ACTIONS))}")
    if pid is None and action != "schedule":
        raise NotFound(f"/{PROCESS_DEVICE}/{action} needs a process id: /<pid>{PROCESS_DEVICE}/{action}")
    if action == "schedule":
        if pid is None and rest:
            raise NotFound(f"nothing below /{PROCESS_DEVICE}/schedule")
        return ProcessPath(
            pid, action, keys=tuple(rest), as_json=as_json, frm=_query_int(query, "from"), to=_query_int(query, "to")
        )
    if action not in STATE_ACTIONS:
        return ProcessPath(pid, action, keys=tuple(rest), as_json=as_json)  # e.g. /slot/current
    slot = _query_int(query, "slot")
    if rest and _INT.match(rest[0]):
        if action != "compute":
            raise NotFound("only /compute takes a slot: /compute/<slot>")
        path_slot = _slot(rest[0], "slot in the path")
        if slot is not None and slot != path_slot:
            raise BadInput(f"two different slots: /compute/{path_slot} and ?slot={slot}")
        slot, rest = path_slot, rest[1:]
    if slot is not None and action != "compute":
        raise BadInput("only /compute takes a slot; /now always computes to the latest slot")
    lua = None
    if rest and is_lua_segment(rest[0]):
        if len(rest) < 2:
            raise BadInput(f"name the function after {rest[0]}: {rest[0]}/<function>")
        lua = LuaCall.parse(rest[0], rest[1], {k: v for k, v in query.items() if k != "slot"})
        rest = rest[2:]
    return ProcessPath(pid, action, slot=slot, keys=tuple(rest), as_json=as_json, lua=lua)


@lru_cache(maxsize=4096)
def parse_cached(path: str, query_string: str = "") -> ProcessPath | MetaPath:
    """`parse` of a path and its raw query string, remembered: front ends poll the same few paths."""
    return parse(path, dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {})


def _split(path: str) -> tuple[list[str], bool]:
    """Segments without empty parts, and whether a `~json@1.0` suffix asked for JSON.

    Front ends write it three ways: `.../balances~json@1.0`, `.../balances/~json@1.0` and, most
    often, `.../balances/serialize~json@1.0` (a call of the JSON device's `serialize`).
    """
    segments = [s for s in path.split("/") if s]
    as_json = False
    if segments and segments[-1].lower().endswith(JSON_SUFFIX):
        as_json = True
        last = segments[-1][: -len(JSON_SUFFIX)]
        segments = segments[:-1] + ([last] if last and last.lower() not in JSON_CALLS else [])
    return segments, as_json


def _parse_meta(rest: list[str], as_json: bool) -> MetaPath:
    if not rest or rest[0].lower() not in META_KEYS:
        raise NotFound(f"{META_DEVICE} answers: {', '.join(sorted(META_KEYS))}")
    return MetaPath(rest[0].lower(), keys=tuple(rest[1:]), as_json=as_json)


def _slot(text: str, what: str) -> int:
    return parse_int(text, what)


def _query_int(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    return _slot(text.strip(), f"?{name}=")


def select(value: object, keys: Sequence[str]) -> object:
    """Read `keys` into a state: map keys exactly, else ignoring case when that names one key; lists
    by 1-based index (as Lua counts).

    `results/data` is the process's printed output (`results.Output.data`, or `Output` when it is
    text); other aliases are in `_ALIASES`. NotFound names the first missing key.
    """
    lowered = tuple(k.lower() for k in keys)
    if lowered[:2] == ("results", "data"):
        output = _walk(value, ("results", "output"))
        if isinstance(output, Mapping):
            return _walk(output, ("data",) + tuple(keys[2:]), done=("results", "output"))
        if keys[2:]:
            raise NotFound(f"no key '{'/'.join(keys[:3])}': results/data is a leaf")
        return output
    for alias, target in _ALIASES.items():
        if lowered[: len(alias)] == alias:
            return _walk(value, target + tuple(keys[len(alias) :]))
    return _walk(value, tuple(keys))


def _walk(value: object, keys: tuple[str, ...], done: tuple[str, ...] = ()) -> object:
    for i, key in enumerate(keys):
        found, value = _child(value, key, done + keys[: i + 1])
        if not found:
            raise NotFound(f"no key '{'/'.join(done + keys[: i + 1])}' in this state")
    return value


def _child(value: object, key: str, where: tuple[str, ...]) -> tuple[bool, object]:
    """A map's key exactly as written; else the one key equal to it ignoring case (keys are kept as
    the process wrote them, so `ALICE` and `alice` may both exist: then NotFound names them)."""
    if isinstance(value, Mapping):
        if key in value:
            return True, value[key]
        wanted = key.lower()
        matches = [name for name in value if isinstance(name, str) and name.lower() == wanted]
        if len(matches) > 1:
            names = ", ".join(sorted(matches)[:10])
            raise NotFound(
                f"no key '{'/'.join(where)}' in this state; it matches {len(matches)} keys "
                f"ignoring case: {names}; name one exactly"
            )
        return (True, value[matches[0]]) if matches else (False, None)
    if isinstance(value, list) and _INT.match(key) and len(key) <= 20:
        index = int(key)
        if 1 <= index <= len(value):
            return True, value[index - 1]
    return False, None
