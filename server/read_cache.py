"""Whole signed answers to state reads, kept by (process, slot, path, representation).

The state of a process after slot N never changes, so neither does the answer to a read of it:
`GET /<pid>~process@1.0/now/cache/<key>` at slot N is the same status, headers (CORS, content type,
the node's httpsig signature) and body every time. This middleware sits outside CORS and signing
(server/app.py), so a repeated read costs a remembered path parse, the process's current slot (two
in-memory lookups in the Node) and one dictionary lookup: no routing, no JSON encoding, no hashing
and no signature. Nothing is ever invalidated: a new slot is a new key, and the old answers age
out of the LRU.

What is kept: GET reads of `now` and `compute` (`compute/<slot>` too, once that slot is computed)
that answered 200 or 404 in one body, whichever path spelling or `~json@1.0` form named them
(`paths.parse_cached` normalizes), and whether JSON was asked for (`Accept`). `now` is only looked
up when nothing is pending (then it answers the last computed state, without work); otherwise the
request goes through and its answer is not kept. An answer is kept only when the slot read before
and after it is the same, so it can only be the answer at that slot. `~lua@5.3a` reads keep their
own cache (engine/lua) and pass through. Bounds: MAX_BYTES of answers in all (headers + body;
64 MiB), at most MAX_ENTRIES keys, and none bigger than MAX_ANSWER (1 MiB): least recently used go
first. Concurrent misses of one key wait for the first instead of each signing the same answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio

from aonode.engine.errors import AONodeError
from aonode.server import codec, paths
from aonode.server.api import NodeAPI

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 65_536
MAX_ANSWER = 1024 * 1024
ENTRY_OVERHEAD = 256  # bytes a kept answer costs beyond its headers and body (key, tuple, list)
KEPT_STATUSES = frozenset({200, 404})  # a key missing at a slot stays missing at that slot
Key = tuple[paths.ProcessPath, int, bool]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + ENTRY_OVERHEAD


class AnswerCache:
    """A least-recently-used map of answers, bounded by total bytes and by count."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self.hits = 0
        self._entries: OrderedDict[Key, Answer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Answer | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: Key, answer: Answer) -> None:
        if answer.size > min(MAX_ANSWER, self.max_bytes) or key in self._entries:
            return
        self._entries[key] = answer
        self.bytes += answer.size
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.size


def state_read(scope: Scope) -> paths.ProcessPath | None:
    """The parsed path when the request is a GET of a process state this cache may keep."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if "=" in path or "&" in path:  # `results=<slot>`, `as=execution` dry-runs, `&k=v`: not kept
        return None
    try:
        target = paths.parse_cached(path, scope["query_string"].decode("latin-1"))
    except AONodeError:
        return None
    if (
        not isinstance(target, paths.ProcessPath)
        or target.pid is None
        or target.lua is not None
        or target.action not in paths.STATE_ACTIONS
    ):
        return None
    return target


def slot_of(node: NodeAPI, target: paths.ProcessPath) -> int | None:
    """The slot whose state answers `target` right now, when that state is computed; else None."""
    pid = target.pid
    assert pid is not None
    try:
        if target.action == "now" and node.pending(pid) != 0:
            return None  # `now` has work to do first
        computed = node.compute(pid, None).get("at-slot", -1)
    except AONodeError:
        return None  # no such process: the app says so
    if target.slot is not None:
        return target.slot if 0 <= target.slot <= computed else None
    return computed if computed >= 0 else None


def _accepts_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return codec.wants_json(value.decode("latin-1"))
    return False


class CachedReads:
    """ASGI middleware answering repeated state reads from an AnswerCache."""

    def __init__(self, app: ASGIApp, node: NodeAPI, cache: AnswerCache | None = None) -> None:
        self.app = app
        self.node = node
        self.cache = cache if cache is not None else AnswerCache()
        self._inflight: dict[Key, anyio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = state_read(scope) if scope["type"] == "http" else None
        slot = slot_of(self.node, target) if target is not None else None
        if target is None or slot is None:
            await self.app(scope, receive, send)
            return
        key: Key = (target, slot, target.as_json or _accepts_json(scope))
        found = self.cache.get(key)
        if found is None and key in self._inflight:  # the same answer is being made: wait for it
            await self._inflight[key].wait()
            found = self.cache.get(key)
        if found is not None:
            await send({"type": "http.response.start", "status": found.status, "headers": found.headers})
            await send({"type": "http.response.body", "body": found.body})
            return
        done = self._inflight.setdefault(key, anyio.Event())
        try:
            await self._answer_and_keep(scope, receive, send, key)
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set()

    async def _answer_and_keep(self, scope: Scope, receive: Receive, send: Send, key: Key) -> None:
        sent: list[ASGIMessage] = []

        async def keep(message: ASGIMessage) -> None:
            sent.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        if len(sent) != 2 or sent[0]["type"] != "http.response.start" or sent[1].get("more_body"):
            return  # streamed or unusual: not kept
        start, body = sent
        if start["status"] not in KEPT_STATUSES or slot_of(self.node, key[0]) != key[1]:
            return  # an error that may pass, or the state moved while answering
        if any(name == b"connection" for name, _ in start.get("headers", ())):
            return  # about this request's connection (a body left unread)
        self.cache.put(key, Answer(start["status"], list(start.get("headers", ())), bytes(body.get("body", b""))))
