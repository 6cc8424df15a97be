"""An ingest worker's JSON answers as the bytes it sends, with what every answer shares encoded once.

Why: the answer is the same as `ingest_front.json_headers` + `ingest_http.encode` make it (the same
fields in the same order, the same session signatures), but those build a list of header tuples, a
sorted copy of the signed fields, and encode each name and value again for every item; on the ingest
workers' path that was a tenth of the Python left beside the signature checks. Here the constant
lines (content-type, the session key, the signature-input, the CORS fields) are bytes made at start,
and an answer is its status line, length, extra fields, content-digest and session signature joined.
A wallet-signed run (AONODE_ANSWER_KEY=wallet) keeps the general path.
tests/test_ingest_answer.py compares the two byte for byte.
"""

from __future__ import annotations

from aonode.engine.answer_signature import SESSION_FIELD, BodySigner
from aonode.engine.httpsig_signature import content_digest
from aonode.server import codec, ingest_front
from aonode.server.ingest_http import Answer, Header, encode, status_head
from aonode.server.signing import AnswerSigner, SessionSigner


class JsonAnswers:
    """`answer(status, body, extra)`: the whole encoded answer of a JSON body."""

    def __init__(self, signer: AnswerSigner, cors: list[Header]) -> None:
        self.signer = signer
        self.cors = cors
        self.body_signer = BodySigner(signer.session, codec.JSON) if isinstance(signer, SessionSigner) else None
        self.content_type = b"content-type: " + codec.JSON.encode() + b"\r\n"
        if self.body_signer is not None:
            self.session = (
                b"\r\n"
                + SESSION_FIELD.encode()
                + b": "
                + self.body_signer.public.encode("latin-1")
                + b"\r\nsignature-input: "
                + self.body_signer.signature_input.encode("latin-1")
                + b"\r\nsignature: "
            )
        self.tail = b"".join(name + b": " + value + b"\r\n" for name, value in cors) + b"\r\n"

    async def answer(self, status: int, body: bytes, extra: list[Header]) -> bytes:
        if self.body_signer is None:
            return encode(Answer(status, await ingest_front.json_headers(body, extra, self.signer, self.cors), body))
        digest = content_digest(body)
        return b"".join(
            (
                status_head(status),
                b"content-length: %d\r\n" % len(body),
                self.content_type,
                *(name + b": " + value + b"\r\n" for name, value in extra),
                b"ao-result: body\r\ncontent-digest: ",
                digest.encode(),
                self.session,
                self.body_signer.signature(digest).encode("latin-1"),
                b"\r\n",
                self.tail,
                body,
            )
        )
