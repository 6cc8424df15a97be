"""Items signed by the real JS stack (aoconnect, arbundles, arweave-js) against ours, both ways."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aonode.engine.ans104 import DataItem, build_and_sign
from aonode.engine.crypto import Wallet, b64url_decode

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
    assert {e["signer"] for e in manifest} == {"aoconnect", "arbundles", "ed25519"}
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


def test_python_rsa_wallet_verifies_in_js(tmp_path: Path) -> None:
    """A key generated here (not by arweave-js) signs items JS accepts: our JWK and PSS are standard."""
    wallet = Wallet.generate("rsa")
    item = build_and_sign(wallet, data="x", tags=[("Type", "Message")])
    path = tmp_path / "py-rsa.item"
    path.write_bytes(item.raw)
    (seen,) = _js_verify([path])
    assert seen["valid"] and seen["id"] == item.id and seen["address"] == wallet.address
