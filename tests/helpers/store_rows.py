"""Messages and assignments the store tests write (test_store.py, test_store_tip.py)."""

from __future__ import annotations

import hashlib

from aonode.engine.message import Message, b64url
from aonode.engine.store import Assignment

OWNER = b64url(hashlib.sha256(b"store-owner").digest())


def msg(n: int) -> Message:
    return Message.create(owner=OWNER, tags=[("Action", "Test"), ("N", str(n))], data=f"m{n}")


def assignment(pid: str, slot: int, m: Message) -> Assignment:
    return Assignment(
        process=pid,
        slot=slot,
        message_id=m.id,
        timestamp=1000 + slot,
        block_height=7,
        block_hash=None,
        epoch=0,
        hash_chain=b64url(bytes([slot])),
        message=m,
    )
