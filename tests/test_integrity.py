"""Issue 10 item 3: a stored message edited or damaged in the database is a clear 500-class error naming
it, never computed as if it were right (real SQLite file, real AOS image, real hypercorn)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.errors import DamagedRecord
from aonode.engine.store import SQLiteStore
from aonode.engine.store.checked import checked
from tests.helpers.httpnode import http_node
from tests.helpers.nodeutil import make_node, output

pytestmark = pytest.mark.slow  # computes on real images over edited rows

SPAWN = {"Tags": [{"name": "Module", "value": "aos2_0_6"}]}


def _edit(db: Path, old: bytes, new: bytes) -> int:
    """Replace bytes inside every stored message copy (assignments and messages tables; a scheduled
    message's body is stored once, in its assignment row, since 43c7c78)."""
    conn = sqlite3.connect(db)
    edited = 0
    for table, column, key in (("assignments", "message", "rowid"), ("messages", "body", "rowid")):
        for rowid, body in conn.execute(f"SELECT {key}, {column} FROM {table}").fetchall():
            if old in body:
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (body.replace(old, new), rowid))
                edited += 1
    conn.commit()
    conn.close()
    return edited


def test_an_edited_message_is_a_clear_error_never_wrong_state(tmp_path: Path) -> None:
    with http_node(tmp_path) as srv, srv.client() as c:
        pid = c.post("/~process@1.0/schedule", json=SPAWN).json()["process"]
        assert c.get(f"/{pid}~process@1.0/now/at-slot").text == "0"
        r = c.post(f"/{pid}~process@1.0/schedule", json={"Action": "Eval", "Data": "Counter = 'Inc'"})
        mid = r.json()["message"]
    assert _edit(tmp_path / "aonode.sqlite3", b"Counter = 'Inc'", b"Counter = 'Inb'") == 1

    with http_node(tmp_path) as srv, srv.client() as c:
        r = c.get(f"/{pid}~process@1.0/now")
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert mid in error and "slot 1" in error and "damaged" in error
        assert c.get(f"/{pid}~process@1.0/compute/at-slot").text == "0"  # nothing computed on it
        assert c.get(f"/{pid}~process@1.0/now").status_code == 500  # and it stays refused
        assert c.get("/~meta@1.0/info").status_code == 200


def test_a_signed_item_edited_consistently_fails_its_signature(tmp_path: Path) -> None:
    """Even with a valid row checksum (an edit that rewrote it), the signed item vouches for the fields."""
    from aonode.engine.store.base import Assignment

    item = build_and_sign(Wallet.generate("ed25519"), data="Inc", tags=[("Action", "Eval")], target="P" * 43)
    msg = item.to_message()
    store = SQLiteStore(tmp_path)
    store.append_assignment(Assignment(process="P" * 43, slot=1, message_id=msg.id, timestamp=1, block_height=1,
                                       block_hash=None, epoch=0, hash_chain="x", message=msg))
    loaded = store.get_assignment("P" * 43, 1)
    assert loaded is not None and checked(loaded) is loaded
    forged = msg.replace(data="Inb")
    conn = sqlite3.connect(tmp_path / "aonode.sqlite3")
    conn.execute("UPDATE assignments SET message = ?", (forged.to_cbor(),))
    conn.commit()
    conn.close()
    loaded = store.get_assignment("P" * 43, 1)
    assert loaded is not None and loaded.message.data == "Inb"  # the row decodes (its checksum was rewritten)
    with pytest.raises(DamagedRecord, match="differ from the signed item"):
        checked(loaded)
    store.close()


def test_a_hyperbeam_definition_is_stored_as_signed_and_runs_aos(tmp_path: Path) -> None:
    """genesis-wasm@1.0 names this node's AOS stack; the definition keeps every tag it was signed with
    (the process sees them), so slot 0 checks against its item like any other message."""
    wallet = Wallet.generate("ed25519")
    genesis = [("Data-Protocol", "ao"), ("Type", "Process"), ("Module", "aos2_0_6"),
               ("Execution-Device", "genesis-wasm@1.0"), ("Device-Stack", '["genesis-wasm@1.0", "patch@1.0"]')]
    node = make_node(tmp_path)
    try:
        pid = node.spawn(build_and_sign(wallet, data="1984", tags=genesis).to_message())["process"]
        stored = node.store.get_assignment(pid, 0)
        assert stored is not None and checked(stored) is stored
        assert all(tag in stored.message.tags for tag in genesis)
        code = "return ao.env.Process.Tags['Execution-Device'] .. ' ' .. 6 * 7"
        node.schedule(pid, build_and_sign(wallet, data=code, tags=[("Action", "Eval")], target=pid).to_message())
        assert output(node.now(pid)) == "genesis-wasm@1.0 42"
    finally:
        node.close()
