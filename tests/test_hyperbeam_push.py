"""HyperBEAM's paths on a real hypercorn node without --dev: /push with httpsig and ANS-104 messages,
replays, refusals, the scheduler and relay devices, key=value segments, and signed answers."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aonode.engine import httpsig
from aonode.engine.ans104 import build_and_sign
from aonode.engine.answer_signature import verify_answer
from aonode.engine.crypto import Wallet
from tests.helpers.httpnode import HttpNode, http_node

pytestmark = pytest.mark.slow  # real AOS processes on a served node

AUTHORITY = "A" * 43
EVAL = b"Counter = (Counter or 0) + 1\nSend({ device = 'patch@1.0', cache = { counter = Counter } })"


@pytest.fixture(scope="module")
def hb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    with http_node(tmp_path_factory.mktemp("hb-node"), dev=False) as running:
        yield running


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("rsa")


def _send(http: httpx.Client, req: httpsig.Request) -> httpx.Response:
    return http.request(req.method, req.url, headers=list(req.headers), content=req.body)


def _verified_answer(node: HttpNode, resp: httpx.Response) -> httpsig.Decoded:
    decoded = httpsig.decode(httpsig.Request("GET", str(resp.url), tuple(resp.headers.multi_items()),
                                             resp.content, status=resp.status_code))
    assert verify_answer(resp.headers.multi_items(), resp.content) == node.node.address
    assert 'alg="ed25519"' in resp.headers["signature-input"]  # by the session key (/push too): no RSA per answer
    return decoded


@pytest.fixture(scope="module")
def pid(hb: HttpNode, wallet: Wallet) -> str:
    spawn = httpsig.signed_message(wallet, {
        "type": b"Process", "data-protocol": b"ao", "variant": b"ao.N.1", "module": b"aos2_0_6",
        "scheduler": hb.node.address.encode(), "device": b"process@1.0",
        "device-stack": [b"genesis-wasm@1.0", b"patch@1.0"], "execution-device": b"stack@1.0",
        "name": b"httpsig-spawn", "authority": AUTHORITY.encode(),
    }, url=f"{hb.url}/push")
    with hb.client() as http:
        resp = _send(http, spawn)
        assert resp.status_code == 200, resp.text
        _verified_answer(hb, resp)
        return resp.headers["process"]


def _eval(wallet: Wallet, hb: HttpNode, pid: str, code: bytes = EVAL) -> httpsig.Request:
    return httpsig.signed_message(wallet, {"action": b"Eval", "target": pid.encode(), "data": code},
                                  url=f"{hb.url}/{pid}~process@1.0/push")


def test_unsigned_pushes_are_refused(hb: HttpNode, pid: str) -> None:
    with hb.client() as http:
        assert http.post("/push", headers={"type": "Process", "module": "aos2_0_6"}).status_code == 401
        resp = http.post(f"/{pid}~process@1.0/push", headers={"action": "Eval"}, content=b"return 1")
        assert resp.status_code == 401 and "signed" in resp.json()["error"]


def test_httpsig_push_schedules_computes_and_replays_to_its_slot(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    first = _eval(wallet, hb, pid)
    with hb.client() as http:
        resp = _send(http, first)
        assert resp.status_code == 200, resp.text
        answer = _verified_answer(hb, resp)
        slot = answer.fields["slot"]
        assert isinstance(slot, int) and slot >= 1 and resp.json()["results"].get("Error") is None
        again = _send(http, first)  # the same signed message: its original slot, nothing new
        assert again.json()["slot"] == slot and http.get(f"/{pid}/slot/current").text == str(slot)
        counter = http.get(f"/{pid}~process@1.0/now/cache/counter").text
        flipped = httpsig.Request(first.method, first.url, first.headers, first.body.replace(b"+ 1", b"+ 2"))
        bad = _send(http, flipped)
        assert bad.status_code == 400 and "content-digest" in bad.json()["error"]
        assert http.get(f"/{pid}/slot/current").text == str(slot)
        assert http.get(f"/{pid}~process@1.0/now/cache/counter").text == counter


def test_ans104_push_with_codec_device(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    item = build_and_sign(wallet, data="Send({ device = 'patch@1.0', cache = { via = 'ans104' } })",
                          tags=[("Action", "Eval"), ("Data-Protocol", "ao"), ("Type", "Message")], target=pid)
    with hb.client() as http:
        resp = http.post(f"/{pid}~process@1.0/push", content=item.raw,
                         headers={"content-type": "application/ans104", "codec-device": "ans104@1.0"})
        assert resp.status_code == 200 and resp.json()["id"] == item.id
        assert http.get(f"/{pid}~process@1.0/now/cache/via").text == "ans104"
        broken = bytearray(item.raw)
        broken[-3] ^= 1
        assert http.post(f"/{pid}~process@1.0/push", content=bytes(broken),
                         headers={"content-type": "application/ans104"}).status_code == 400


def test_key_value_segments_and_json_serialize(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    with hb.client() as http:
        _send(http, _eval(wallet, hb, pid))
        results = http.post(f"/{pid}~process@1.0/compute/results=1", headers={"accept": "application/json"})
        assert results.status_code == 200 and "raw" in results.json() and "Output" in results.json()["raw"]
        serialized = http.get(f"/{pid}/compute/~json@1.0/serialize", params={"slot": 1})
        assert serialized.headers["content-type"].startswith("application/json")
        assert serialized.json()["at-slot"] == 1
        dry = http.post(f"/{pid}~process@1.0/as=execution/compute&Action=Eval", content=b"")
        assert dry.status_code == 200 and "raw" in dry.json()
        slot_before = http.get(f"/{pid}/slot/current").text
        dry = http.post(f"/{pid}~process@1.0/as=execution/compute&Action=Eval")
        assert http.get(f"/{pid}/slot/current").text == slot_before  # a dry-run schedules nothing


def test_scheduler_device_paths(hb: HttpNode, pid: str) -> None:
    with hb.client() as http:
        page = http.get("/~scheduler@1.0/schedule", params={"target": pid, "from": "", "accept": "application/aos-2"})
        assert page.status_code == 200
        body = page.json()
        assert "page_info" in body and body["edges"][0]["node"]["assignment"]["tags"]
        current = http.get("/~scheduler@1.0/slot", params={"target": pid}).json()["current"]
        assert current == len(body["edges"]) - 1
        _verified_answer(hb, page)
        assert http.get("/~scheduler@1.0/slot").status_code == 400


def test_relay_reaches_only_this_node(hb: HttpNode) -> None:
    with hb.client() as http:
        relayed = http.get("/~relay@1.0/call", params={"relay-path": "/~meta@1.0/info/address"})
        assert relayed.status_code == 200 and relayed.text == hb.node.address
        outside = http.get("/~relay@1.0/call", params={"relay-path": "http://example.com/"})
        assert outside.status_code == 400 and "own routes" in outside.json()["error"]


def test_every_answer_is_signed_and_errors_too(hb: HttpNode, pid: str) -> None:
    with hb.client() as http:
        for resp in (http.get("/~meta@1.0/info/address"), http.get(f"/{pid}~process@1.0/now/cache/counter"),
                     http.get(f"/{pid}~process@1.0/now/cache/nothing-here")):
            answer = _verified_answer(hb, resp)
            assert answer.fields["ao-result"] == b"body"
        assert http.get("/~meta@1.0/info/address").text == hb.node.address


def test_httpsig_on_the_schedule_path(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    req = httpsig.signed_message(wallet, {"action": b"Ping", "target": pid.encode(), "note": b"scheduled"},
                                 url=f"{hb.url}/{pid}~process@1.0/schedule")
    with hb.client() as http:
        assignment = _send(http, req).json()
        assert assignment["process"] == pid and assignment["message"] == httpsig.decode(req).to_message().id
        assert _send(http, req).json()["slot"] == assignment["slot"]


@pytest.mark.parametrize("form", [[], ["--committed-body"]])
def test_cli_spawn_and_send_with_httpsig(hb: HttpNode, wallet: Wallet, tmp_path: Path, form: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Signed request fields, or (--committed-body) the message as the body with its commitment part."""
    from aonode.server.cli import main as cli_main

    wallet_path = tmp_path / "key.json"
    wallet.save(wallet_path)
    common = ["--wallet", str(wallet_path), "--node", hb.url, "--httpsig", *form]
    assert cli_main(["spawn", *common, "--module", "aos2_0_6", "--tag", "Name=cli-httpsig"]) == 0
    spawned = json.loads(capsys.readouterr().out)
    assert spawned["answered-by"] == hb.node.address and spawned["slot"] == 0
    new_pid = spawned["process"]
    code = "Greeting = 'hi from the cli'\nSend({ device = 'patch@1.0', cache = { greeting = Greeting } })"
    assert cli_main(["send", new_pid, *common, "--tag", "Action=Eval", "--data", code]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["slot"] == 1 and sent["answered-by"] == hb.node.address and "Error" not in sent["results"]
    with hb.client() as http:
        assert http.get(f"/{new_pid}~process@1.0/now/cache/greeting").text == "hi from the cli"
        definition = http.get(f"/{new_pid}~process@1.0/init", headers={"accept": "application/json"}).json()
        assert definition["definition"]["Owner"] == wallet.address


@pytest.mark.parametrize("field", ["action", "signature", "content-digest", "signature-input"])
def test_one_flipped_byte_in_a_signed_push_is_a_400(hb: HttpNode, wallet: Wallet, pid: str, field: str) -> None:
    req = _eval(wallet, hb, pid, b"Flipped = true\nreturn 1")
    headers = []
    for k, v in req.headers:
        if k == field:
            i = len(v) // 2
            v = v[:i] + ("B" if v[i] != "B" else "C") + v[i + 1:]
        headers.append((k, v))
    with hb.client() as http:
        before = http.get(f"/{pid}/slot/current").text
        resp = http.post(f"/{pid}~process@1.0/push", headers=headers, content=req.body)
        assert resp.status_code == 400 and resp.json()["error"]
        assert http.get(f"/{pid}/slot/current").text == before


def _committed_eval(wallet: Wallet, hb: HttpNode, pid: str, code: bytes, action: str = "push") -> httpsig.Request:
    return httpsig.committed_request(wallet, {"action": b"Eval", "target": pid.encode(), "data": code},
                                     url=f"{hb.url}/{pid}~process@1.0/{action}")


def test_a_committed_body_message_is_pushed_under_its_committer(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    """HyperBEAM's form: an unsigned request whose multipart body carries the message and its
    `body/commitments/<id>` part. The committer owns the message (the owner's Eval runs); a flipped
    byte in the body is a 400, a body with only an hmac commitment a 401, and neither is scheduled."""
    code = b"Committed = 'by the body'\nSend({ device = 'patch@1.0', cache = { committed = Committed } })"
    req = _committed_eval(wallet, hb, pid, code)
    inner = httpsig.decode(req).committed()
    assert inner is not None
    with hb.client() as http:
        resp = _send(http, req)
        assert resp.status_code == 200, resp.text
        slot = _verified_answer(hb, resp).fields["slot"]
        assert resp.json()["id"] == inner.to_message().id and resp.json()["results"].get("Error") is None
        assert http.get(f"/{pid}~process@1.0/now/cache/committed").text == "by the body"
        assert _send(http, req).json()["slot"] == slot  # a replay keeps its slot
        flipped = httpsig.Request(req.method, req.url, req.headers, req.body.replace(b"by the body", b"by the bodY"))
        bad = _send(http, flipped)
        assert bad.status_code == 400 and bad.json()["error"]
        stripped = req.body.replace(b"alg: rsa-pss-sha512", b"alg: hmac-sha256")
        assert _send(http, httpsig.Request(req.method, req.url, req.headers, stripped)).status_code == 400
        unsigned = http.post(f"/{pid}~process@1.0/push", content=b"--b\r\ncontent-disposition: inline\r\n"
                             b"action: Eval\r\n\r\nreturn 1\r\n--b--",
                             headers={"content-type": 'multipart/form-data; boundary="b"'})
        assert unsigned.status_code == 401
        assert http.get(f"/{pid}/slot/current").text == str(slot)
        on_schedule = _send(http, _committed_eval(wallet, hb, pid, b"return 'scheduled'", "schedule"))
        assert on_schedule.status_code == 200 and on_schedule.json()["slot"] == slot + 1
        device = httpsig.committed_request(wallet, {"action": b"Eval", "target": pid.encode(), "data": b"return 3"},
                                           url=f"{hb.url}/~scheduler@1.0/schedule?target={pid}")
        on_device = _send(http, device)
        assert on_device.status_code == 200 and on_device.json()["slot"] == slot + 2


def test_definition_keys_as_hyperbeam_writes_them_reach_the_process(hb: HttpNode, wallet: Wallet, pid: str) -> None:
    """`authority`, `variant`, `data-protocol` (lowercase httpsig fields) are what AOS sees: the
    authority is trusted, a stranger is not."""
    code = ("local t = ao.env.Process.Tags\nreturn table.concat(ao.authorities, ',') .. '|' .. t.Variant .. '|' .. "
            f"t['Data-Protocol'] .. '|' .. tostring(ao.isTrusted({{ From = '{AUTHORITY}', Owner = '{AUTHORITY}' }}))"
            f" .. '|' .. tostring(ao.isTrusted({{ From = '{'S' * 43}', Owner = '{'S' * 43}' }}))")
    with hb.client() as http:
        resp = _send(http, _eval(wallet, hb, pid, code.encode()))
        assert resp.status_code == 200, resp.text
        output = resp.json()["results"]["Output"]
        assert (output.get("data") if isinstance(output, dict) else output) == f"{AUTHORITY}|ao.N.1|ao|true|false"


def test_a_spawn_naming_another_scheduler_is_refused(hb: HttpNode, wallet: Wallet) -> None:
    spawn = httpsig.signed_message(wallet, {"type": b"Process", "module": b"aos2_0_6", "scheduler": b"S" * 43,
                                            "execution-device": b"genesis-wasm@1.0"}, url=f"{hb.url}/push")
    with hb.client() as http:
        resp = _send(http, spawn)
        assert resp.status_code == 400 and hb.node.address in resp.json()["error"]
