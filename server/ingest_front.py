"""The schedule POSTs straight to the ingest, past Starlette's routing and the middleware chain.

Why: under signed ingest the event loop is the one saturated core, and each answer went through the
router, a Request object, five middlewares each wrapping `send`, and a Response object: ~15-20% of
the loop's time per item, more than the answer's signature (bench/bench_ingest.py, a GIL profile).
This layer sits first in the app's middleware and takes only the three shapes of a signed message
onto an existing process, with a declared body within the limit:

- `POST /` (the legacy MU; when that route is mounted) with a data item that is not a spawn,
- `POST /~scheduler@1.0/schedule?target=<pid>` (or `process=`),
- `POST /<pid>~process@1.0/schedule` with an httpsig@1.0 message or an ANS-104 item.

Everything else, a spawn included (its body is handed on as read), goes down the full app. The
answer is the one the full app gives: the same JSON, the same signature headers (server/signing.py),
the same CORS headers, counted in the same metrics; errors are JSON with the engine error's status.
`AONODE_LEAN_INGEST=0` sends these through the full app too (to compare).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import URL

from aonode.engine import httpsig
from aonode.engine.errors import AONodeError, Busy
from aonode.engine.message import is_id
from aonode.server import codec, observe, paths
from aonode.server.gates import RETRY_AFTER_SECONDS
from aonode.server.hyperbeam import Hyperbeam, Incoming
from aonode.server.legacy.mu import checked_message, data_item_answer, is_spawn
from aonode.server.signing import AnswerSigner, Message, Receive, Scope, Send, answer_fields
from aonode.server.state import Server

App = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = tuple[bytes, bytes]
SCHEDULER_PATH = "/~scheduler@1.0/schedule"
PROCESS_SCHEDULE = f"{paths.PROCESS_DEVICE}/schedule"


def lean_ingest_enabled() -> bool:
    return os.environ.get("AONODE_LEAN_INGEST", "1") != "0"


class IngestFront:
    """ASGI middleware: the schedule POSTs above answered here, the rest passed to `app`."""

    def __init__(self, app: App, server: Server, hyperbeam: Hyperbeam, mu: bool, cors: Sequence[Header]) -> None:
        self.app = app
        self.server = server
        self.hyperbeam = hyperbeam
        self.mu = mu  # the legacy MU's `POST /` is mounted
        self.cors = list(cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = schedule_target(scope, self.mu, self.server.limits.max_body)
        if target is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = await read_all(receive)
        try:
            if target.pid is not None:
                got = incoming(scope, body)
                answer: object = await self.hyperbeam.schedule_incoming(got, target.pid)
            else:
                item = codec.parsed_data_item(body)
                if is_spawn(item):
                    await self.app(scope, replay(body, receive), send)  # a spawn computes: the full MU route
                    return
                answer = data_item_answer(item.id, await self.server.ingest.schedule(lambda: checked_message(item)))
            status, encoded, extra = 200, codec.dump_json(answer), list[Header]()
        except AONodeError as err:  # as app.py's handlers answer them
            status, encoded, extra = error_answer(err)
        except Exception as err:  # noqa: BLE001 - answered as the app answers an internal error
            status, encoded, extra = 500, codec.error_body(f"internal error: {type(err).__name__}: {err}"), []
        observe.record(scope["path"], "POST", status, time.perf_counter() - started)  # counted before it is sent
        await self._answer(send, status, encoded, extra)

    async def _answer(self, send: Send, status: int, body: bytes, extra: list[Header]) -> None:
        await send_json(send, status, body, extra, self.server.signer, self.cors)


@dataclass(frozen=True)
class Target:
    """A schedule POST this layer takes: onto `pid`, or (None) the legacy MU's, whose item names it."""

    pid: str | None


