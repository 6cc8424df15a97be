"""Items signed by the real JS stack (aoconnect, arbundles, arweave-js) against ours, both ways,
and the `aonode spawn`/`send` client against a real local HTTP listener."""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.ans104 import DataItem, build_and_sign
from aonode.server.cli.client import build_message, merge_tags, new_anchor, parse_tag, resolve_module, schedule_url
from aonode.engine.crypto import Wallet, b64url_decode
from aonode.engine.errors import BadInput
from aonode.server.cli import main as cli_main
from tests.helpers.loopback import Reply, Request, json_reply, loopback

pytestmark = [pytest.mark.slow, pytest.mark.peers]  # signs and verifies with arbundles/arweave-js in node

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "tests" / "peers" / "sign_item.mjs"


def _node(*args: str) -> str:
    node = shutil.which("node")
    assert node, "node is required for the interop tests (the CI installs it with the JS peers)"
    done = subprocess.run([node, str(PEER), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def js_items(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("js-items")
    _node("sign", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["signer"] for e in manifest} == {"aoconnect", "arbundles", "ed25519", "ethereum"}
    return out, manifest


def _js_verify(paths: list[Path]) -> list[dict]:
    return json.loads(_node("verify", *map(str, paths)))


def test_python_reads_and_verifies_js_items(js_items: tuple[Path, list[dict]]) -> None:
    out, manifest = js_items
    for entry in manifest:
        item = DataItem.parse((out / entry["file"]).read_bytes())
        assert item.verify(), entry["file"]
        assert item.signature_type == entry["signature_type"]
        assert item.id == entry["id"]
        assert item.tags == tuple((t["name"], t["value"]) for t in entry["tags"])
        assert item.data == b64url_decode(entry["data_b64"])
        msg = item.to_message()
        assert msg.from_ == msg.owner == entry["address"]
        assert msg.target == entry["target"]
        assert msg.anchor == entry["anchor"]


def test_ethereum_items_need_a_low_s_signature_on_the_curve(js_items: tuple[Path, list[dict]]) -> None:
    """The same checks libsecp256k1 (arbundles' verifier) makes: s above half the group order, or an
    owner that is not an uncompressed point, is refused even when the math would otherwise hold."""
    from aonode.engine.crypto import _SECP256K1_ORDER

    out, manifest = js_items
    entry = next(e for e in manifest if e["signer"] == "ethereum" and e["case"] == "full")
    raw = (out / entry["file"]).read_bytes()
    item = DataItem.parse(raw)
    assert item.signature_type == 3 and item.verify()
    s = int.from_bytes(item.signature[32:64], "big")
    high = bytearray(raw)
    high[2 + 32:2 + 64] = (_SECP256K1_ORDER - s).to_bytes(32, "big")  # the other valid-looking twin
    assert not DataItem.parse(bytes(high)).verify()
    assert _js_verify([out / entry["file"]])[0]["valid"] is True
    compressed = bytearray(raw)
    compressed[2 + 65] = 2  # owner's first byte: not 04
    assert not DataItem.parse(bytes(compressed)).verify()


def test_an_ethereum_key_drives_a_node_without_dev_mode(js_items: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """Type 3 items signed by arbundles' EthereumSigner spawn an AOS process and Eval in it over HTTP."""
    from tests.helpers.httpnode import http_node

    out, manifest = js_items
    spawn, evaluate = (next(e for e in manifest if e["signer"] == "ethereum" and e["case"] == name)
                       for name in ("spawn", "eval"))
    octet = {"Content-Type": "application/octet-stream"}
    with http_node(tmp_path / "node", dev=False) as srv, srv.client() as c:
        r = c.post("/~process@1.0/schedule", content=(out / spawn["file"]).read_bytes(), headers=octet)
        assert r.status_code == 200, r.text
        pid = r.json()["process"]
        assert pid == spawn["id"] == evaluate["target"]
        r = c.post(f"/{pid}~process@1.0/schedule", content=(out / evaluate["file"]).read_bytes(), headers=octet)
        assert r.status_code == 200 and r.json()["message"] == evaluate["id"], r.text
        assert c.get(f"/{pid}~process@1.0/now/results/data").text == "42"
        definition = srv.node.store.get_process(pid)
        assert definition.owner == definition.from_ == spawn["address"]  # sha256(owner key), as for RSA
        forged = bytearray((out / evaluate["file"]).read_bytes())
        forged[10] ^= 0xFF  # inside r
        r = c.post(f"/{pid}~process@1.0/schedule", content=bytes(forged), headers=octet)
        assert r.status_code == 400 and "signature" in r.json()["error"]


def test_js_jwks_load_in_python(js_items: tuple[Path, list[dict]]) -> None:
    out, manifest = js_items
    addresses = {e["signer"]: e["address"] for e in manifest}
    rsa = Wallet.load(out / "rsa.jwk.json")
    assert rsa.signature_type == 1 and rsa.address == addresses["aoconnect"]
    ed = Wallet.load(out / "ed25519.jwk.json")
    assert ed.signature_type == 2 and ed.address == addresses["ed25519"]


def test_tampered_js_items_are_refused(js_items: tuple[Path, list[dict]]) -> None:
    out, manifest = js_items
    for entry in (e for e in manifest if e["case"] == "full"):
        raw = (out / entry["file"]).read_bytes()
        item = DataItem.parse(raw)
        sig_at = 2
        tag_at = raw.index(b"Eval")
        data_at = len(raw) - len(item.data)
        for offset in (sig_at, tag_at, data_at):
            bad = bytearray(raw)
            bad[offset] ^= 0x01
            assert not DataItem.parse(bytes(bad)).verify(), (entry["file"], offset)


def test_python_items_verify_in_js(js_items: tuple[Path, list[dict]], tmp_path: Path) -> None:
    out, _ = js_items
    wallets = {
        "js-rsa": Wallet.load(out / "rsa.jwk.json"),
        "js-ed25519": Wallet.load(out / "ed25519.jwk.json"),
        "py-ed25519": Wallet.generate("ed25519"),
        "py-rsa": Wallet.generate("rsa"),  # a key made here, not by arweave-js: our PSS is standard
    }
    tags = [("Data-Protocol", "ao"), ("Type", "Message"), ("Näme", "välue 🙂"), ("Long", "x" * 300)]
    built: dict[Path, tuple[DataItem, Wallet]] = {}
    for name, wallet in wallets.items():
        for variant, kwargs in {
            "full": dict(data="héllo", tags=tags, target="WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc",
                         anchor="00000000000000000000000000000042"),
            "bare": dict(data=b""),
            "binary": dict(data=bytes(range(256)), tags=tags[:1]),
        }.items():
            item = build_and_sign(wallet, **kwargs)
            path = tmp_path / f"{name}-{variant}.item"
            path.write_bytes(item.raw)
            built[path] = (item, wallet)
    tampered = tmp_path / "tampered.item"
    first = next(iter(built.values()))[0].raw
    tampered.write_bytes(first[:-1] + bytes([first[-1] ^ 1]))
    report = {Path(r["file"]): r for r in _js_verify([*built, tampered])}
    for path, (item, wallet) in built.items():
        seen = report[path]
        assert seen["valid"], path.name
        assert seen["id"] == item.id
        assert seen["address"] == wallet.address
        assert [(t["name"], t["value"]) for t in seen["tags"]] == list(item.tags)
    assert not report[tampered]["valid"]


# -- the `aonode spawn` / `aonode send` client against a real local HTTP listener -----------------

NODE_ADDRESS = "N" * 43
PROCESS = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc"


@pytest.fixture()
def recorder() -> Iterator[tuple[str, list]]:
    """Answers like a node's schedule endpoint and remembers what it was sent."""
    seen: list[tuple[str, str, str, bytes]] = []

    def answer(request: Request) -> Reply:
        if request.method == "POST":
            seen.append(("POST", request.path, request.headers["content-type"], request.body))
            return json_reply({"id": DataItem.parse(request.body).id, "slot": len(seen) - 1})
        seen.append(("GET", request.path, "", b""))
        if request.path == "/~meta@1.0/info/address":
            return json_reply({"address": NODE_ADDRESS})
        return json_reply({"error": "not found"}, 404)

    with loopback(answer) as url:
        yield url, seen


def test_cli_spawn_and_send(recorder: tuple[str, list], js_items: tuple[Path, list[dict]],
                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node, seen = recorder
    out, _ = js_items
    wallet_path = out / "rsa.jwk.json"
    wallet = Wallet.load(wallet_path)
    assert cli_main(["spawn", "--wallet", str(wallet_path), "--node", node, "--module", "aos2_0_6",
                     "--tag", "Name=demo", "--tag", "Variant=ao.TN.2"]) == 0
    spawn_answer = json.loads(capsys.readouterr().out)
    (data_file := tmp_path / "code.lua").write_bytes(b"return 1 + 1")
    assert cli_main(["send", PROCESS, "--wallet", str(wallet_path), "--node", node,
                     "--tag", "Action=Eval", "--data-file", str(data_file)]) == 0
    send_answer = json.loads(capsys.readouterr().out)

    posts = [s for s in seen if s[0] == "POST"]
    assert [s[1] for s in seen] == ["/~meta@1.0/info/address", "/~process@1.0/schedule",
                                    f"/{PROCESS}~process@1.0/schedule"]
    assert all(p[2] == "application/octet-stream" for p in posts)
    spawn, send = (DataItem.parse(p[3]) for p in posts)
    assert spawn.verify() and send.verify()
    assert spawn.signer_address == send.signer_address == wallet.address
    assert spawn_answer["id"] == spawn.id and send_answer["id"] == send.id
    assert list(spawn.tags) == [("Data-Protocol", "ao"), ("Variant", "ao.TN.2"), ("Type", "Process"),
                                ("Module", resolve_module("aos2_0_6")), ("Scheduler", NODE_ADDRESS),
                                ("Name", "demo")]
    assert spawn.data == b"1984" and spawn.target is None
    assert list(send.tags) == [("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Message"),
                               ("Action", "Eval")]
    assert send.data == b"return 1 + 1" and send.to_message().target == PROCESS
    assert len(send.anchor) == 32 and send.anchor != spawn.anchor
    # What the client built is also what the JS stack accepts.
    paths = []
    for name, raw in (("spawn", posts[0][3]), ("send", posts[1][3])):
        (path := tmp_path / f"{name}.item").write_bytes(raw)
        paths.append(path)
    assert all(r["valid"] and r["address"] == wallet.address for r in _js_verify(paths))


def test_cli_reports_node_errors(recorder: tuple[str, list], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = recorder
    wallet_path = tmp_path / "w.json"
    Wallet.generate("ed25519").save(wallet_path)
    assert cli_main(["send", "short-id", "--wallet", str(wallet_path), "--node", node]) == 1
    assert "target must be 32 bytes" in capsys.readouterr().err
    assert cli_main(["send", PROCESS, "--wallet", str(wallet_path), "--node", node,
                     "--tag", "novalue"]) == 1
    assert "Name=Value" in capsys.readouterr().err
    assert cli_main(["send", PROCESS, "--wallet", str(tmp_path / "missing.json"), "--node", node]) == 1
    assert "missing.json" in capsys.readouterr().err
    unreachable = "http://127.0.0.1:9"
    assert cli_main(["spawn", "--wallet", str(wallet_path), "--node", unreachable]) == 1
    assert "pass --scheduler" in capsys.readouterr().err


def test_client_builders_offline(tmp_path: Path) -> None:
    wallet = Wallet.generate("ed25519")
    first = build_message(wallet, process=PROCESS, data="ping", anchor="a" * 32)
    again = build_message(wallet, process=PROCESS, data="ping", anchor="a" * 32)
    assert first.id == again.id  # ed25519 is deterministic: the anchor is what keeps sends apart
    assert new_anchor() != new_anchor() and len(new_anchor()) == 32
    assert merge_tags([("Type", "Message")], [("type", "Custom"), ("X", "1")]) == [("type", "Custom"), ("X", "1")]
    assert parse_tag("A=b=c") == ("A", "b=c")
    with pytest.raises(BadInput):
        resolve_module("no-such-module")
    assert schedule_url("http://h:1/", PROCESS) == f"http://h:1/{PROCESS}~process@1.0/schedule"
