"""The legacy compute/messenger/scheduler routes existing AO clients (aoconnect legacy mode) call.

Same Node, same gates and the same signing policy as the HyperBEAM paths in app.py; only the shapes
differ. `connect({MU_URL, CU_URL, GATEWAY_URL})` can all point at one aonode:
MU `POST /` (signed data item -> {id}), CU `GET /result/:id?process-id=`, `GET /results/:pid`,
`POST /dry-run?process-id=`, SU `GET /:id[?process-id=]`, `GET /timestamp`, gateway `POST /graphql`
(just enough for aoconnect's spawn: module tags and the scheduler's location).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import is_id
from aonode.server import codec

if TYPE_CHECKING:
    from aonode.server.app import Server

RESULT_KEYS = ("Messages", "Spawns", "Assignments")
PAGE = 1000
DEFAULT_LIMIT = 25
SCHEDULER_TTL_MS = "3600000"


class AOIdConvertor(Convertor[str]):
    """A 43-character base64url id (so `/<id>` never shadows `/<pid>~process@1.0/...`)."""

    regex = "[A-Za-z0-9_-]{43}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("aoid", AOIdConvertor())


def json_response(value: Any, status: int = 200) -> Response:
    return Response(codec.dump_json(value), status_code=status, media_type=codec.JSON)


def legacy_result(results: dict[str, Any]) -> dict[str, Any]:
    """A slot's results in the compute unit's shape: {Messages, Spawns, Output, Error?, Assignments, GasUsed}."""
    out: dict[str, Any] = {key: results.get(key) or [] for key in RESULT_KEYS}
    out["Output"] = results.get("Output") if results.get("Output") is not None else ""
    out["GasUsed"] = results.get("GasUsed", 0)
    if results.get("Error"):
        out["Error"] = results["Error"]
    return out


def _process_id(request: Request) -> str:
    pid = request.query_params.get("process-id", "")
    if not is_id(pid):
        raise BadInput("add ?process-id=<43-character process id>")
    return pid


class LegacyRoutes:
    """Handlers bound to the app's Server (its Node, gates and --dev policy)."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.node = server.node

    # -- messenger unit --------------------------------------------------------------------------
    async def post_message(self, request: Request) -> Response:
        if "assign" in request.query_params:
            raise BadInput("assignments of existing messages are not supported by this node")
        body = await codec.read_body(request, self.server.limits.max_body)
        msg = self.server.message(body, request.headers.get("content-type"), None)
        if (msg.tag("Type") or "").lower() == "process":
            assignment = await self.server.compute_gate.run(self.node.spawn, msg)
            return json_response({"message": "Processing DataItem", "id": msg.id,
                                  "processId": assignment["process"]}, 202)
        if not msg.target:
            raise BadInput("the data item has no target process")
        await self.server.quick_gate.run(self.node.schedule, msg.target, msg)
        return json_response({"message": "Processing DataItem", "id": msg.id}, 202)

    # -- compute unit ----------------------------------------------------------------------------
    async def result(self, request: Request) -> Response:
        pid, mid = _process_id(request), request.path_params["id"]
        slot = await self.server.quick_gate.run(self._slot_of, pid, mid)
        state = await self.server.compute_gate.run(self.node.compute, pid, slot)
        return json_response(legacy_result(state.get("results") or {}))

    async def results(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        query = request.query_params
        limit = _int(query.get("limit"), DEFAULT_LIMIT, "limit")
        frm, to = _int(query.get("from"), -1, "from"), _int(query.get("to"), None, "to")
        descending = query.get("sort", "ASC").upper() == "DESC"
        last = (await self.server.compute_gate.run(self.node.now, pid))["at-slot"]
        high = last if to is None else min(to, last)
        slots = range(high, frm, -1) if descending else range(frm + 1, high + 1)
        edges = []
        for slot in list(slots)[:limit]:
            state = await self.server.quick_gate.run(self.node.compute, pid, slot)
            edges.append({"cursor": str(slot), "node": legacy_result(state.get("results") or {})})
        return json_response({"edges": edges})

    async def dry_run(self, request: Request) -> Response:
        pid = _process_id(request)
        dry_run = getattr(self.node, "dry_run", None)
        if dry_run is None:
            raise HTTPException(501, "dry-run is not available in this build; read state with "
                                     f"GET /{pid}~process@1.0/now/cache/<key>")
        obj = codec.parse_json_object(await codec.read_body(request, self.server.limits.max_body))
        owner = obj.get("Owner") or obj.get("From") or self.node.address
        msg = codec.message_from_json({**obj, "Target": pid}, owner=str(owner))
        results = await self.server.compute_gate.run(dry_run, pid, msg)
        return json_response(legacy_result(results.get("results", results)))

    # -- scheduler unit --------------------------------------------------------------------------
    async def timestamp(self, request: Request) -> Response:
        return json_response({"timestamp": int(time.time() * 1000), "block_height": 0})

    async def su_item(self, request: Request) -> Response:
        """`/<pid>`: the process; `/<message id>?process-id=<pid>`: that message and its assignment."""
        item = request.path_params["id"]
        pid = request.query_params.get("process-id", item)
        if pid == item:
            init = await self.server.quick_gate.run(self.node.init, pid)
            return json_response(_su_process(pid, init["definition"], self.node.address))
        slot = await self.server.quick_gate.run(self._slot_of, pid, item)
        page = await self.server.quick_gate.run(self.node.schedule_page, pid, slot, slot)
        assignment = page["assignments"][0]
        tags = [{"name": "Process", "value": pid}, {"name": "Nonce", "value": str(slot)},
                {"name": "Timestamp", "value": str(assignment.get("timestamp", ""))},
                {"name": "Hash-Chain", "value": str(assignment.get("hash-chain", ""))}]
        return json_response({"message": assignment.get("body", {"id": item}),
                              "assignment": {"id": f"{pid}/{slot}", "tags": tags}})

    # -- gateway (just enough for aoconnect's spawn) ---------------------------------------------
    async def graphql(self, request: Request) -> Response:
        obj = codec.parse_json_object(await codec.read_body(request, self.server.limits.max_body))
        variables = obj.get("variables") or {}
        if "owner" in variables:  # GetSchedulerLocation
            base = str(request.base_url).rstrip("/")
            tags = [{"name": "Type", "value": "Scheduler-Location"}, {"name": "Url", "value": base},
                    {"name": "Time-To-Live", "value": SCHEDULER_TTL_MS}]
            return json_response(_edges([_tx(self.node.address, tags)]))
        ids = variables.get("transactionIds") or variables.get("ids") or []
        nodes = [n for n in [await self.server.quick_gate.run(self._tx_for, i) for i in ids] if n]
        return json_response(_edges(nodes))

    def _tx_for(self, tx_id: str) -> dict[str, Any] | None:
        from aonode.modules.catalogue import lookup

        entry = lookup(tx_id) if isinstance(tx_id, str) else None
        if entry is not None:
            return _tx(self.node.address, [
                {"name": "Data-Protocol", "value": "ao"}, {"name": "Variant", "value": "ao.TN.1"},
                {"name": "Type", "value": "Module"}, {"name": "Module-Format", "value": entry.format},
                {"name": "Input-Encoding", "value": "JSON-1"}, {"name": "Output-Encoding", "value": "JSON-1"},
                {"name": "Content-Type", "value": "application/wasm"}], tx_id)
        try:
            definition = self.node.init(tx_id)["definition"]
        except (NotFound, BadInput):
            return None
        tags = list(definition.get("Tags") or [])
        if not any(t["name"].lower() == "scheduler" for t in tags):
            tags.append({"name": "Scheduler", "value": self.node.address})
        return _tx(definition.get("Owner") or self.node.address, tags, tx_id)

    def _slot_of(self, pid: str, message_id: str) -> int:
        """Where `message_id` sits in `pid`'s schedule (paging through it: the Node has no index call)."""
        slot_of = getattr(self.node, "slot_of", None)
        if slot_of is not None:
            return int(slot_of(pid, message_id))
        frm = 0
        while True:
            page = self.node.schedule_page(pid, frm, frm + PAGE - 1)
            for assignment in page["assignments"]:
                if assignment.get("message") == message_id:
                    return int(assignment["slot"])
            if not page.get("continues") or not page["assignments"]:
                raise NotFound(f"message {message_id} is not scheduled on process {pid}")
            frm = int(page["assignments"][-1]["slot"]) + 1


def _su_process(pid: str, definition: dict[str, Any], scheduler: str) -> dict[str, Any]:
    return {"process_id": pid, "owner": {"address": definition.get("Owner")},
            "tags": definition.get("Tags") or [], "data": definition.get("Data", ""),
            "anchor": definition.get("Anchor"), "scheduler": scheduler}


def _tx(owner: str, tags: list[dict[str, str]], tx_id: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"owner": {"address": owner}, "tags": tags, "block": None}
    if tx_id is not None:
        node["id"] = tx_id
    return node


def _edges(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"transactions": {"edges": [{"node": n, "cursor": str(i)} for i, n in enumerate(nodes)]}}}


def _int(text: str | None, default: int | None, what: str) -> Any:
    if text is None or text == "":
        return default
    if not text.lstrip("-").isdigit():
        raise BadInput(f"{what} must be an integer (a slot number), got {text!r:.40}")
    return int(text)


def routes(server: "Server") -> list[BaseRoute]:
    """Routes to put before the HyperBEAM catch-all."""
    legacy = LegacyRoutes(server)
    return [
        Route("/", legacy.post_message, methods=["POST"]),
        Route("/result/{id:aoid}", legacy.result, methods=["GET"]),
        Route("/results/{pid:aoid}", legacy.results, methods=["GET"]),
        Route("/dry-run", legacy.dry_run, methods=["POST"]),
        Route("/timestamp", legacy.timestamp, methods=["GET"]),
        Route("/graphql", legacy.graphql, methods=["POST"]),
        Route("/{id:aoid}", legacy.su_item, methods=["GET"]),
    ]

