"""MU `POST /`: a signed data item is a spawn (tag `Type: Process`) or a message for its Target;
`?assign=<id>&process-id=<pid>` schedules a message this node already holds onto another process."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aonode.engine.ans104 import DataItem
from aonode.engine.answers import AssignmentJSON
from aonode.engine.errors import BadInput, NotFound, Unauthorized
from aonode.engine.message import Message
from aonode.server.api import NodeAPI
from aonode.server.codec import checked_signature, parsed_data_item, read_body
from aonode.server.legacy.common import checked_id, compute, json_response, process_id, quick
from aonode.server.state import server_of


def is_spawn(item: DataItem) -> bool:
    return (item.tag("Type") or "").lower() == "process"


def _spawn_item(node: NodeAPI, item: DataItem) -> AssignmentJSON:
    """Verify and spawn on one compute-pool thread (a spawn loads, maybe compiles, the image first)."""
    return node.spawn(checked_signature(item).to_message())


def checked_message(item: DataItem) -> tuple[str, Message]:
    """On an ingest thread (server/ingest.py): the item's signature checked, and its Target."""
    msg = checked_signature(item).to_message()
    if not msg.target:
        raise BadInput("a message needs a Target (the process id); a process needs the tag Type: Process")
    return msg.target, msg


def _assign(node: NodeAPI, pid: str, mid: str, dev: bool) -> AssignmentJSON:
    """aoconnect's assign(): schedule a message this node already holds on another process.

    The request itself is unsigned, so it is taken only when the process's rules allow it: the held
    message was signed by the process's owner (who could have sent it there anyway), or --dev."""
    msg = node.message(mid)
    if msg is None:
        raise NotFound(f"no message {mid} on this node to assign")
    if not dev and msg.target != pid and msg.owner != node.definition(pid).owner:
        raise Unauthorized(
            f"an unsigned assignment (?assign=) of {mid} onto {pid} is refused: only messages "
            "signed by the process's owner may be assigned to it this way"
        )
    return node.schedule(pid, msg)


async def post_item(request: Request) -> Response:
    server = server_of(request)
    assign = request.query_params.get("assign")
    if assign is not None:
        assignment = await quick(
            request, _assign, server.node, process_id(request), checked_id(assign, "assign"), server.dev
        )
        return json_response(
            {
                "id": assignment["message"],
                "message": "Processing assignment",
                "timestamp": assignment["timestamp"],
                "slot": assignment["slot"],
                "process": assignment["process"],
            }
        )
    item = parsed_data_item(await read_body(request, server.limits.max_body))
    if is_spawn(item):
        assignment = await compute(request, _spawn_item, server.node, item)
    else:
        assignment = await server.ingest.schedule(lambda: checked_message(item))
    return json_response(data_item_answer(item.id, assignment))


def data_item_answer(item_id: str, assignment: AssignmentJSON) -> dict[str, object]:
    """What the MU answers for a data item it scheduled (aoconnect reads `id` and `slot`)."""
    return placed_answer(item_id, assignment["process"], assignment["slot"], assignment["timestamp"])


def placed_answer(item_id: str, pid: str, slot: int, timestamp: int) -> dict[str, object]:
    """`data_item_answer` from the assignment's fields (an ingest worker has them, not its JSON)."""
    return {"id": item_id, "message": "Processing DataItem", "timestamp": timestamp, "slot": slot, "process": pid}
