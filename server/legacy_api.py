"""The legacynet HTTP API (MU, CU, SU and the two gateway GraphQL queries) that aoconnect calls.

Why it exists: existing AO clients (`@permaweb/aoconnect` in legacy mode, front ends built on it)
speak the legacy unit APIs, not HyperBEAM paths. These routes translate those calls onto the same
`Node` the HyperBEAM routes use, so one node serves both and they see the same schedule and state.

app.py mounts these by default (through the `server/legacy.py` hook, before the HyperBEAM
catch-all); the routes find the Node and the app's
thread pools through `request.app.state.server` (see server/app.py), and engine errors raised here
become JSON `{"error": ...}` answers through the app's handlers.

Shapes follow what aoconnect 0.0.98 and ao-scheduler-utils read (node_modules/@permaweb/*/dist):
- MU `POST /`: a signed data item → `{id, message, timestamp, slot, process}`.
- CU `/result/<id>?process-id=`, `/results/<pid>`, `/dry-run?process-id=`, `/state/<pid>`.
- SU `/timestamp`, `/<pid>` (assignments page), `/<msg-id>?process-id=`, `/processes/<pid>`.
- Gateway `POST /graphql`: transactions by id (module and process tags) and the node's own
  `Scheduler-Location` record. Not a GraphQL engine: the query is recognised by its variables.

Decisions: `/results` cursors are slot numbers (legacy cursors are opaque strings, aoconnect never
looks inside); `from` is the cursor to continue after in the sort order, `to` the last one wanted.
SU `from`/`to` are millisecond timestamps, as the legacy SU and aoconnect's getLastSlot use them.
A dry-run first computes what is scheduled (as the legacy CU does), then evaluates on a copy.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aonode.engine.ans104 import DataItem
from aonode.engine.errors import AONodeError, BadInput, NotFound
from aonode.engine.message import Message, is_id
from aonode.engine.store.base import Assignment
from aonode.server.codec import JSON, dump_json, parse_json_object, read_body, verified_data_item
import aonode.server.legacy  # noqa: F401  (registers the "aoid" path convertor the routes use)

T = TypeVar("T")

RESULT_KEYS = ("Messages", "Spawns", "Output", "Error", "Assignments", "GasUsed")
EDGE_KEYS = ("Messages", "Spawns", "Output", "Error")
DEFAULT_RESULTS_LIMIT = 25  # the legacy CU's default page size
MAX_RESULTS_LIMIT = 1000
SU_PAGE_LIMIT = 100
SCHEDULER_TTL_MS = 24 * 3600 * 1000
MODULE_ENCODING = "JSON-1"
MODULE_MEMORY_LIMIT = "4-gb"  # the wasm64 device's default (engine/devices/wasm64.py)
MODULE_COMPUTE_LIMIT = "9000000000000"
_INT = re.compile(r"^-?[0-9]+$")


# -- plumbing ---------------------------------------------------------------------------------------

def _server(request: Request) -> Any:
    return request.app.state.server


async def _quick(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Store reads and appends: never wait behind a long compute."""
    return await _server(request).quick_gate.run(fn, *args)


