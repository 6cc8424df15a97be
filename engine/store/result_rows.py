"""A slot's result and cache changes in their stored form (CBOR, the same in both SQL stores),
made when the slot is finished rather than inside its batch's transaction.

Why: a computed batch of 64 slots spent ~5 ms of its store write encoding results and changes,
all of it holding the GIL on the compute thread, while the wasm-ahead thread (devices/wasm_ahead.py)
came back from wasm and waited for the GIL to go on; encoded one slot at a time, each piece runs
while that thread is in wasm. The stores take either form, so callers that store one result now
(put_result, the tests) keep handing them plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from aonode.engine.jsondata import JsonObject


@dataclass(frozen=True)
class Encoded:
    """CBOR bytes exactly as the store keeps them (cbor2.dumps of a JSON value)."""

    body: bytes


def encoded(value: object) -> Encoded:
    return Encoded(cbor2.dumps(value))


def stored(result: JsonObject | Encoded) -> bytes:
    """The body a results row keeps for `result`."""
    return result.body if isinstance(result, Encoded) else cbor2.dumps(result)