def schedule_target(scope: Scope, mu: bool, max_body: int) -> Target | None:
    """The request's Target when it is one of the schedule POSTs above with a declared body within
    `max_body`; None for anything else (chunked or too large included: the app's read_body says so)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    pid = _scheduler_target(scope) if path.rstrip("/") == SCHEDULER_PATH else None
    if pid is None and path.endswith(PROCESS_SCHEDULE) and _is_message(scope):
        head = path[1:].split("/", 1)[0].removesuffix(paths.PROCESS_DEVICE)
        pid = head if is_id(head) and path.rstrip("/") == f"/{head}{PROCESS_SCHEDULE}" else None
    if pid is None and not (mu and path == "/" and not _query_facts(scope["query_string"])[1]):
        return None
    declared = _header(scope, b"content-length")
    if declared is None or not declared.isdigit() or int(declared) > max_body:
        return None
    return Target(pid)


def carries_data_item(scope: Scope) -> bool:
    """The request's body is an ANS-104 item, as hyperbeam.signed_message tells (the last field of a
    name counts, as in its dict of the headers): read without building the Incoming it needs otherwise."""
    fields = dict(scope["headers"])
    content_type, device = fields.get(b"content-type"), fields.get(b"codec-device", b"")
    return codec.is_data_item(None if content_type is None else content_type.decode("latin-1")) or (
        device.decode("latin-1").lower() == "ans104@1.0"
    )


def incoming(scope: Scope, body: bytes) -> Incoming:
    """The request as hyperbeam.py's decode reads it (Starlette's URL and header text)."""
    return Incoming("POST", request_url(scope), _headers(scope), body)


def httpsig_request(scope: Scope, body: bytes) -> httpsig.Request:
    """What hyperbeam.signed_message decodes of `incoming(scope, body)` when it carries no data item."""
    return httpsig.Request("POST", request_url(scope), _headers(scope), body)


def request_url(scope: Scope) -> str:
    """`str(URL(scope=scope))`, remembered for short targets: a client posting to one process sends the
    same path, query and Host with every message, and Starlette's URL was ~10% of a worker's httpsig check."""
    path, query, host = scope["path"], scope["query_string"], _header_bytes(scope, b"host")
    if len(path) + len(query) + len(host or b"") > MAX_REMEMBERED_URL:
        return str(URL(scope=scope))
    server = scope.get("server")
    return _url(scope.get("scheme", "http"), None if server is None else tuple(server), path, query, host)


@functools.lru_cache(maxsize=256)
def _url(scheme: str, server: tuple[str, ...] | None, path: str, query: bytes, host: bytes | None) -> str:
    """The URL of a scope with these parts: all that Starlette's URL reads of one."""
    headers = [] if host is None else [(b"host", host)]
    scope = {"type": "http", "scheme": scheme, "server": server, "path": path, "query_string": query}
    return str(URL(scope={**scope, "headers": headers}))


async def send_json(
    send: Send, status: int, body: bytes, extra: list[Header], signer: AnswerSigner | None, cors: list[Header]
) -> None:
    """JSON `body` as the app's middlewares answer it."""
    headers = await json_headers(body, extra, signer, cors)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def json_headers(
    body: bytes, extra: list[Header], signer: AnswerSigner | None, cors: list[Header]
) -> list[Header]:
    """The header fields of a JSON answer as the app's middlewares give them: signed fields, signatures, then CORS."""
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", codec.JSON.encode()), *extra]
    if signer is not None:
        fields = answer_fields(codec.JSON.encode(), body)
        signed = await signer.sign(fields)
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields if k != "content-type"]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signed]
    return headers + cors


def error_answer(err: AONodeError) -> tuple[int, bytes, list[Header]]:
    """(status, JSON body, extra headers) of an engine error, as app.py answers it."""
    status = err.status if 400 <= err.status < 600 else 500
    return status, codec.error_body(str(err) or type(err).__name__), retry_after(503) if isinstance(err, Busy) else []


def query_facts(query_string: bytes) -> tuple[str | None, bool]:
    """(the process a scheduler POST's query names, whether it asks `assign`), its fields decoded as
    Starlette's request.query_params reads them (`%61ssign` is `assign`)."""
    query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    pid = query.get("target") or query.get("process") or ""
    return (pid if is_id(pid) else None), "assign" in query


_remembered_facts = functools.lru_cache(maxsize=256)(query_facts)
MAX_REMEMBERED_QUERY = 160  # bytes: `?target=<43-char id>` and a few fields more
MAX_REMEMBERED_URL = 400  # characters of path, query and Host: a process's schedule path and then some


def _query_facts(query_string: bytes) -> tuple[str | None, bool]:
    """query_facts, remembered for short query strings: a client posting to one process sends the same
    query with every item (parse_qsl was ~8 us of a worker's request), a long one is parsed each time."""
    if len(query_string) > MAX_REMEMBERED_QUERY:
        return query_facts(query_string)
    return _remembered_facts(query_string)


def _scheduler_target(scope: Scope) -> str | None:
    return _query_facts(scope["query_string"])[0]


def _is_message(scope: Scope) -> bool:
    """A signed httpsig@1.0 request, a multipart body, or an ANS-104 item (unsigned JSON stays the app's)."""
    content_type = _header(scope, b"content-type") or ""
    if _header(scope, b"signature-input") is not None or content_type.lower().startswith("multipart/form-data"):
        return True
    return codec.is_data_item(content_type)


def _header(scope: Scope, name: bytes) -> str | None:
    value = _header_bytes(scope, name)
    return None if value is None else value.decode("latin-1")


def _header_bytes(scope: Scope, name: bytes) -> bytes | None:
    """The first field `name`, as Starlette's URL reads the Host field."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _headers(scope: Scope) -> tuple[tuple[str, str], ...]:
    """As Starlette's `request.headers.items()`."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])


async def read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app's own read would see the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def replay(body: bytes, then: Receive) -> Receive:
    """A `receive` that gives the body already read, then what the connection says (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def retry_after(status: int) -> list[Header]:
    """The Retry-After field of a 503 the sequencer gave (its `Busy`), the value app.py's handler sets."""
    return [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status == 503 else []
