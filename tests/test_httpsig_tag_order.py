"""An httpsig@1.0 message's tags come in one order in every process: the order of the signature's
components (unsigned: the request's fields). The node's process and its ingest workers decode the same
request in different processes, so an order taken from a set (each process's string hash seed) gave the
same signed message its tags in another order on a worker than on the node (another `Tags` list for AOS,
another answer body). Real decoding in subprocesses with different PYTHONHASHSEED values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aonode.engine import httpsig
from aonode.engine.crypto import Wallet

PID = "P" * 43
FIELDS = {"action": b"Ping", "target": PID.encode(), "data": b"1", "nonce": b"n-1", "quantity": b"7", "x-b": b"b"}
CHILD = """
import json, sys
from aonode.server.hyperbeam import Incoming, signed_message
request = json.load(open(sys.argv[1]))
url = "http://127.0.0.1:8734/" + request["pid"] + "~process@1.0/schedule"
headers = tuple(map(tuple, request["headers"]))
message, decoded = signed_message(Incoming("POST", url, headers, request["body"].encode()))
print(json.dumps([list(message.tags) if message else None, list(decoded.fields) if decoded else None]))
"""


def _decoded_in(seed: int, request: Path) -> list[object]:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    child = subprocess.run([sys.executable, "-c", CHILD, str(request)], env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    return list(json.loads(child.stdout))


def test_a_signed_messages_tags_follow_its_signature_in_every_process(tmp_path: Path) -> None:
    signed = httpsig.signed_message(Wallet.generate("ed25519"), FIELDS)
    headers = [[k.lower(), v] for k, v in dict(signed.headers).items()]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"pid": PID, "headers": headers, "body": signed.body.decode()}))
    seen = [_decoded_in(seed, request) for seed in range(4)]
    tags = [got[0] for got in seen]
    assert all(got == tags[0] for got in tags), tags  # failed before: the order changed with the seed
    signature_input = dict(signed.headers)["signature-input"]
    components = signature_input.split("(", 1)[1].split(")", 1)[0].replace('"', "").split()
    named = [name.lower() for name, _ in tags[0]]  # type: ignore[union-attr]
    assert named == [c for c in components if c in named]  # in the signature's order


def test_an_unsigned_requests_fields_keep_the_requests_order(tmp_path: Path) -> None:
    headers = [["content-type", "text/plain"], ["zeta", "1"], ["action", "Ping"], ["mid", "2"], ["alpha", "3"]]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"pid": PID, "headers": headers, "body": ""}))
    fields = [_decoded_in(seed, request)[1] for seed in range(4)]
    assert all(got == ["zeta", "action", "mid", "alpha"] for got in fields), fields
