"""SU routes: the clock, pages of assignments, one message with its assignment, a process record.

`from`/`to` are millisecond timestamps, as the legacy SU and aoconnect's getLastSlot use them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aonode.engine.ans104 import DataItem
from aonode.engine.answers import JSON, Assignment
from aonode.engine.crypto import b64url_encode
from aonode.engine.errors import AONodeError, NotFound
from aonode.engine.message import Message
from aonode.server.api import NodeAPI
from aonode.server.legacy.common import checked_id, int_param, json_response, limit_param, quick
from aonode.server.state import server_of

SU_PAGE_LIMIT = 100


def _owner_key(msg: Message) -> str | None:
    if msg.raw is None:
        return None
    try:
        return b64url_encode(DataItem.parse(msg.raw).owner)
    except (AONodeError, ValueError):
        return None


def su_message(msg: Message) -> dict[str, JSON]:
    return {
        "id": msg.id,
        "owner": {"address": msg.owner, "key": _owner_key(msg)},
        "data": msg.data,
        "tags": [{"name": n, "value": v} for n, v in msg.tags],
        "signature": msg.signature,
        "anchor": msg.anchor,
        "target": msg.target,
    }


def su_assignment(a: Assignment, scheduler: str) -> dict[str, JSON]:
    """The legacy SU's assignment: its tags carry the slot as `Nonce` (what aoconnect reads)."""
    tags = [
        ("Process", a.process),
        ("Epoch", str(a.epoch)),
        ("Nonce", str(a.slot)),
        ("Timestamp", str(a.timestamp)),
        ("Block-Height", str(a.block_height)),
        ("Hash-Chain", a.hash_chain),
        ("Message", a.message_id),
    ]
    return {
        "id": None,
        "owner": {"address": scheduler, "key": None},
        "tags": [{"name": n, "value": v} for n, v in tags],
        "signature": None,
        "anchor": None,
        "target": a.process,
    }


def su_page(node: NodeAPI, pid: str, frm: int | None, to: int | None, limit: int) -> dict[str, JSON]:
    """The legacy SU's page: assignments stamped after `frm` and up to `to` (ms), `limit` at most."""
    rows = node.assignments_after(pid, frm, limit + 1)  # NotFound for an unknown process
    if to is not None:
        rows = [a for a in rows if a.timestamp <= to]
    edges: list[JSON] = [
        {
            "cursor": str(a.timestamp),
            "node": {"message": su_message(a.message), "assignment": su_assignment(a, node.address)},
        }
        for a in rows[:limit]
    ]
    return {"page_info": {"has_next_page": len(rows) > limit}, "edges": edges}


def _su_message(node: NodeAPI, pid: str, mid: str) -> dict[str, JSON]:
    a = node.assignment_of(pid, mid)
    if a is None:
        raise NotFound(f"message {mid} is not scheduled on process {pid}")
    return {"message": su_message(a.message), "assignment": su_assignment(a, node.address)}


async def get_scheduled(request: Request) -> Response:
    """`/<pid>`: a page of assignments; `/<message id>?process-id=`: one message with its assignment."""
    node = server_of(request).node
    ident = request.path_params["id"]
    pid = request.query_params.get("process-id")
    if pid and pid != ident:
        return json_response(await quick(request, _su_message, node, checked_id(pid, "process-id"), ident))
    limit = limit_param(request, SU_PAGE_LIMIT)
    page = await quick(request, su_page, node, ident, int_param(request, "from"), int_param(request, "to"), limit)
    return json_response(page)


def _process_info(node: NodeAPI, pid: str) -> dict[str, JSON]:
    definition = node.definition(pid)  # NotFound for an unknown process
    spawn = node.assignment(pid, 0)
    if spawn is None:
        raise NotFound(f"no process {pid!r} on this node")
    process = {
        **su_message(definition),
        "process_id": pid,
        "block": str(spawn.block_height),
        "timestamp": spawn.timestamp,
    }
    process.pop("id")
    return {"process": process, "assignment": su_assignment(spawn, node.address)}


async def get_process(request: Request) -> Response:
    pid = checked_id(request.path_params["pid"], "process id")
    return json_response(await quick(request, _process_info, server_of(request).node, pid))


async def get_timestamp(request: Request) -> Response:
    clock = server_of(request).node.clock()
    return json_response({"timestamp": clock.timestamp, "block_height": clock.block_height})
