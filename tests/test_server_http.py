"""Every HTTP path and status, against a real Node behind a real hypercorn server on loopback."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from tests.helpers.httpnode import HttpNode, http_node

MODULE = "aos2_0_6"
UNKNOWN = "U" * 43


def spawn(c: httpx.Client, data: str = "", *tags: dict[str, str]) -> str:
    body = {"Tags": [{"name": "Module", "value": MODULE}, *tags], "Data": data}
    r = c.post("/~process@1.0/schedule", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["slot"] == 0
    return answer["process"]


def eval_body(code: str) -> dict:
    return {"Tags": [{"name": "Action", "value": "Eval"}], "Data": code}


@pytest.fixture(scope="module")
def pid(c: httpx.Client) -> str:
    """An AOS process with two scheduled messages (slot 1: a table in a patch, slot 2: an Eval)."""
    pid = spawn(c)
    r = c.post(f"/{pid}~process@1.0/schedule", json=eval_body(
        "Send({device='patch@1.0', cache={greeting='hello', counts={a=1, b=2}}}); return 'patched'"))
    assert r.status_code == 200, r.text
    r = c.post(f"/{pid}~process@1.0/schedule", json={"Action": "Eval", "data": "return 1 + 1"})
    assert r.status_code == 200, r.text
    return pid


def test_info(c: httpx.Client, srv: HttpNode) -> None:
    r = c.get("/~meta@1.0/info")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    info = r.json()
    assert info["address"] == srv.node.address
    assert MODULE in json.dumps(info["modules"])
    assert c.get("/~meta@1.0/info/address").text == srv.node.address
    head = c.head("/~meta@1.0/info")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(r.content)


def test_spawn_answers_process_and_slot_zero(c: httpx.Client) -> None:
    r = c.post("/~process@1.0/schedule", json={"Module": MODULE, "Name": "flat-spawn"})
    assert r.status_code == 200
    answer = r.json()
    assert answer["slot"] == 0 and len(answer["process"]) == 43
    assert c.get(f"/{answer['process']}~process@1.0/slot").json()["current"] == 0
    assert c.get(f"/{answer['process']}~process@1.0/slot/current").text == "0"


def test_schedule_answers_the_assignment(c: httpx.Client, pid: str) -> None:
    r = c.post(f"/{pid}~process@1.0/schedule", json=eval_body("return 'third'"))
    assert r.status_code == 200
    assignment = r.json()
    assert assignment["process"] == pid and assignment["slot"] >= 3
    assert len(assignment["message"]) == 43 and assignment["hash-chain"]
    page = c.get(f"/{pid}~process@1.0/schedule", params={"from": 0, "to": assignment["slot"]}).json()
    slots = [a["slot"] for a in page["assignments"]]
    assert slots == list(range(assignment["slot"] + 1)) and page["continues"] is False
    assert page["assignments"][-1]["hash-chain"] == assignment["hash-chain"]
    one = c.get(f"/{pid}~process@1.0/schedule?from=1&to=1").json()
    assert [a["slot"] for a in one["assignments"]] == [1]
    whole = c.get(f"/{pid}~process@1.0/schedule")  # no bounds: from the spawn on
    assert whole.status_code == 200 and whole.json()["assignments"][0]["slot"] == 0


def test_now_computes_and_deeper_paths_read_into_the_state(c: httpx.Client, pid: str) -> None:
    current = c.get(f"/{pid}~process@1.0/slot").json()["current"]
    state = c.get(f"/{pid}~process@1.0/now").json()
    assert state["process"] == pid and state["at-slot"] == current
    assert c.get(f"/{pid}~process@1.0/now/cache/greeting").text == "hello"
    assert c.get(f"/{pid}~process@1.0/now/Cache/GREETING").text == "hello"
    counts = c.get(f"/{pid}~process@1.0/now/cache/counts")
    assert counts.headers["content-type"] == "application/json" and counts.json() == {"a": 1, "b": 2}
    assert c.get(f"/{pid}~process@1.0/now/cache/counts/b").text == "2"
    leaf_json = c.get(f"/{pid}~process@1.0/now/cache/greeting~json@1.0")
    assert leaf_json.headers["content-type"] == "application/json" and leaf_json.json() == "hello"
    accept = c.get(f"/{pid}~process@1.0/now/cache/greeting", headers={"Accept": "application/json"})
    assert accept.json() == "hello"
    serialized = c.get(f"/{pid}~process@1.0/now/cache/greeting/serialize~json@1.0")
    assert serialized.headers["content-type"] == "application/json" and serialized.json() == "hello"
    assert c.get(f"/{pid}/now/cache/counts/a").text == "1"  # the device is implicit for a process id


def test_patched_keys_are_kept_exactly_as_written(c: httpx.Client) -> None:
    """Issue 10 item 1: `Book = { ALICE = 7, alice = 25 }` keeps the 7; an address key stays an address."""
    pid = spawn(c)
    r = c.post(f"/{pid}~process@1.0/schedule", json=eval_body(
        "Book = { ALICE = 7, alice = 25, Carol = 3 }; Send({device='patch@1.0', cache={Book=Book, [ao.id]='me'}})"))
    assert r.status_code == 200, r.text
    assert c.get(f"/{pid}~process@1.0/now/cache/Book").json() == {"ALICE": 7, "alice": 25, "Carol": 3}
    assert c.get(f"/{pid}~process@1.0/now/cache/Book/ALICE").text == "7"
    assert c.get(f"/{pid}~process@1.0/now/cache/book/alice").text == "25"
    assert c.get(f"/{pid}~process@1.0/now/cache/Book/carol").text == "3"
    assert c.get(f"/{pid}~process@1.0/now/cache/{pid}").text == "me"
    ambiguous = c.get(f"/{pid}~process@1.0/now/cache/Book/Alice")
    assert ambiguous.status_code == 404
    assert "ALICE" in ambiguous.json()["error"] and "alice" in ambiguous.json()["error"]


def test_compute_by_slot_in_path_or_query(c: httpx.Client, pid: str) -> None:
    c.get(f"/{pid}~process@1.0/now")
    in_path = c.get(f"/{pid}~process@1.0/compute/2").json()
    in_query = c.get(f"/{pid}~process@1.0/compute", params={"slot": 2}).json()
    assert in_path == in_query and in_path["at-slot"] == 2
    assert c.get(f"/{pid}~process@1.0/compute/2/results/data").text == "2"
    assert c.get(f"/{pid}~process@1.0/compute/1/results/data").text.endswith("patched")
    assert c.get(f"/{pid}~process@1.0/compute/1/at-slot").text == "1"
    assert c.get(f"/{pid}~process@1.0/compute/0/cache/greeting").status_code == 404


def test_compute_without_slot_is_the_last_computed_state(c: httpx.Client, pid: str) -> None:
    last = c.get(f"/{pid}~process@1.0/now/at-slot").text
    assert c.get(f"/{pid}~process@1.0/compute/at-slot").text == last
    assert c.get(f"/{pid}~process@1.0/compute/cache/greeting").text == "hello"


def test_snapshot_and_init(c: httpx.Client, pid: str) -> None:
    c.get(f"/{pid}~process@1.0/now")
    snap = c.get(f"/{pid}~process@1.0/snapshot", headers={"accept": "application/json"})
    assert snap.status_code == 200 and snap.json()["process"] == pid
    blob = c.get(f"/{pid}~process@1.0/snapshot")  # the snapshot itself (tests/test_portable_snapshot.py)
    assert blob.headers["content-type"] == "application/octet-stream"
    assert blob.content.startswith(b"AOSNAP1\n") and blob.headers["x-memory-sha256"] == snap.json()["memory-sha256"]
    init = c.get(f"/{pid}~process@1.0/init")
    assert init.status_code == 200 and init.json()["process"] == pid


def test_head_answers_like_get_without_a_body(c: httpx.Client, pid: str) -> None:
    c.get(f"/{pid}~process@1.0/now")
    for path in ("/compute/cache/greeting", "/compute/cache", "/slot", "/now/at-slot"):
        get = c.get(f"/{pid}~process@1.0{path}")
        head = c.head(f"/{pid}~process@1.0{path}")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == str(len(get.content))
    missing = c.head(f"/{pid}~process@1.0/compute/cache/nothing-here")
    assert (missing.status_code, missing.content) == (404, b"")


@pytest.mark.parametrize("path", [
    f"/{UNKNOWN}~process@1.0/now", f"/{UNKNOWN}~process@1.0/compute", f"/{UNKNOWN}~process@1.0/slot",
    f"/{UNKNOWN}~process@1.0/schedule", "/favicon.ico", "/", "/~meta@1.0/nothing",
])
def test_unknown_things_are_404_json(c: httpx.Client, path: str) -> None:
    r = c.get(path)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]


def test_unknown_key_and_unscheduled_slot_are_404(c: httpx.Client, pid: str) -> None:
    assert c.get(f"/{pid}~process@1.0/compute/cache/nope").json()["error"].startswith("no key 'cache/nope'")
    assert c.get(f"/{pid}~process@1.0/compute/999999").status_code == 404
    r = c.post(f"/{UNKNOWN}~process@1.0/schedule", json=eval_body("return 1"))
    assert r.status_code == 404 and "error" in r.json()


@pytest.mark.parametrize("rest", ["/compute?slot=abc", "/compute/-2", "/compute/1?slot=2", "/now?slot=1",
                                  "/schedule?from=x"])
def test_malformed_slots_are_400(c: httpx.Client, pid: str, rest: str) -> None:
    r = c.get(f"/{pid}~process@1.0{rest}")
    assert r.status_code == 400 and r.json()["error"]


@pytest.mark.parametrize("body, content_type", [
    (b"{not json", "application/json"), (b"", "application/json"), (b"[1, 2]", "application/json"),
    (b'{"Tags": [{"name": "Action"}]}', "application/json"), (b'{"Tags": "Eval"}', "application/json"),
    (b'{"Nested": {"a": 1}}', "application/json"), (b"\x01\x00garbage", "application/octet-stream"),
])
def test_malformed_bodies_are_400(c: httpx.Client, pid: str, body: bytes, content_type: str) -> None:
    for path in (f"/{pid}~process@1.0/schedule", "/~process@1.0/schedule"):
        r = c.post(path, content=body, headers={"Content-Type": content_type})
        assert r.status_code == 400 and r.json()["error"], (path, body, r.text)


def test_spawn_of_an_unknown_module_is_refused(c: httpx.Client) -> None:
    r = c.post("/~process@1.0/schedule", json={"Module": "no-such-module-anywhere"})
    assert 400 <= r.status_code < 500 and r.json()["error"]


def test_oversized_bodies_are_413(c: httpx.Client, pid: str) -> None:
    big = {"Action": "Eval", "data": "x" * (10 * 1024 * 1024 + 1)}
    r = c.post(f"/{pid}~process@1.0/schedule", content=json.dumps(big).encode(),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed length is what is checked
        for _ in range(11):
            yield b" " * (1024 * 1024)

    r = c.post(f"/{pid}~process@1.0/schedule", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert c.get(f"/{pid}~process@1.0/slot").status_code == 200  # the server is fine afterwards


def test_a_message_the_process_rejects_is_an_error_result_not_a_500(c: httpx.Client, pid: str) -> None:
    r = c.post(f"/{pid}~process@1.0/schedule", json=eval_body("error('boom from lua')"))
    assert r.status_code == 200
    state = c.get(f"/{pid}~process@1.0/now")
    assert state.status_code == 200
    assert "boom from lua" in json.dumps(state.json()["results"])
    after = c.post(f"/{pid}~process@1.0/schedule", json=eval_body("return 'still alive'"))
    assert c.get(f"/{pid}~process@1.0/compute/{after.json()['slot']}/results/data").text == "still alive"


def test_methods(c: httpx.Client, pid: str) -> None:
    assert c.put(f"/{pid}~process@1.0/now").status_code == 405
    # POST on a read path reads, as HyperBEAM answers it (the body is the caller's request message).
    read_post = c.post(f"/{pid}~process@1.0/compute", json=eval_body("return 1"))
    assert read_post.status_code == 200 and read_post.json() == c.get(f"/{pid}~process@1.0/compute").json()
    wrong_put = c.put(f"/{pid}~process@1.0/compute", json=eval_body("return 1"))
    assert wrong_put.status_code == 405 and wrong_put.json()["error"]
    # Refused before its body was read: the connection is closed, so the client does not reuse it.
    assert wrong_put.headers["connection"] == "close"
    assert c.post("/favicon.ico", content=b"x" * 100).headers["connection"] == "close"
    assert c.get(f"/{pid}~process@1.0/slot").status_code == 200
    assert c.get("/~process@1.0/schedule").status_code == 405
    assert c.post("/~meta@1.0/info", json={}).status_code == 405


def test_cors_on_answers_errors_and_preflight(c: httpx.Client, pid: str) -> None:
    origin = {"Origin": "https://app.example"}
    assert c.get(f"/{pid}~process@1.0/compute", headers=origin).headers["access-control-allow-origin"] == "*"
    no_origin = c.get(f"/{pid}~process@1.0/compute")  # the same public answer whoever asks
    assert no_origin.headers["access-control-allow-origin"] == "*" and "vary" not in no_origin.headers
    assert "retry-after" in no_origin.headers["access-control-expose-headers"].lower()
    assert c.get(f"/{UNKNOWN}~process@1.0/now", headers=origin).headers["access-control-allow-origin"] == "*"
    pre = c.options(f"/{pid}~process@1.0/schedule",
                    headers={**origin, "Access-Control-Request-Method": "POST",
                             "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert "POST" in pre.headers["access-control-allow-methods"]
    plain = c.options(f"/{pid}~process@1.0/now/cache/greeting")
    assert plain.status_code == 204 and "GET" in plain.headers["allow"]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    with http_node(tmp_path_factory.mktemp("strict-node"), dev=False) as running:
        yield running


def test_without_dev_unsigned_json_is_401_with_how_to_sign(strict: HttpNode) -> None:
    with strict.client() as c:
        for path in ("/~process@1.0/schedule", f"/{UNKNOWN}~process@1.0/schedule"):
            r = c.post(path, json={"Module": MODULE})
            assert r.status_code == 401
            error = r.json()["error"]
            assert "ANS-104" in error and "application/octet-stream" in error


def test_without_dev_signed_data_items_are_accepted(strict: HttpNode) -> None:
    user = Wallet.generate("ed25519")
    octet = {"Content-Type": "application/octet-stream"}
    spawn_item = build_and_sign(user, data="", tags=[("Module", MODULE), ("Type", "Process"),
                                                    ("Data-Protocol", "ao"), ("Variant", "ao.TN.1")])
    with strict.client() as c:
        r = c.post("/~process@1.0/schedule", content=spawn_item.raw, headers=octet)
        assert r.status_code == 200, r.text
        pid = r.json()["process"]
        assert pid == spawn_item.id
        item = build_and_sign(user, data="return 6 * 7", tags=[("Action", "Eval")], target=pid)
        r = c.post(f"/{pid}~process@1.0/schedule", content=item.raw, headers=octet)
        assert r.status_code == 200 and r.json()["message"] == item.id
        assert c.get(f"/{pid}~process@1.0/now/results/data").text == "42"

        forged = bytearray(build_and_sign(user, data="return 0", tags=[("Action", "Eval")], target=pid).raw)
        forged[10] ^= 0xFF  # inside the signature
        r = c.post(f"/{pid}~process@1.0/schedule", content=bytes(forged), headers=octet)
        assert r.status_code == 400 and "signature" in r.json()["error"]  # issue 5: bad signature → 400


def test_data_dir_is_reused(tmp_path: Path) -> None:
    with http_node(tmp_path, dev=True) as first, first.client() as c:
        pid = spawn(c)
        address = first.node.address
    with http_node(tmp_path, dev=True) as second, second.client() as c:
        assert second.node.address == address
        assert c.get(f"/{pid}~process@1.0/slot").json()["current"] == 0


def test_legacy_routes_are_mounted_by_default(c: httpx.Client, pid: str) -> None:
    """The legacy CU/MU/SU API (server/legacy/, tested in test_legacy_api.py) is on by default."""
    assert c.get("/timestamp").json()["timestamp"] > 0
    assert c.get(f"/results/{pid}").status_code == 200
    assert c.get(f"/{pid}~process@1.0/slot").status_code == 200  # and never shadows the device paths
