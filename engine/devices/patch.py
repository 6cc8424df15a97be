"""patch@1.0: lets a process publish readable state by sending itself patch messages.

An AOS process does `Send({device='patch@1.0', cache={balances=Balances}})`. That message is not
mail for anyone: this device takes it out of the outbox and deep-merges its payload into
`state.cache`, which HTTP reads serve as `/now/cache/balances`.

Decisions (see docs reference-semantics §3):
- Only the payload merges, never the envelope (Target, Anchor, protocol tags, `device`, ...).
  A payload key `cache` is the cache itself, so its table merges at the cache root; any other
  payload key merges at the root too.
- Keys are kept exactly as the process wrote them, at every level (`ALICE` and `alice` are two
  keys; an address stays an address). HTTP reads match a path segment exactly first and
  case-insensitively only when no exact key exists (server/paths.py). The same name given twice
  (a top-level key and a tag, or at the root and inside `cache`) with different values collides: the
  collision is reported in `ctx.results["Patch-Errors"]` and that key is not set, because picking one
  silently would make state depend on table iteration order in Lua.
- Maps merge deep, scalars and lists replace, keys are never deleted. AOS encodes an empty Lua
  table as `[]`, so an emptied table arrives as a list and replaces what was there.
- A tag value that is a JSON-encoded object (a string starting with `{`) is decoded: clients that
  cannot send nested tags encode the table as JSON. Strings inside tables are never decoded.
- What was merged is appended to `ctx.results["Patches"]`, in order, so the store can rebuild the
  cache of any slot by replaying `merge` over those payloads.
- Where patches are read from is the definition's `Patch-From`, as HyperBEAM's patch@1.0 reads it: a
  path in the slot's results (`/results/outbox`, the default genesis-wasm@1.0 sets; `/results/spawns`;
  `/results/assignments`; a `base:` prefix names the process state, as here). Patches are taken out
  of that list only; patch messages anywhere else stay ordinary messages. Any other path is refused
  at spawn (`patch_source`), since this device would otherwise silently patch nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aonode.engine.devices.base import DeviceInfo, ProcessState, Signal, SlotContext
from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store.cache_log import merge

__all__ = ["NAME", "Patch", "apply_patches", "cache_keys", "merge", "patch_source", "payload"]

NAME = "patch@1.0"
INFO = DeviceInfo(NAME, ("compute",), about="merges patch messages from the outbox into the readable cache")

# Message fields and protocol tags that address or describe a message rather than carry state.
ENVELOPE = frozenset(
    key.lower()
    for key in (
        "Target",
        "Anchor",
        "Data",
        "Tags",
        "TagArray",
        "Id",
        "From",
        "Owner",
        "Signature",
        "Data-Protocol",
        "Variant",
        "Type",
        "Reference",
        "From-Process",
        "From-Module",
        "Read-Only",
        "Hash-Chain",
        "Timestamp",
        "Nonce",
        "Epoch",
        "Forwarded-By",
        "Pushed-For",
        "Cron",
        "Block-Height",
        "Reply-To",
        "Push-Depth",
        "device",
        "method",
        "commitments",
        "Module",  # AOS's `Spawn` names the image: a spawn read as a patch (Patch-From /results/spawns)
    )
)

CACHE_KEY = "cache"
# `Patch-From` paths this node reads, to the result list each names.
PATCH_SOURCES: dict[tuple[str, ...], str] = {
    ("results", "outbox"): "Messages",
    ("results", "spawns"): "Spawns",
    ("results", "assignments"): "Assignments",
}
DEFAULT_SOURCE = "Messages"


@dataclass
class Payload:
    """The state one patch message carries, with the keys dropped because they collided."""

    values: dict[str, Any]
    errors: list[str]


def _marks_patch(name: str, value: Any) -> bool:
    lowered = name.lower()
    return (lowered == "device" and value.lower() == NAME) or (lowered == "method" and value.upper() == "PATCH")


def _is_patch(message: dict[str, Any]) -> bool:
    """Whether any of the message's `_entries` marks it a patch (looked at in place: every outbox
    message of every slot comes through here, most of them mail with many tags). Only a name of
    six letters (`device`, `method`) with a text value can."""
    for key, value in message.items():
        if isinstance(key, str) and len(key) == 6 and isinstance(value, str) and _marks_patch(key, value):
            return True
    tags = message.get("Tags")
    pairs = tags.items() if isinstance(tags, dict) else ()
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict):
                name, value = tag.get("name"), tag.get("value")
                if isinstance(name, str) and len(name) == 6 and isinstance(value, str) and _marks_patch(name, value):
                    return True
    for name, value in pairs:
        if isinstance(name, str) and len(name) == 6 and isinstance(value, str) and _marks_patch(name, value):
            return True
    return False


def _entries(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """A legacy outbox message's (name, value) pairs: top-level keys first, then its Tags."""
    pairs = [(key, value) for key, value in message.items() if key != "Tags" and isinstance(key, str)]
    tags = message.get("Tags")
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and isinstance(tag.get("name"), str) and "value" in tag:
                pairs.append((tag["name"], tag["value"]))
    elif isinstance(tags, dict):
        pairs.extend((key, value) for key, value in tags.items() if isinstance(key, str))
    return pairs


