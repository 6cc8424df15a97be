"""Signed answers: every response the node gives carries httpsig@1.0 (RFC 9421) signatures.

The signed fields are the answer itself: `ao-result: body` (the single returned key is the body),
`content-type`, and `content-digest` binding the body bytes. By default they are signed by this run's
session key, which the wallet vouches for once (engine/answer_signature.py: two signatures per
answer, ~0.1 ms, made on the event loop); `verify_answer` there is the client's check. An operator
whose clients know only the node's RSA key sets AONODE_ANSWER_KEY=wallet: one wallet signature per
answer (~8 ms of a core), made on a worker thread one at a time and kept by what it covers, so a
repeated answer (node info, an error) costs a dictionary lookup.

Repeated state reads never reach this middleware: server/read_cache.py keeps their whole signed
answers. Answers a route already signed pass through.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import anyio
import anyio.to_thread

from aonode.engine import httpsig
from aonode.engine.answer_signature import SESSION_FIELD, Fields, SessionKey
from aonode.engine.crypto import Wallet
from aonode.engine.errors import StartupRefused

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CACHE_SIZE = 4096
ANSWER_KEY_ENV = "AONODE_ANSWER_KEY"
# Answer fields a browser's fetch may read (CORS): the signatures and the fields they cover.
EXPOSED = ("signature", "signature-input", "content-digest", "ao-result", "ao-types", "process", "slot", SESSION_FIELD)


class AnswerSigner(Protocol):
    """The signature headers over an answer's fields (names lowercase; content-type included)."""

    def sign_now(self, fields: Fields) -> Fields: ...

    async def sign(self, fields: Fields) -> Fields: ...


class SessionSigner:
    """The default: the session key signs every answer at once (no thread hop: it costs less)."""

    def __init__(self, wallet: Wallet) -> None:
        self.session = SessionKey.start(wallet)

    def sign_now(self, fields: Fields) -> Fields:
        return self.session.sign(fields)

    async def sign(self, fields: Fields) -> Fields:
        return self.session.sign(fields)


class WalletSigner:
    """AONODE_ANSWER_KEY=wallet: one wallet signature per answer, by the fields it covers (the body
    through its content-digest), least recently used first out; made on a worker thread, one at a
    time, so RSA neither blocks the event loop nor takes every core."""

    def __init__(self, wallet: Wallet, size: int = CACHE_SIZE) -> None:
        self.wallet = wallet
        self.size = size
        self._entries: OrderedDict[tuple[tuple[str, str], ...], Fields] = OrderedDict()
        self._limiter: anyio.CapacityLimiter | None = None  # made lazily: it belongs to the running loop

    def sign_now(self, fields: Fields) -> Fields:
        return httpsig.sign(self.wallet, fields)[len(fields) :]

    async def sign(self, fields: Fields) -> Fields:
        key = tuple(sorted(fields))
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        self._limiter = self._limiter or anyio.CapacityLimiter(1)
        made = await anyio.to_thread.run_sync(self.sign_now, fields, limiter=self._limiter)
        self._entries[key] = made
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return made


def answer_signer(wallet: Wallet) -> AnswerSigner:
    """The signer AONODE_ANSWER_KEY asks for: `session` (default) or `wallet` (else StartupRefused:
    `aonode serve` says so in one line)."""
    choice = os.environ.get(ANSWER_KEY_ENV, "session").strip().lower() or "session"
    if choice == "session":
        return SessionSigner(wallet)
    if choice == "wallet":
        return WalletSigner(wallet)
    raise StartupRefused(f"{ANSWER_KEY_ENV} is {choice!r}; it is 'session' (the default) or 'wallet'")


def answer_fields(content_type: bytes, body: bytes) -> Fields:
    """What an answer's signature covers: `ao-result`, `content-digest`, `content-type` if any."""
    fields = [("ao-result", "body"), ("content-digest", httpsig.content_digest(body))]
    if content_type:
        fields.append(("content-type", content_type.decode("latin-1")))
    return fields


class SignedResponses:
    """ASGI middleware adding the node's signatures to every complete (non-streamed) answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], signer: AnswerSigner) -> None:
        self.app = app
        self.signer = signer

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
                    fields = answer_fields(content_type, message.get("body", b""))
                    if any(k == b"connection" and v == b"close" for k, v in headers):
                        # refused before its upload was read: answered at once, no await in between
                        # (a thread hop here let the unread upload stall the connection, 2 in 24 tries)
                        signed = self.signer.sign_now(fields)
                    else:
                        signed = await self.signer.sign(fields)
                    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields if k != "content-type"]
                    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signed]
                await send({**pending, "headers": headers})
            await send(message)

        await self.app(scope, receive, send_signed)
