"""CU routes: a message's result, pages of results, dry-runs and a process's memory.

`/results` cursors are slot numbers (legacy cursors are opaque strings, aoconnect never looks
inside); `from` is the cursor to continue after in the sort order, `to` the last one wanted. A
dry-run first computes what is scheduled (as the legacy CU does), then evaluates on a copy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aonode.engine.answers import JSON, ProcessMemory, ProcessView
from aonode.engine.errors import BadInput, Busy, NotFound
from aonode.engine.message import Message, is_id
from aonode.server.api import NodeAPI
from aonode.server.codec import parse_json_object, read_body
from aonode.server.legacy.common import (
    EDGE_KEYS,
    checked_id,
    compute,
    int_param,
    json_response,
    legacy_result,
    limit_param,
    process_id,
    quick,
)
from aonode.server.state import server_of

DEFAULT_RESULTS_LIMIT = 25  # the legacy CU's default page size


def _result_slot(node: NodeAPI, pid: str, mid: str) -> int:
    assignment = node.assignment_of(pid, mid)  # NotFound for an unknown process
    if assignment is None:
        raise NotFound(f"message {mid} is not scheduled on process {pid}")
    return assignment.slot


async def get_result(request: Request) -> Response:
    node = server_of(request).node
    mid = checked_id(request.path_params["id"], "message id")
    pid = process_id(request)
    stored = await quick(request, node.result_of, pid, mid)
    if stored is not None:
        return json_response(legacy_result(stored.result))
    slot = await quick(request, _result_slot, node, pid, mid)
    view = await compute(request, node.compute, pid, slot)
    return json_response(legacy_result(view.get("results") or {}))


def _results_page(
    node: NodeAPI, pid: str, frm: int | None, to: int | None, limit: int, descending: bool
) -> dict[str, JSON]:
    """One page of evaluated results; `from` is exclusive, `to` inclusive, both in sort order."""
    if descending:
        low, high = to, (None if frm is None else frm - 1)
    else:
        low, high = (None if frm is None else frm + 1), to
    rows = node.results(pid, low, high, limit + 1, descending)
    return {
        "pageInfo": {"hasNextPage": len(rows) > limit},
        "edges": [{"cursor": str(row.slot), "node": legacy_result(row.result, EDGE_KEYS)} for row in rows[:limit]],
    }


def _compute_through(node: NodeAPI, pid: str, to: int | None) -> None:
    current = node.slot(pid)["current"]
    node.compute(pid, current if to is None else max(0, min(to, current)))


async def get_results(request: Request) -> Response:
    node = server_of(request).node
    pid = checked_id(request.path_params["pid"], "process id")
    sort = (request.query_params.get("sort") or "ASC").upper()
    if sort not in ("ASC", "DESC"):
        raise BadInput("sort must be ASC or DESC")
    limit = limit_param(request, DEFAULT_RESULTS_LIMIT)
    frm, to = int_param(request, "from"), int_param(request, "to")
    await compute(request, _compute_through, node, pid, to if sort == "ASC" else None)
    page = await quick(request, _results_page, node, pid, frm, to, limit, sort == "DESC")
    return json_response(page)


def dry_run_message(obj: Mapping[str, object], pid: str) -> Message:
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
    legacy = {
        "Target": pid,
        "Anchor": fields.get("anchor"),
        "Tags": fields.get("tags") or [],
        "Data": data,
        "From": fields.get("from") or owner or None,
    }
    ident = fields.get("id")
    if isinstance(ident, str) and is_id(ident):
        legacy["Id"] = ident
    if legacy["Anchor"] is not None and not isinstance(legacy["Anchor"], str):
        raise BadInput("Anchor must be a string")
    return Message.from_legacy_json(legacy, owner=owner)


def _dry_run(node: NodeAPI, pid: str, msg: Message) -> ProcessView:
    node.now(pid)
    return node.dry_run(pid, msg)


async def post_dry_run(request: Request) -> Response:
    server = server_of(request)
    pid = process_id(request)
    msg = dry_run_message(parse_json_object(await read_body(request, server.limits.max_body)), pid)
    view = await compute(request, _dry_run, server.node, pid, msg)
    return json_response(legacy_result(view.get("results") or {}))


def _memory(node: NodeAPI, pid: str) -> ProcessMemory:
    node.now(pid)
    return node.memory(pid)


STATE_STREAMS = 4  # /state answers streaming at once; more wait for a place, then get 503
STREAM_WAIT_SECONDS = 5.0


async def get_state(request: Request) -> Response:
    """The memory as a legacy CU serves it, streamed a 64 KiB chunk at a time from the stored snapshot:
    a reader holds one decompressed chunk, at most STATE_STREAMS stream at once, and a reader that
    goes away stops the stream and frees its place (_HeldStream)."""
    node = server_of(request).node
    pid = checked_id(request.path_params["pid"], "process id")
    streams = _streams(request)
    with anyio.move_on_after(STREAM_WAIT_SECONDS) as waited:
        await streams.acquire()
    if waited.cancelled_caught:
        raise Busy(f"{STATE_STREAMS} process memories are being sent; retry in a few seconds")
    try:
        memory = await compute(request, _memory, node, pid)
    except BaseException:
        streams.release()
        raise
    headers = {
        "Last-Ordinate": str(memory.slot),
        "Last-Timestamp": str(memory.timestamp),
        "Last-Block-Height": str(memory.block_height),
        "Content-Length": str(memory.size),
    }
    return _HeldStream(_stream(memory), streams, headers)


def _streams(request: Request) -> anyio.Semaphore:
    state = request.app.state
    if not hasattr(state, "state_streams"):
        state.state_streams = anyio.Semaphore(STATE_STREAMS)
    return state.state_streams


async def _stream(memory: ProcessMemory) -> AsyncGenerator[bytes]:
    pieces = iter(memory.chunks)
    while (piece := await anyio.to_thread.run_sync(next, pieces, None)) is not None:
        yield piece


class _HeldStream(StreamingResponse):
    """A streamed answer that holds one of the /state places until it ends, however it ends. Starlette
    stops iterating a body whose reader went away but leaves the generator to the garbage collector, so
    a place freed by the generator's own `finally` came back only at the next collection (seconds, or
    never for a body that was not started) and later readers got 503s meanwhile."""

    def __init__(self, body: AsyncGenerator[bytes], place: anyio.Semaphore, headers: Mapping[str, str]) -> None:
        super().__init__(body, media_type="application/octet-stream", headers=headers)
        self._body, self._place = body, place

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
            self._place.release()
