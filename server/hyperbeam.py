"""HyperBEAM's own paths and verbs, as today's clients (aoconnect MODE 'mainnet', HyperBEAM peers) use them.

- `POST /push`: spawn (schedule slot 0 and compute it); the answer names the process in a `process` field.
- `POST /<pid>~process@1.0/push`: schedule and compute one message; the answer carries its `slot`.
- POST on read paths (`/<pid>/slot/current`, `/<pid>~process@1.0/compute/...`): the body is the
  caller's signed request; it is verified, then the path is read as with GET.
- `key=value` and `&key=value` segments: `compute/results=<slot>` (the results at that slot, or at the
  slot of that message id), `as=execution/compute&Action=Eval` (a dry-run of the body's message with
  those tags), `~json@1.0/serialize` after any read path (JSON).
- `/~scheduler@1.0/schedule?target=&from=&to=` (`accept: application/aos-2`: the legacy SU page with
  edges/page_info) and `/~scheduler@1.0/slot?target=`.
- `/~relay@1.0/call?relay-path=/...`: a request to this node's own routes only.
Messages arrive as ANS-104 items (`application/ans104`, `codec-device: ans104@1.0`) or httpsig@1.0;
unsigned ones only in --dev (then owned by the node wallet).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from starlette.convertors import register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aonode.engine import httpsig
from aonode.engine.answers import JSON, AssignmentJSON
from aonode.engine.errors import BadInput, NotFound, Unauthorized
from aonode.engine.genesis import check_scheduler
from aonode.engine.message import Message, is_id
from aonode.server import codec, convertors, paths, snapshot_file
from aonode.server.api import NodeAPI
from aonode.server.device_paths import DevicePaths, Read
from aonode.server.legacy.common import legacy_result
from aonode.server.legacy.su import su_page
from aonode.server.state import Server

register_url_convertor("hbread", convertors.TextConvertor(r"[^/]*~?[^?]*(?:=|&|~json@1\.0/serialize)[^?]*"))

JSON_SERIALIZE = ("~json@1.0", "serialize")
REQUEST_OPTIONS = frozenset({"signing-format", "accept-bundle", "accept-codec", "require-codec", "method", "path"})
SU_PAGE_LIMIT = 1000


@dataclass(frozen=True)
class HbPath:
    """A HyperBEAM read path: process, action, an optional slot, keys to read, the `&k=v` params."""

    pid: str
    action: str
    slot: int | str | None = None
    keys: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    as_json: bool = False
    execute: bool = False  # `as=execution`: run the request's message on the state (a dry-run)


def parse_path(path: str, query: dict[str, str]) -> HbPath:
    segments = [s for s in path.split("/") if s]
    as_json = False
    if tuple(s.lower() for s in segments[-2:]) == JSON_SERIALIZE or (
        segments and segments[-1].lower() in ("~json@1.0", "serialize~json@1.0")
    ):
        as_json = True
        segments = segments[:-2] if segments[-1].lower() == "serialize" else segments[:-1]
    params: dict[str, str] = {}
    plain: list[str] = []
    for seg in segments:
        head, *pairs = seg.split("&")
        for pair in pairs:
            k, _, v = pair.partition("=")
            params[k] = v
        if "=" in head:
            k, _, v = head.partition("=")
            plain.append(f"{k}={v}")
        elif head:
            plain.append(head)
    if not plain:
        raise NotFound("no process in the path")
    pid = plain[0].removesuffix(paths.PROCESS_DEVICE)
    if not is_id(pid):
        raise NotFound(f"not a process path: /{plain[0]}")
    rest, execute, slot = plain[1:], False, None
    keys: list[str] = []
    action = ""
    for seg in rest:
        k, eq, v = seg.partition("=")
        if eq and k.lower() == "as":
            execute = execute or v.lower() == "execution"
        elif not action:
            action = seg.lower()
        elif eq:  # `results=<slot or message id>`: the key, at that slot
            slot, keys = (codec.parse_int(v, k) if v.isdecimal() else v), [*keys, k]
        elif not keys and action == "compute" and seg.isdecimal() and slot is None:
            slot = codec.parse_int(seg, "slot")
        else:
            keys.append(seg)
    if "slot" in query and slot is None and query["slot"].isdigit():
        slot = codec.parse_int(query["slot"], "slot")
    if action not in paths.ACTIONS:
        raise NotFound(f"unknown action {action!r} on {pid}")
    return HbPath(pid, action, slot, tuple(keys), params, as_json, execute)


@dataclass(frozen=True)
class Incoming:
    """A request as read on the event loop, decoded (signatures checked) on a worker thread."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def signed_message(got: Incoming) -> tuple[Message | None, httpsig.Decoded | None]:
    """The request's signed message (an ANS-104 item, the signed httpsig request, or the `body` message
    its commitments vouch for), checked; (None, the decoded request) when it carries no signature."""
    headers = dict(got.headers)
    if codec.is_data_item(headers.get("content-type")) or headers.get("codec-device", "").lower() == "ans104@1.0":
        return codec.message_from_data_item(got.body), None
    decoded = httpsig.decode(httpsig.Request(got.method, got.url, got.headers, got.body))
    committed = decoded.committed()
    return (committed.to_message() if committed is not None else None), decoded