async def _compute(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Anything that may evaluate messages: bounded, 503 + Retry-After once full."""
    return await _server(request).compute_gate.run(fn, *args)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(value), status_code=status, media_type=JSON, headers=headers)


def _process_id(request: Request) -> str:
    pid = request.query_params.get("process-id")
    if not pid:
        raise BadInput("add ?process-id=<process id>")
    return _checked_id(pid, "process-id")


def _checked_id(text: str, what: str) -> str:
    if not is_id(text):
        raise BadInput(f"{what} must be a 43-character base64url id, not {text[:60]!r}")
    return text


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not _INT.match(text):
        raise BadInput(f"{name} must be an integer, not {text[:40]!r}")
    return int(text)


def _limit(request: Request, default: int) -> int:
    limit = _int_param(request, "limit", default)
    if limit is None or not 1 <= limit <= MAX_RESULTS_LIMIT:
        raise BadInput(f"limit must be between 1 and {MAX_RESULTS_LIMIT}")
    return limit


def legacy_result(result: dict[str, Any], keys: tuple[str, ...] = RESULT_KEYS) -> dict[str, Any]:
    """The legacy CU result: node-side keys (Patches, Pushed) dropped, Error only when there is one."""
    out = {key: result[key] for key in keys if key in result}
    out.setdefault("Messages", [])
    out.setdefault("Spawns", [])
    out.setdefault("Output", {"data": ""})
    if "Assignments" in keys:
        out.setdefault("Assignments", [])
    if out.get("Error") in (None, ""):
        out.pop("Error", None)
    return out


# -- MU: POST / -------------------------------------------------------------------------------------

def _write_item(node: Any, item: DataItem) -> dict[str, Any]:
    msg = item.to_message()
    if (item.tag("Type") or "").lower() == "process":
        return node.spawn(msg)
    if not msg.target:
        raise BadInput("a message needs a Target (the process id); a process needs the tag Type: Process")
    return node.schedule(msg.target, msg)


def _assign(node: Any, pid: str, mid: str) -> dict[str, Any]:
    """aoconnect's assign(): schedule a message this node already holds on another process."""
    msg = node.store.get_message(mid)
    if msg is None:
        raise NotFound(f"no message {mid} on this node to assign")
    return node.schedule(pid, msg)


async def post_item(request: Request) -> Response:
    server = _server(request)
    assign = request.query_params.get("assign")
    if assign is not None:
        assignment = await _quick(request, _assign, server.node, _process_id(request),
                                  _checked_id(assign, "assign"))
        return _json({"id": assignment["message"], "message": "Processing assignment",
                      "timestamp": assignment["timestamp"], "slot": assignment["slot"],
                      "process": assignment["process"]})
    item = verified_data_item(await read_body(request, server.limits.max_body))
    spawning = (item.tag("Type") or "").lower() == "process"
    gate = _compute if spawning else _quick  # a spawn loads (compiles) the image first
    assignment = await gate(request, _write_item, server.node, item)
    return _json({"id": item.id, "message": "Processing DataItem", "timestamp": assignment["timestamp"],
                  "slot": assignment["slot"], "process": assignment["process"]})


# -- CU ---------------------------------------------------------------------------------------------

def _result_slot(node: Any, pid: str, mid: str) -> int:
    node.compute(pid, None)  # NotFound for an unknown process
    assignment = node.store.assignment_for_message(pid, mid)
    if assignment is None:
        raise NotFound(f"message {mid} is not scheduled on process {pid}")
    return assignment.slot


async def get_result(request: Request) -> Response:
    node = _server(request).node
    mid = _checked_id(request.path_params["id"], "message id")
    pid = _process_id(request)
    stored = await _quick(request, node.store.get_result_by_message, pid, mid)
    if stored is None:
        slot = await _quick(request, _result_slot, node, pid, mid)
        view = await _compute(request, node.compute, pid, slot)
        result = view.get("results") or {}
    else:
        result = stored[1]
    return _json(legacy_result(result))


def _results_page(node: Any, pid: str, frm: int | None, to: int | None, limit: int,
                  descending: bool) -> dict[str, Any]:
    """One page of evaluated results; `from` is exclusive, `to` inclusive, both in sort order."""
    if descending:
        low, high = to, (None if frm is None else frm - 1)
    else:
        low, high = (None if frm is None else frm + 1), to
    rows = node.store.results(pid, low, high, limit + 1, descending)
    return {
        "pageInfo": {"hasNextPage": len(rows) > limit},
        "edges": [{"cursor": str(slot), "node": legacy_result(result, EDGE_KEYS)} for slot, result in rows[:limit]],
    }


def _compute_through(node: Any, pid: str, to: int | None) -> None:
    current = node.slot(pid)["current"]  # through the Node, which owns the scheduler
    node.compute(pid, current if to is None else max(0, min(to, current)))


async def get_results(request: Request) -> Response:
    node = _server(request).node
    pid = _checked_id(request.path_params["pid"], "process id")
    sort = (request.query_params.get("sort") or "ASC").upper()
    if sort not in ("ASC", "DESC"):
        raise BadInput("sort must be ASC or DESC")
    limit = _limit(request, DEFAULT_RESULTS_LIMIT)
    frm, to = _int_param(request, "from"), _int_param(request, "to")
    await _compute(request, _compute_through, node, pid, to if sort == "ASC" else None)
    page = await _quick(request, _results_page, node, pid, frm, to, limit, sort == "DESC")
    return _json(page)


def dry_run_message(obj: dict[str, Any], pid: str) -> Message:
    """aoconnect's dry-run body ({Id, Target, Owner, Anchor, Data, Tags}) as an unsigned Message.

    Dry-runs are unsigned reads, so Owner/From are taken from the body; its placeholder Id ("1234")
    is dropped so the message gets a content id.
    """
    fields = {key.lower(): value for key, value in obj.items()}
    owner = fields.get("owner") or fields.get("from") or ""
    if not isinstance(owner, str):
        raise BadInput("Owner must be a string")
    data = fields.get("data", "")
    if data is not None and not isinstance(data, str):
        data = json.dumps(data, separators=(",", ":"))
    legacy = {"Target": pid, "Anchor": fields.get("anchor"), "Tags": fields.get("tags") or [],
              "Data": data, "From": fields.get("from") or owner or None}
    if isinstance(fields.get("id"), str) and is_id(fields["id"]):
        legacy["Id"] = fields["id"]
    if legacy["Anchor"] is not None and not isinstance(legacy["Anchor"], str):
        raise BadInput("Anchor must be a string")
    return Message.from_legacy_json(legacy, owner=owner)


def _dry_run(node: Any, pid: str, msg: Message) -> dict[str, Any]:
    node.now(pid)
    return node.dry_run(pid, msg)


async def post_dry_run(request: Request) -> Response:
    server = _server(request)
    pid = _process_id(request)
    msg = dry_run_message(parse_json_object(await read_body(request, server.limits.max_body)), pid)
    view = await _compute(request, _dry_run, server.node, pid, msg)
    return _json(legacy_result(view.get("results") or {}))


def _state_memory(node: Any, pid: str) -> tuple[bytes, dict[str, str]]:
    from aonode.engine.wasm.snapshot import Snapshot

    node.now(pid)
    taken = node.snapshot(pid)
    found = node.store.latest_snapshot(pid, taken["slot"])
    if found is None:
        raise NotFound(f"{pid} has no snapshot")
    slot, _, blob = found
    assignment = node.store.get_assignment(pid, slot)
    headers = {"Last-Ordinate": str(slot), "Last-Timestamp": str(assignment.timestamp if assignment else 0),
               "Last-Block-Height": str(assignment.block_height if assignment else 0)}
    return Snapshot.from_bytes(blob).raw(), headers


async def get_state(request: Request) -> Response:
    node = _server(request).node
    pid = _checked_id(request.path_params["pid"], "process id")
    memory, headers = await _compute(request, _state_memory, node, pid)
    return Response(memory, media_type="application/octet-stream", headers=headers)


# -- SU ---------------------------------------------------------------------------------------------

def _owner_key(msg: Message) -> str | None:
    if msg.raw is None:
        return None
    try:
        from aonode.engine.crypto import b64url_encode

        return b64url_encode(DataItem.parse(msg.raw).owner)
    except (AONodeError, ValueError):
        return None


def su_message(msg: Message) -> dict[str, Any]:
    return {"id": msg.id, "owner": {"address": msg.owner, "key": _owner_key(msg)}, "data": msg.data,
            "tags": [{"name": n, "value": v} for n, v in msg.tags], "signature": msg.signature,
            "anchor": msg.anchor, "target": msg.target}


def su_assignment(a: Assignment, scheduler: str) -> dict[str, Any]:
    """The legacy SU's assignment: its tags carry the slot as `Nonce` (what aoconnect reads)."""
    tags = [("Process", a.process), ("Epoch", str(a.epoch)), ("Nonce", str(a.slot)),
            ("Timestamp", str(a.timestamp)), ("Block-Height", str(a.block_height)),
            ("Hash-Chain", a.hash_chain), ("Message", a.message_id)]
    return {"id": None, "owner": {"address": scheduler, "key": None},
            "tags": [{"name": n, "value": v} for n, v in tags], "signature": None, "anchor": None,
            "target": a.process}


def _first_slot_after(node: Any, pid: str, timestamp: int, last: int) -> int:
    """Smallest slot whose timestamp is > `timestamp` (timestamps never decrease along slots)."""
    low, high = 0, last + 1
    while low < high:
        mid = (low + high) // 2
        a = node.store.get_assignment(pid, mid)
        if a is not None and a.timestamp > timestamp:
            high = mid
        else:
            low = mid + 1
    return low


def _su_page(node: Any, pid: str, frm: int | None, to: int | None, limit: int) -> dict[str, Any]:
    node.slot(pid)  # NotFound for an unknown process
    last = node.store.last_assignment(pid)
    start = 0 if frm is None else _first_slot_after(node, pid, frm, last.slot)
    rows = node.store.assignments(pid, start, None, limit + 1)
    if to is not None:
        rows = [a for a in rows if a.timestamp <= to]
    edges = [{"cursor": str(a.timestamp),
              "node": {"message": su_message(a.message), "assignment": su_assignment(a, node.address)}}
             for a in rows[:limit]]
    return {"page_info": {"has_next_page": len(rows) > limit}, "edges": edges}


def _su_message(node: Any, pid: str, mid: str) -> dict[str, Any]:
    node.slot(pid)
    a = node.store.assignment_for_message(pid, mid)
    if a is None:
        raise NotFound(f"message {mid} is not scheduled on process {pid}")
    return {"message": su_message(a.message), "assignment": su_assignment(a, node.address)}


async def get_scheduled(request: Request) -> Response:
    """`/<pid>`: a page of assignments; `/<message id>?process-id=`: one message with its assignment."""
    node = _server(request).node
    ident = request.path_params["id"]
    pid = request.query_params.get("process-id")
    if pid and pid != ident:
        return _json(await _quick(request, _su_message, node, _checked_id(pid, "process-id"), ident))
    limit = _limit(request, SU_PAGE_LIMIT)
    page = await _quick(request, _su_page, node, ident, _int_param(request, "from"),
                        _int_param(request, "to"), limit)
    return _json(page)


def _process_info(node: Any, pid: str) -> dict[str, Any]:
    definition = node.store.get_process(pid)
    spawn = node.store.get_assignment(pid, 0)
    if definition is None or spawn is None:
        raise NotFound(f"no process {pid!r} on this node")
    process = {**su_message(definition), "process_id": pid, "block": str(spawn.block_height),
               "timestamp": spawn.timestamp}
    process.pop("id")
    return {"process": process, "assignment": su_assignment(spawn, node.address)}


async def get_process(request: Request) -> Response:
    pid = _checked_id(request.path_params["pid"], "process id")
    return _json(await _quick(request, _process_info, _server(request).node, pid))


async def get_timestamp(request: Request) -> Response:
    scheduler = _server(request).node.scheduler
    return _json({"timestamp": scheduler.clock(), "block_height": scheduler.block_height()})


# -- gateway: POST /graphql -------------------------------------------------------------------------

def module_tags(ref: str) -> list[tuple[str, str]] | None:
    """The tags a module transaction carries on Arweave, for a catalogue image (by id or name)."""
    from aonode.modules.catalogue import lookup

    entry = lookup(ref)
    if entry is None:
        return None
    return [("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Module"),
            ("Module-Format", entry.format), ("Input-Encoding", MODULE_ENCODING),
            ("Output-Encoding", MODULE_ENCODING), ("Memory-Limit", MODULE_MEMORY_LIMIT),
            ("Compute-Limit", MODULE_COMPUTE_LIMIT), ("Content-Type", "application/wasm"),
            ("Name", entry.name)]


def _gql_node(ident: str, owner: str | None, tags: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {"id": ident, "owner": {"address": owner, "key": None},
            "tags": [{"name": n, "value": v} for n, v in tags], "block": None, **extra}


def _transaction(node: Any, ident: str) -> dict[str, Any] | None:
    if not isinstance(ident, str):
        return None
    tags = module_tags(ident)
    if tags is not None:
        return _gql_node(ident, None, tags)
    definition = node.store.get_process(ident) if is_id(ident) else None
    if definition is not None:
        return _gql_node(ident, definition.owner, list(definition.tags), anchor=definition.anchor,
                         signature=definition.signature, recipient=definition.target or "")
    return None


def scheduler_location(address: str, url: str) -> dict[str, Any]:
    tags = [("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Scheduler-Location"),
            ("Url", url), ("Time-To-Live", str(SCHEDULER_TTL_MS))]
    return _gql_node(address, address, tags)


def _connection(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"transactions": {
        "pageInfo": {"hasNextPage": False},
        "edges": [{"cursor": n["id"], "node": n} for n in nodes],
    }}}


def answer_graphql(node: Any, query: str, variables: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Transactions by id, or this node's Scheduler-Location; anything else: no transactions."""
    ids = variables.get("transactionIds") or variables.get("ids")
    if isinstance(ids, str):
        ids = [ids]
    if isinstance(ids, list):
        return _connection([t for t in (_transaction(node, i) for i in ids) if t is not None])
    owners = variables.get("owners") or variables.get("owner")
    owners = [owners] if isinstance(owners, str) else owners if isinstance(owners, list) else []
    if "Scheduler-Location" in query and node.address in owners:
        return _connection([scheduler_location(node.address, base_url)])
    return _connection([])


async def post_graphql(request: Request) -> Response:
    server = _server(request)
    body = parse_json_object(await read_body(request, server.limits.max_body))
    query, variables = body.get("query"), body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        raise BadInput("send {query: string, variables: object}")
    base_url = str(request.base_url).rstrip("/")
    return _json(await _quick(request, answer_graphql, server.node, query, variables, base_url))


def legacy_routes() -> list[BaseRoute]:
    """The legacy API routes; they must come before the HyperBEAM catch-all route."""
    return [
        Route("/", post_item, methods=["POST"]),
        Route("/result/{id}", get_result, methods=["GET"]),
        Route("/results/{pid}", get_results, methods=["GET"]),
        Route("/dry-run", post_dry_run, methods=["POST"]),
        Route("/state/{pid}", get_state, methods=["GET"]),
        Route("/timestamp", get_timestamp, methods=["GET"]),
        Route("/processes/{pid}", get_process, methods=["GET"]),
        Route("/graphql", post_graphql, methods=["POST"]),
        Route("/{id:aoid}", get_scheduled, methods=["GET"]),
    ]
