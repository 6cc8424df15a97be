"""A scheduled message checked against what vouches for it before it is computed (issue 10 item 3).

The row's checksum is checked whenever a message is decoded (Message.from_cbor). Before compute,
a message that carries its signed ANS-104 item is checked further: the item parses, its signature
verifies, its id is the message id and the fields the process sees are the item's. A mismatch is a
DamagedRecord naming the process, slot and message: the slot is never computed on wrong data.
"""

from __future__ import annotations

from aonode.engine.ans104 import DataItem
from aonode.engine.errors import AONodeError, DamagedRecord
from aonode.engine.store.base import Assignment


def checked(a: Assignment) -> Assignment:
    """`a` when its message matches its id (and its signed item, if any); DamagedRecord otherwise."""
    msg = a.message
    where = f"message {a.message_id} at slot {a.slot} of process {a.process}"
    if msg.id != a.message_id:
        raise DamagedRecord(f"{where} is damaged: the stored message has id {msg.id!r:.60}")
    if msg.raw is None:
        return a
    try:
        item = DataItem.parse(msg.raw)
        valid = item.verify()
    except (AONodeError, ValueError, TypeError, IndexError) as err:
        raise DamagedRecord(f"{where} is damaged: its signed item does not parse ({err})") from err
    if not valid or item.id != msg.id:
        raise DamagedRecord(f"{where} is damaged: its signed item's signature or id does not match")
    signed = item.to_message()
    same = (signed.owner, signed.target, signed.anchor, signed.data) == (msg.owner, msg.target, msg.anchor, msg.data)
    # The node may add tags after signing (commitments, From-Process); it never removes or edits one.
    if not same or any(tag not in msg.tags for tag in signed.tags):
        raise DamagedRecord(f"{where} is damaged: its fields differ from the signed item's")
    return a
