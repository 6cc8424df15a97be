"""Issue 10 items 12 and 13: what a newcomer meets in the installed `aonode` console script (wallets, eval,
send --wait, colour-free JSON, the catalogue's labels)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aonode.engine.crypto import Wallet

AONODE = str(Path(sys.executable).parent / "aonode")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AONODE, *args], capture_output=True, text=True, timeout=timeout)


def test_wallet_new_writes_a_private_jwk_and_address_reads_it(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    made = run("wallet", "new", str(key))
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    assert len(address) == 43
    assert key.stat().st_mode & 0o777 == 0o600
    jwk = json.loads(key.read_text())
    assert jwk["kty"] == "RSA" and len(Wallet.from_jwk(jwk).owner) == 512  # Arweave's RSA-4096
    assert Wallet.load(key).address == address
    shown = run("wallet", "address", str(key))
    assert shown.returncode == 0 and shown.stdout.strip() == address


def test_wallet_new_ed25519_and_refusals_are_one_line(tmp_path: Path) -> None:
    key = tmp_path / "ed.json"
    made = run("wallet", "new", str(key), "--kind", "ed25519")
    assert made.returncode == 0 and json.loads(key.read_text())["crv"] == "Ed25519"
    before = key.read_bytes()
    for done, needle in ((run("wallet", "new", str(key)), "exists"),  # never overwrites a key
                         (run("wallet", "address", str(tmp_path / "none.json")), "none.json"),
                         (run("wallet", "address", str(tmp_path)), str(tmp_path))):
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr, done.stderr
    assert key.read_bytes() == before
