"""What the dashboard shows, gathered from the Node's public reads only (info, init, slot, compute,
schedule_page), so the pages never see anything a JSON client could not read itself.

Nothing here computes: results are shown for slots already computed, later ones as pending.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from aonode.engine.answers import JSON, InitInfo, ModuleInfo, NodeInfo, ProcessView, SchedulePage, SlotInfo
from aonode.engine.errors import NotFound
from aonode.engine.progress import PROGRESS

PAGE = 20  # schedule entries per page
MAX_PROCESSES = 200  # rows in the process list
MAX_TREE = 400  # cache entries one page renders before it says "more"


class Reads(Protocol):
    """The Node methods the dashboard uses (a subset of the server's NodeAPI)."""

    def info(self) -> NodeInfo: ...
    def init(self, pid: str) -> InitInfo: ...
    def slot(self, pid: str) -> SlotInfo: ...
    def compute(self, pid: str, slot: int | None = None) -> ProcessView: ...
    def schedule_page(self, pid: str, frm: int | None, to: int | None) -> SchedulePage: ...


@dataclass(frozen=True)
class ProcessRow:
    pid: str
    module: str
    current: int
    computed: int
    last_activity: float | None  # seconds since the epoch, of the last assignment

    @property
    def pending(self) -> int:
        return max(0, self.current - self.computed)


@dataclass(frozen=True)
class Overview:
    address: str
    version: str
    started: float
    devices: list[str]
    modules: list[ModuleInfo]
    processes: list[ProcessRow]
    total_processes: int
    tasks: list[dict[str, object]] = field(default_factory=list)

    @property
    def uptime(self) -> float:
        return time.time() - self.started


def tag(message: Mapping[str, Any], name: str) -> str | None:
    """A tag of a legacy-JSON message, by case-insensitive name."""
    for entry in message.get("Tags") or []:
        if isinstance(entry, Mapping) and str(entry.get("name", "")).lower() == name.lower():
            return str(entry.get("value"))
    return None


def overview(node: Reads, started: float) -> Overview:
    info = node.info()
    pids: list[str] = list(info.get("processes") or [])
    return Overview(
        address=info["address"],
        version=info["version"],
        started=started,
        devices=list(info.get("devices") or []),
        modules=list(info.get("modules") or []),
        processes=[process_row(node, pid, _names(info)) for pid in pids[:MAX_PROCESSES]],
        total_processes=len(pids),
        tasks=PROGRESS.tasks(),
    )


def _names(info: NodeInfo) -> dict[str, str]:
    """Catalogued image names by module id: a definition names its image by id."""
    return {module_id: m["name"] for m in info.get("modules") or [] if (module_id := m.get("id"))}


def process_row(node: Reads, pid: str, names: dict[str, str] | None = None) -> ProcessRow:
    """One process as the list shows it; its image by catalogue name when the node knows the id."""
    names = _names(node.info()) if names is None else names
    definition = node.init(pid)["definition"]
    slot = node.slot(pid)
    computed = node.compute(pid, None).get("at-slot", -1)
    stamp = slot.get("timestamp")
    module = tag(definition, "Module") or "?"
    return ProcessRow(
        pid,
        names.get(module, module),
        int(slot.get("current", -1)),
        int(computed),
        int(stamp) / 1000 if isinstance(stamp, (int, str)) and str(stamp).isdigit() else None,
    )


@dataclass(frozen=True)
class Entry:
    """One scheduled slot with its message and, once computed, its result."""

    slot: int
    message: str
    timestamp: float | None
    tags: list[tuple[str, str]]
    data: str
    results: dict[str, Any] | None  # None: not computed yet


@dataclass(frozen=True)
class TreeNode:
    key: str
    url: str
    value: Any = None  # a scalar leaf
    children: list[TreeNode] | None = None  # a table
    more: int = 0  # children not shown


@dataclass(frozen=True)
class ProcessHead:
    """The top of a process page: what it is and how far it got."""

    row: ProcessRow
    tags: list[tuple[str, str]]


def process_head(node: Reads, pid: str) -> ProcessHead:
    return ProcessHead(process_row(node, pid), pairs(node.init(pid)["definition"].get("Tags")))


@dataclass(frozen=True)
class ProcessPage:
    row: ProcessRow
    definition: dict[str, Any]
    tags: list[tuple[str, str]]
    entries: list[Entry]
    frm: int
    to: int
    newer: int | None  # `from` of the next page towards the newest slot
    older: int | None
    cache: list[TreeNode]
    at_slot: int
    tasks: list[dict[str, object]] = field(default_factory=list)


def process_page(node: Reads, pid: str, frm: int | None = None) -> ProcessPage:
    row = process_row(node, pid)
    definition = node.init(pid)["definition"]
    last = max(0, row.current)
    start = max(0, last - PAGE + 1) if frm is None else max(0, min(frm, last))
    end = min(last, start + PAGE - 1)
    page = node.schedule_page(pid, start, end)
    entries = [entry(node, pid, a, row.computed) for a in page.get("assignments") or []]
    entries.reverse()  # newest first
    view = node.compute(pid, None)
    base = f"/{pid}~process@1.0/now/cache"
    return ProcessPage(
        row=row,
        definition=definition,
        tags=pairs(definition.get("Tags")),
        entries=entries,
        frm=start,
        to=end,
        newer=end + 1 if end < last else None,
        older=max(0, start - PAGE) if start > 0 else None,
        cache=tree(view.get("cache") or {}, base, [MAX_TREE]),
        at_slot=int(view.get("at-slot", -1)),
        tasks=PROGRESS.tasks(),
    )


def entry(node: Reads, pid: str, assignment: Mapping[str, Any], computed: int) -> Entry:
    slot = int(assignment["slot"])
    body = assignment.get("body") or {}
    results = None
    if slot <= computed:
        try:
            results = node.compute(pid, slot).get("results") or {}
        except NotFound:
            results = None
    stamp = assignment.get("timestamp")
    return Entry(
        slot,
        str(assignment.get("message", "")),
        int(stamp) / 1000 if isinstance(stamp, int) else None,
        pairs(body.get("Tags")),
        _text(body.get("Data")),
        results,
    )


def pairs(tags: JSON) -> list[tuple[str, str]]:
    """Legacy-JSON tags (`[{"name", "value"}, ...]`) as pairs; anything else as none."""
    if not isinstance(tags, list):
        return []
    return [(str(t.get("name")), str(t.get("value"))) for t in tags if isinstance(t, dict)]


def tree(value: Any, url: str, budget: list[int]) -> list[TreeNode]:
    """The patched cache as nested nodes, each with the plain GET that reads it."""
    items: list[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(i + 1), v) for i, v in enumerate(value)]  # reads count from 1, as Lua does
    else:
        return []
    out: list[TreeNode] = []
    for i, (key, child) in enumerate(items):
        if budget[0] <= 0:
            return out + [TreeNode("…", url, more=len(items) - i)]
        budget[0] -= 1
        child_url = f"{url}/{quote(key, safe='')}"
        if isinstance(child, (Mapping, list)):
            out.append(TreeNode(key, child_url, children=tree(child, child_url, budget)))
        else:
            out.append(TreeNode(key, child_url, value=child))
    return out


def _text(data: Any, limit: int = 2000) -> str:
    text = data if isinstance(data, str) else "" if data is None else str(data)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
