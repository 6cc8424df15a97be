"""What signing one node answer costs, by how it is signed (issue 13 goal 3: 1,500 answers/s on 2 cores).

The same answer fields (`ao-result`, `content-digest` of an assignment-sized JSON body, `content-type`)
signed, in this process, one at a time, by:
  session   engine/answer_signature.SessionKey.sign: the default, the ed25519 session key's signature
            plus the wallet's vouch made once (what server/signing.py does per answer);
  wallet    httpsig.sign with the node's RSA-4096 wallet (AONODE_ANSWER_KEY=wallet, per distinct answer);
  library   the `http-message-signatures` package signing the same fields with an ed25519 key (the
            path not taken: it parses and validates every component per call).
CPU µs per answer of this thread, each next to the session path's in the same run (the ratio is the
number to quote on a shared machine), and what share of a 1,500 answers/s budget it is.

    python bench/bench_answer_signing.py [--answers 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

from aonode.engine import httpsig
from aonode.engine.answer_signature import SessionKey, verify_answer
from aonode.engine.crypto import Wallet
from aonode.server.signing import answer_fields

BODY = (
    b'{"process":"'
    + b"p" * 43
    + b'","slot":12,"message":"'
    + b"m" * 43
    + b'","hash-chain":"'
    + b"h" * 43
    + b'","timestamp":1700000000000,"block-height":1500000}'
)
JSON = b"application/json"


def cpu_us(count: int, sign: Callable[[bytes], object]) -> float:
    bodies = [BODY + b" " * (i % 7) for i in range(count)]  # distinct answers: nothing cached
    started = time.process_time()
    for body in bodies:
        sign(body)
    return (time.process_time() - started) * 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=2000)
    args = parser.parse_args()
    wallet = Wallet.generate("rsa")
    session = SessionKey.start(wallet)
    fields = answer_fields(JSON, BODY)
    assert verify_answer(fields + session.sign(fields), BODY) == wallet.address
    key = ed25519.Ed25519PrivateKey.generate()

    class Keys(HTTPSignatureKeyResolver):
        def resolve_private_key(self, key_id: str) -> ed25519.Ed25519PrivateKey:
            return key

    library = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys())
    request = httpx.Request("GET", "http://node/")

    def with_library(body: bytes) -> None:
        answer = httpx.Response(200, headers=answer_fields(JSON, body), request=request)
        library.sign(
            answer,
            key_id=session.public,
            covered_component_ids=("ao-result", "content-digest", "content-type"),
            use_existing_digest=True,
        )

    rows = {
        "session (default)": cpu_us(args.answers, lambda body: session.sign(answer_fields(JSON, body))),
        "wallet (AONODE_ANSWER_KEY=wallet)": cpu_us(
            max(args.answers // 20, 20), lambda body: httpsig.sign(wallet, answer_fields(JSON, body))
        ),
        "library (http-message-signatures)": cpu_us(args.answers, with_library),
    }
    base = rows["session (default)"]
    print(f"{'signed by':<36} {'CPU us/answer':>14} {'x session':>10} {'share of 1,500/s':>17}")
    for name, us in rows.items():
        print(f"{name:<36} {us:>14.0f} {us / base:>10.1f} {us * 1500 / 1e6:>16.0%}")


if __name__ == "__main__":
    main()