def _decode_tag_value(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, dict):
            return decoded
    return value


def keyed(value: Any) -> Any:
    """`value` with every map key as text (JSON keys are text), names kept exactly as written."""
    if isinstance(value, list):
        return [keyed(item) for item in value]
    if isinstance(value, dict):
        return {str(k): keyed(v) for k, v in value.items()}
    return value


def _pairs_to_map(pairs: list[tuple[str, Any]], path: str, errors: list[str]) -> dict[str, Any]:
    """Pairs to a map. A name given more than once is kept only when every copy carries the same
    value, so no value is ever chosen over another."""
    groups: dict[str, list[Any]] = {}
    for name, value in pairs:
        groups.setdefault(name, []).append(keyed(value))
    out: dict[str, Any] = {}
    for name, values in groups.items():
        if all(_same(v, values[0]) for v in values[1:]):
            out[name] = values[0]
        else:
            errors.append(f"key {name!r} is given {len(values)} times with different values at {path}; not set")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it (so `1`, `1.0` and `true` are three different values)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def payload(message: dict[str, Any]) -> Payload:
    """The state a patch message carries, `cache` unwrapped to the root."""
    errors: list[str] = []
    pairs: list[tuple[str, Any]] = []
    for name, value in _entries(message):
        if name.lower() in ENVELOPE:
            continue
        value = _decode_tag_value(value)
        if name.lower() != CACHE_KEY:
            pairs.append((name, value))
        elif isinstance(value, dict):
            pairs.extend((str(key), item) for key, item in value.items())
        else:
            errors.append(f"'{name}' must be a table, got {type(value).__name__}; not set")
    return Payload(values=_pairs_to_map(pairs, CACHE_KEY, errors), errors=errors)


def patch_source(process: Message) -> str:
    """The result list `Patch-From` names (default the outbox); BadInput for a path this node
    does not read patches from (checked at spawn)."""
    raw = process.tag("Patch-From")
    source = _source(raw)
    if source is None:
        known = ", ".join("/" + "/".join(k) for k in PATCH_SOURCES)
        raise BadInput(f"Patch-From {raw!r}: this node reads patches from {known}")
    return source


def _source(raw: str | None) -> str | None:
    if raw is None:
        return DEFAULT_SOURCE
    parts = tuple(p.lower() for p in raw.strip().removeprefix("base:").split("/") if p)
    return PATCH_SOURCES.get(parts)


def apply_patches(state: ProcessState, ctx: SlotContext) -> list[dict[str, Any]]:
    """Take the patches out of the result list `Patch-From` names (the outbox by default), merge
    them into `state.cache`."""
    results: dict[str, Any] = ctx.results
    # A definition stored before Patch-From was checked at spawn keeps the outbox, as it had.
    source = _source(state.process.tag("Patch-From")) or DEFAULT_SOURCE
    outbox = results.get(source)
    if not isinstance(outbox, list):
        return []
    kept: list[Any] = []
    allowed = cache_keys(state.process)
    ignored: list[str] = []
    applied: list[dict[str, Any]] = []
    errors: list[str] = []
    for index, message in enumerate(outbox):
        if not (isinstance(message, dict) and _is_patch(message)):
            kept.append(message)
            continue
        found = payload(message)
        errors.extend(f"patch {index}: {error}" for error in found.errors)
        values = _only_cache_keys(found.values, allowed)
        ignored.extend(sorted(set(found.values) - set(values)))
        merge(state.cache, values)
        applied.append(values)
    results[source] = kept
    # Extend rather than assign: a second pass over the same message must not lose the record.
    results.setdefault("Patches", []).extend(applied)
    if errors:
        results.setdefault("Patch-Errors", []).extend(errors)
    if ignored:
        results.setdefault("Patch-Ignored", []).extend(ignored)
    return applied


def cache_keys(process: Message) -> frozenset[str] | None:
    """The process's `Cache-Keys` (comma-separated, case-insensitive): the only top-level keys a
    patch may publish. None when the definition does not restrict them."""
    raw = process.tag("Cache-Keys")
    if not raw:
        return None
    return frozenset(k.strip().lower() for k in raw.split(",") if k.strip())


def _only_cache_keys(values: dict[str, Any], allowed: frozenset[str] | None) -> dict[str, Any]:
    return values if allowed is None else {k: v for k, v in values.items() if k.lower() in allowed}


@dataclass(frozen=True)
class Patch:
    name: str = NAME

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def compute(self, state: ProcessState, ctx: SlotContext) -> Signal:
        apply_patches(state, ctx)
        return Signal.OK