@dataclass
class Hyperbeam:
    server: Server
    device_paths: DevicePaths

    @property
    def node(self) -> NodeAPI:
        return self.server.node

    # -- messages in -------------------------------------------------------------------------------
    async def incoming(self, request: Request, pid: str | None, *, required: bool = True) -> Message | None:
        """The request's message: an ANS-104 item or a signed httpsig message; unsigned only in --dev."""
        return self.decode(await self.received(request), pid, required=required)

    async def received(self, request: Request) -> Incoming:
        body = await codec.read_body(request, self.server.limits.max_body)
        return Incoming(request.method, str(request.url), tuple(request.headers.items()), body)

    def decode(self, got: Incoming, pid: str | None, *, required: bool = True) -> Message | None:
        """`incoming`'s message from the request as read (its signatures checked: CPU, no I/O)."""
        signed, decoded = signed_message(got)
        if signed is not None:
            return signed
        body, content_type = got.body, dict(got.headers).get("content-type")
        assert decoded is not None  # not a data item
        if not required and not body:
            return None
        if not self.server.dev:
            raise Unauthorized(
                "this node accepts only signed messages: sign the request (httpsig@1.0, "
                "RFC 9421) or send a signed ANS-104 item (Content-Type: application/ans104)"
            )
        if codec.media_type(content_type) == "application/json":
            return self.device_paths.message(body, content_type, pid)
        fields = {k: v for k, v in decoded.fields.items() if k not in REQUEST_OPTIONS}
        fields.setdefault("anchor", secrets.token_urlsafe(24).encode())
        if pid is not None:
            fields.setdefault("target", pid.encode())
        return httpsig.Decoded(fields).to_message(owner=self.node.address)

    async def schedule_incoming(self, got: Incoming, pid: str) -> AssignmentJSON:
        """Decode on an ingest thread (the signature check stays off the event loop), then schedule."""
        return await self.server.ingest.schedule(lambda: (pid, codec.for_process(self.decode(got, pid), pid)))

    # -- POST /push and /<pid>~process@1.0/push ----------------------------------------------------
    async def push_spawn(self, request: Request) -> Response:
        msg = await self.incoming(request, None)
        assert msg is not None
        check_scheduler(msg, self.node.address)
        assignment = await self.server.compute_gate.run(self.node.spawn, msg)
        pid = assignment["process"]
        view = await self.server.compute_gate.run(self.node.compute, pid, assignment["slot"])
        return await self.signed(
            {"process": pid, "slot": assignment["slot"]},
            {**assignment, "results": legacy_result(view.get("results") or {})},
        )

    async def push(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        msg = codec.for_process(await self.incoming(request, pid), pid)
        assignment = await self.server.quick_gate.run(self.node.schedule, pid, msg)
        view = await self.server.compute_gate.run(self.node.compute, pid, assignment["slot"])
        return await self.signed(
            {"process": pid, "slot": assignment["slot"]},
            {**assignment, "id": msg.id, "results": legacy_result(view.get("results") or {})},
        )

    async def schedule(self, request: Request) -> Response:
        """`/schedule` with an httpsig@1.0 message (the server takes ANS-104 and --dev JSON there)."""
        head = request.url.path.strip("/").split("/")[0]
        pid = head.removesuffix(paths.PROCESS_DEVICE) or None
        if pid is not None:
            return _answer(await self.schedule_incoming(await self.received(request), pid), True)
        msg = codec.for_process(await self.incoming(request, pid), pid)
        check_scheduler(msg, self.node.address)
        return _answer(await self.server.compute_gate.run(self.node.spawn, msg), True)

    async def signed(self, header_fields: dict[str, str | int], body: dict[str, object]) -> Response:
        """A JSON answer whose scalar fields are also signed headers (`ao-types` for integers), signed
        by the app's answer signer (server/signing.py) like every other answer."""
        payload = codec.dump_json(body)
        fields: dict[str, httpsig.Value] = {
            k: (v if isinstance(v, int) else v.encode()) for k, v in header_fields.items()
        }
        headers, _ = httpsig.encode(fields)
        headers += [
            ("content-type", codec.JSON),
            ("ao-result", "body"),
            ("content-digest", httpsig.content_digest(payload)),
        ]
        if self.server.signer is not None:
            headers += await self.server.signer.sign(headers)
        return Response(payload, headers=dict(headers))

    # -- read paths (GET or POST), dry-runs -------------------------------------------------------
    async def read(self, request: Request) -> Response:
        if request.method == "POST" and _is_schedule(request.url.path) and _is_httpsig(request):
            return await self.schedule(request)
        if request.method == "POST" and (_is_schedule(request.url.path) or request.url.path.startswith("/~")):
            return await self.device_paths.handle(request)  # /schedule POSTs and device paths are theirs
        target = parse_path(request.url.path, dict(request.query_params))
        msg = await self.incoming(request, target.pid, required=False) if request.method == "POST" else None
        as_json = (
            target.as_json
            or codec.wants_json(request.headers.get("accept"))
            or (msg is not None and (msg.tag("require-codec") or "").lower() == "application/json")
        )
        if target.action == "snapshot" and not as_json and not target.keys and not target.execute:
            return await snapshot_file.download(self.server, target.pid)
        value: object
        if target.execute:
            value = await self.server.compute_gate.run(self._dry_run, target, msg)
        else:
            value = paths.select(await self._state(target), target.keys)
        if target.keys[:1] == ("results",) and len(target.keys) == 1 and isinstance(value, dict):
            value = {**value, "raw": legacy_result(value)}  # aoconnect reads results from `raw`
        return _answer(value, as_json)

    async def _state(self, target: HbPath) -> Read:
        node, pid, gates = self.node, target.pid, self.server
        if target.action == "slot":
            return await gates.quick_gate.run(node.slot, pid)
        if target.action == "schedule":
            return await gates.quick_gate.run(node.schedule_page, pid, None, None)
        if target.action == "init":
            return await gates.quick_gate.run(node.init, pid)
        if target.action == "snapshot":
            return await gates.compute_gate.run(node.snapshot, pid)
        if target.action == "now" or target.slot is None:
            return await gates.compute_gate.run(node.now, pid)
        slot = (
            target.slot if isinstance(target.slot, int) else await gates.quick_gate.run(self._slot_of, pid, target.slot)
        )
        return await gates.compute_gate.run(node.compute, pid, slot)

    def _slot_of(self, pid: str, mid: str) -> int:
        assignment = self.node.assignment_of(pid, mid)
        if assignment is None:
            raise NotFound(f"message {mid} is not scheduled on {pid}")
        return assignment.slot

    def _dry_run(self, target: HbPath, msg: Message | None) -> dict[str, JSON]:
        tags = [(k, v) for k, v in (msg.tags if msg else ()) if k.lower() not in REQUEST_OPTIONS]
        tags += list(target.params.items())
        owner = msg.owner if msg else target.params.get("From", "")
        run = Message.create(owner=owner, target=target.pid, tags=tags, data=msg.data if msg else "")
        self.node.now(target.pid)
        results = legacy_result(self.node.dry_run(target.pid, run).get("results") or {})
        return {**results, "raw": results}  # aoconnect reads a dry-run's results from `raw`

    # -- the scheduler device and the relay -------------------------------------------------------
    async def scheduler(self, request: Request) -> Response:
        what = request.path_params["rest"].strip("/").lower()
        query = request.query_params
        pid = query.get("target") or query.get("process") or ""
        if not is_id(pid):
            raise BadInput("name the process: ?target=<process id>")
        if what == "slot":
            return _answer(await self.server.quick_gate.run(self.node.slot, pid), True)
        if what != "schedule":
            raise NotFound(f"~scheduler@1.0 answers schedule and slot, not {what!r}")
        if request.method == "POST":
            return _answer(await self.schedule_incoming(await self.received(request), pid), True)
        frm, to = _int(query.get("from")), _int(query.get("to"))
        if "aos-2" in (query.get("accept") or request.headers.get("accept") or ""):
            page = await self.server.quick_gate.run(su_page, self.node, pid, frm, to, SU_PAGE_LIMIT)
            return _answer(page, True)
        return _answer(await self.server.quick_gate.run(self.node.schedule_page, pid, frm, to), True)

    async def relay(self, request: Request) -> Response:
        query = request.query_params
        path = query.get("relay-path") or request.headers.get("relay-path") or ""
        if not path.startswith("/") or path.startswith("//"):
            raise BadInput("~relay@1.0 relays only to this node's own routes (relay-path=/...)")
        method = (query.get("relay-method") or "GET").upper()
        body = await codec.read_body(request, self.server.limits.max_body) if method == "POST" else b""
        import httpx  # with the first relay (engine/gateway.py says why)

        transport = httpx.ASGITransport(app=request.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://self") as client:
            got = await client.request(
                method, path, content=body or None, headers={"content-type": request.headers.get("content-type", "")}
            )
        return Response(got.content, status_code=got.status_code, media_type=got.headers.get("content-type"))


def _is_httpsig(request: Request) -> bool:
    """Signed in its fields, or a multipart body (whose messages may carry their own commitments)."""
    headers = request.headers
    return "signature-input" in headers or headers.get("content-type", "").lower().startswith("multipart/form-data")


def _is_schedule(path: str) -> bool:
    return path.rstrip("/").endswith(f"{paths.PROCESS_DEVICE}/schedule")


def _int(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    return codec.parse_int(text, "from/to")


def _answer(value: object, as_json: bool) -> Response:
    encoded = codec.encode(value, as_json=as_json)
    return Response(encoded.body, media_type=encoded.media_type)


def routes(server: Server) -> list[BaseRoute]:
    """Routes to put before the device paths (GETs of plain paths stay there)."""
    hb = Hyperbeam(server, DevicePaths(server))
    both = ["GET", "POST"]
    return [
        Route("/push", hb.push_spawn, methods=["POST"]),
        Route("/{pid:aoid}~process@1.0/push", hb.push, methods=["POST"]),
        Route("/~scheduler@1.0/{rest:path}", hb.scheduler, methods=both),
        Route("/~relay@1.0/{rest:path}", hb.relay, methods=both),
        Route("/{path:hbread}", hb.read, methods=both),
        Route("/{path:device}", hb.read, methods=["POST"]),
        Route("/{pid:aoid}/{rest:path}", hb.read, methods=["POST"]),
    ]
