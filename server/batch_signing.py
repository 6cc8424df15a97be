"""Answers signed in batches: one RSA signature covers every distinct answer waiting for one.

Why: an RSA-4096 signature costs 5-8 ms of a core, more than everything else an ingest answer
costs together, so one signature per answer caps a 2-core node at a few hundred answers/s. Here one
signer at a time makes signatures; answers that arrive while it works wait for the next one, and
that one covers all of them (up to MAX_BATCH). A lone answer (a sequential client) is signed as
always: its signature covers its own `content-digest`.

A batch signature covers `ao-batch`, `ao-result` and `content-type`, the same values on every answer
of the batch, so every answer carries the same (RFC 9421-valid) signature. `ao-batch` is the
structured-field list of the sha-256 digests of the batch's bodies; each answer also carries its
own `content-digest`, and a verifier checks that it matches the body and is a member of the signed
`ao-batch` (`covers_body` here). Under load (answers arrived while it signed) the signer rests
REST times as long as the signature took, so signing takes at most half a core however many
answers wait (they share the next one); a sequential client never waits for a rest.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
import anyio.to_thread

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet

Headers = list[tuple[bytes, bytes]]
MAX_BATCH = 32  # answers one signature covers at most (ao-batch: ~47 bytes each)
REST = 1.0  # under load, wait this many times a signature's duration before the next one


@dataclass(eq=False)
class _Waiting:
    status: int
    content_type: bytes
    body: bytes
    headers: Headers | None = None
    error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.headers is not None or self.error is not None


def batch_field(digests: list[bytes]) -> str:
    """The `ao-batch` value: sha-256 digests as a structured-field list of byte sequences."""
    return ", ".join(f":{base64.b64encode(d).decode()}:" for d in digests)


def covers_body(headers: Mapping[str, str], body: bytes) -> bool:
    """True when the answer's signed fields bind `body`: its `content-digest` matches the body and is
    signed directly (a lone answer) or named in the signed `ao-batch` list (a batch signature).
    The signature itself is checked as any RFC 9421 signature (httpsig.verify)."""
    digest = hashlib.sha256(body).digest()
    if headers.get("content-digest") != httpsig.content_digest(body):
        return False
    signed = headers.get("signature-input", "")
    if '"content-digest"' in signed:
        return True
    members = {m.strip() for m in headers.get("ao-batch", "").split(",")}
    return '"ao-batch"' in signed and f":{base64.b64encode(digest).decode()}:" in members


class BatchSigner:
    """`await sign(status, content_type, body)`: the signature headers of one answer (content-type
    left out: the answer has it). `single` signs a lone answer (SignatureCache.make)."""

    def __init__(
        self, wallet: Wallet, single: Callable[[int, bytes, bytes], Headers], max_batch: int = MAX_BATCH
    ) -> None:
        self.wallet = wallet
        self.single = single
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._round: anyio.Event | None = None  # set when the signature being made is done
        self._rest_until = 0.0

    async def sign(self, status: int, content_type: bytes, body: bytes) -> Headers:
        me = _Waiting(status, content_type, body)
        self._waiting.append(me)
        while not me.done:
            if self._round is None:
                await self._lead()
            else:
                await self._round.wait()
        if me.error is not None:
            raise me.error
        assert me.headers is not None
        return me.headers

    async def _lead(self) -> None:
        """Make the next signature (on a worker thread) for the answers waiting now."""
        self._round = current = anyio.Event()
        try:
            delay = self._rest_until - time.monotonic()
            if delay > 0 and len(self._waiting) < self.max_batch:
                await anyio.sleep(delay)  # answers arriving meanwhile share this signature
            batch = self._take()
            started = time.monotonic()
            try:
                made = await anyio.to_thread.run_sync(self._make, batch)
            except Exception as err:  # noqa: BLE001 - each waiting answer raises it
                for waiting in batch:
                    waiting.error = err
            else:
                for waiting, headers in zip(batch, made, strict=True):
                    waiting.headers = headers
            finished = time.monotonic()
            loaded = len(batch) > 1 or bool(self._waiting)  # answers came while it signed
            self._rest_until = finished + REST * (finished - started) if loaded else 0.0
        finally:
            self._round = None
            current.set()

    def _take(self) -> list[_Waiting]:
        """The oldest waiting answer and those with its status and content type, up to max_batch."""
        first = self._waiting[0]
        batch = [w for w in self._waiting if w.status == first.status and w.content_type == first.content_type]
        batch = batch[: self.max_batch]
        taken = set(map(id, batch))
        self._waiting = [w for w in self._waiting if id(w) not in taken]
        return batch

    def _make(self, batch: list[_Waiting]) -> list[Headers]:
        if len(batch) == 1:
            only = batch[0]
            return [self.single(only.status, only.content_type, only.body)]
        digests = [hashlib.sha256(w.body).digest() for w in batch]
        fields = [("ao-batch", batch_field(list(dict.fromkeys(digests)))), ("ao-result", "body")]
        content_type = batch[0].content_type
        if content_type:
            fields.append(("content-type", content_type.decode("latin-1")))
        signed = httpsig.sign(self.wallet, fields, status=batch[0].status)
        shared = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signed if k != "content-type"]
        return [[*shared, (b"content-digest", f"sha-256=:{base64.b64encode(d).decode()}:".encode())] for d in digests]
