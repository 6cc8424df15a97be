"""Signed answers: every response the node gives carries an httpsig@1.0 signature by its wallet.

The signed fields are the answer itself: `ao-result: body` (the single returned key is the body),
`content-type`, and `content-digest` binding the body bytes; any RFC 9421 verifier checks them with the
`keyid` (the node's public key), and the node's address is base64url(sha256(keyid)).

Repeated state reads never reach this middleware: server/read_cache.py keeps their whole signed
answers by (process, slot, path, representation). For the other answers (node info, schedule pages,
errors) signatures are kept by what they cover (status, content type, sha-256 of the body): a
repeated answer costs one hash and one dictionary lookup instead of an RSA signature. Answers a route
already signed pass through. Each answer is signed over its own content-digest; an operator who
prefers ingest throughput sets AONODE_BATCH_SIGNING=1 (server/batch_signing.py), at the price that
busy answers then bind their bodies through `ao-batch`, which only an ao-aware verifier checks.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.to_thread

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet
from aonode.server.batch_signing import BatchSigner

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CACHE_SIZE = 4096
# Scope key server/read_cache.py sets on an answer it keeps for every later reader of that (slot, path):
# it gets a signature of its own over its content-digest, never a batch's (which RFC 9421 verifiers
# that bind the body through a signed content-digest refuse); one per (slot, path), so batching gains nothing.
SIGN_ALONE = "aonode.sign_alone"
# Answer fields a browser's fetch may read (CORS): the signature and the fields it covers.
EXPOSED = ("signature", "signature-input", "content-digest", "ao-result", "ao-types", "process", "slot", "ao-batch")


class SignatureCache:
    """Signature headers by (status, content type, body sha-256); least recently used go first.

    Lookups and inserts run on the event loop; signatures (milliseconds each) are made on a worker
    thread, one at a time, and distinct answers that wait meanwhile (a burst of writes) share the
    next one (server/batch_signing.py), so they neither block the loop nor take the machine's cores.
    """

    def __init__(self, wallet: Wallet, size: int = CACHE_SIZE, batching: bool | None = None) -> None:
        self.wallet = wallet
        self.size = size
        # Off unless the operator asks (AONODE_BATCH_SIGNING=1): a batch signature binds each body through
        # `ao-batch`, which a plain RFC 9421 verifier checking a signed content-digest refuses.
        self.batching = os.environ.get("AONODE_BATCH_SIGNING") == "1" if batching is None else batching
        self._entries: OrderedDict[tuple[int, bytes, bytes], list[tuple[bytes, bytes]]] = OrderedDict()
        self.batches = BatchSigner(wallet, self.make)
        self._alone: anyio.CapacityLimiter | None = None  # made lazily: it belongs to the running loop

    async def headers_for(
        self, status: int, content_type: bytes, body: bytes, alone: bool = False
    ) -> list[tuple[bytes, bytes]]:
        key = (status, content_type, hashlib.sha256(body).digest())
        found = self._entries.get(key)
        if found is not None and not (alone and any(k == b"ao-batch" for k, _ in found)):
            self._entries.move_to_end(key)
            return found
        if alone or not self.batching:
            self._alone = self._alone or anyio.CapacityLimiter(1)
            made = await anyio.to_thread.run_sync(self.make, status, content_type, body, limiter=self._alone)
        else:
            made = await self.batches.sign(status, content_type, body)
        self._entries[key] = made
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return made

    def make(self, status: int, content_type: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
        """The signature headers of one answer (without content-type, which the answer has)."""
        fields = [("ao-result", "body"), ("content-digest", httpsig.content_digest(body))]
        if content_type:
            fields.append(("content-type", content_type.decode("latin-1")))
        signed = httpsig.sign(self.wallet, fields, body=body, status=status)
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signed if k != "content-type"]


class SignedResponses:
    """ASGI middleware adding the node's signature to every complete (non-streamed) answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], wallet: Wallet) -> None:
        self.app = app
        self.cache = SignatureCache(wallet)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        start: Message | None = None

        async def send_signed(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if start is not None and message["type"] == "http.response.body":
                pending, start = start, None
                headers = list(pending.get("headers", ()))
                if not head and not message.get("more_body") and not any(k == b"signature" for k, _ in headers):
                    content_type = next((v for k, v in headers if k == b"content-type"), b"")
                    body = message.get("body", b"")
                    if any(k == b"connection" and v == b"close" for k, v in headers):
                        # refused before its upload was read: answered at once, no await in between
                        # (a thread hop here let the unread upload stall the connection, 2 in 24 tries)
                        headers += self.cache.make(pending["status"], content_type, body)
                    else:
                        headers += await self.cache.headers_for(
                            pending["status"], content_type, body, alone=bool(scope.get(SIGN_ALONE))
                        )
                await send({**pending, "headers": headers})
            await send(message)

        await self.app(scope, receive, send_signed)
