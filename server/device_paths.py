"""The device paths: `/<pid>~process@1.0/<action>/<keys...>` (GET reads, POST schedule) and `/~meta@1.0/info`.

Kept thin on purpose: `paths` parses, the Node decides, `codec` encodes. Two reads run inline on
the event loop, because a thread hop costs more than they do and they never take a process lock:
`compute` without a slot, and `now` when `Node.pending(pid) == 0` (then `now` would compute nothing
and answers that same last state). Those two are O(1) because the Node keeps each process's
definition, current slot and last computed view in memory (it is their only writer).
"""

from __future__ import annotations

import secrets
from typing import cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from aonode.engine.answers import JSON, InitInfo, ProcessView, SchedulePage, SlotInfo, SnapshotInfo
from aonode.engine.errors import Unauthorized
from aonode.engine.message import Message
from aonode.server import codec, convertors, paths, snapshot_file
from aonode.server.state import Server

ALLOW = "GET, HEAD, POST, OPTIONS"
METHODS = ["GET", "POST", "OPTIONS"]
Read = ProcessView | SchedulePage | SlotInfo | SnapshotInfo | InitInfo
assert convertors  # registers the `device` path convertor used below


class DevicePaths:
    """The request handler for one app's Server (bound, so the hot path skips a state lookup)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def handle(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": ALLOW})
        scope = request.scope
        target = paths.parse_cached(scope["path"], scope["query_string"].decode("latin-1"))
        as_json = target.as_json or codec.wants_json(_header(scope, b"accept"))
        if isinstance(target, paths.MetaPath):
            _require(request, "GET")
            info = await self.server.quick_gate.run(self.server.node.info)
            return answer(paths.select(info, target.keys), as_json)
        if request.method == "POST":
            return await self._post(request, target)
        if target.pid is None:
            raise HTTPException(405, "spawn with POST /~process@1.0/schedule", {"Allow": "POST, OPTIONS"})
        if target.action == "snapshot" and not as_json and not target.keys:
            return await snapshot_file.download(self.server, target.pid)
        value = await self._read(target, target.pid)
        if target.lua is not None:  # a state read (`now`, `compute`); Lua may run long: off the event loop
            read: JSON = await self.server.compute_gate.run(
                self.server.node.lua_read, cast(ProcessView, value), target.lua
            )
            return answer(paths.select(read, target.keys), as_json)
        return answer(paths.select(value, target.keys), as_json)

    async def _read(self, target: paths.ProcessPath, pid: str) -> Read:
        node, quick, compute = self.server.node, self.server.quick_gate, self.server.compute_gate
        if target.action == "schedule":
            return await quick.run(node.schedule_page, pid, target.frm, target.to)
        if target.action == "slot":
            return await quick.run(node.slot, pid)
        if target.action == "compute" and target.slot is None:
            return node.compute(pid, None)  # inline: a store read that never takes a process lock
        if target.action == "compute":
            return await compute.run(node.compute, pid, target.slot)
        if target.action == "now":
            if node.pending(pid) == 0:  # inline, indexed reads, no lock: the last state is `now`
                return node.compute(pid, None)
            return await compute.run(node.now, pid)
        if target.action == "snapshot":
            return await compute.run(node.snapshot, pid)
        return await compute.run(node.init, pid)

    async def _post(self, request: Request, target: paths.ProcessPath) -> Response:
        if target.action != "schedule" or target.keys:
            raise HTTPException(405, "POST only to /schedule", {"Allow": ALLOW})
        server = self.server
        body = await codec.read_body(request, server.limits.max_body)
        msg = codec.for_process(self.message(body, request.headers.get("content-type"), target.pid), target.pid)
        if target.pid is None:
            assignment = await server.compute_gate.run(server.node.spawn, msg)
        else:
            assignment = await server.quick_gate.run(server.node.schedule, target.pid, msg)
        return answer(assignment, True)

    def message(self, body: bytes, content_type: str | None, pid: str | None) -> Message:
        """A signed data item as is; unsigned JSON only with --dev, owned by the node wallet."""
        if codec.is_data_item(content_type):
            return codec.message_from_data_item(body)
        obj = codec.parse_json_object(body)
        if not self.server.dev:
            raise Unauthorized(codec.SIGNING_HINT)
        if pid is not None and not any(k.lower() == "target" for k in obj):
            obj = {**obj, "Target": pid}
        if not any(k.lower() == "anchor" for k in obj):
            # Each POST is a new message, as with a signing client; an explicit Anchor makes retries idempotent.
            obj = {**obj, "Anchor": secrets.token_urlsafe(24)}
        return codec.message_from_json(obj, owner=self.server.node.address)


def _require(request: Request, method: str) -> None:
    if request.method not in (method, "HEAD" if method == "GET" else method):
        raise HTTPException(405, f"use {method} here", {"Allow": f"{method}, OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    """One request header straight from the ASGI scope (names arrive lowercased)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def answer(value: object, as_json: bool) -> Response:
    encoded = codec.encode(value, as_json=as_json)
    return Response(encoded.body, media_type=encoded.media_type)


def routes(server: Server) -> tuple[list[BaseRoute], list[BaseRoute]]:
    """(first, last): the device paths match first (the hot read path at once); the catch-all goes
    last, after every other route list, so `parse()` says what is wrong with an unknown path."""
    handle = DevicePaths(server).handle
    return ([Route("/{path:device}", handle, methods=METHODS)], [Route("/{path:path}", handle, methods=METHODS)])
