"""engine/keygen_race.py: a node's first wallet comes from the first of two key searches (forked when the
process has one thread, fresh interpreters otherwise); the key must be a sound RSA-4096 Arweave key (it
survives the full check a JWK load makes, and signs what verifies), each race gives a different key, and
no search process outlives the race, even one cancelled."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aonode.engine.crypto import RSA, RSA_BITS, Wallet, b64url_decode, b64url_encode, verify
from aonode.engine.errors import BadInput
from aonode.engine.first_start import CHECKED, data_dir_wallet
from aonode.engine.keygen_race import KeyRace, raced_rsa_wallet
from tests.helpers.threads import started


def _children() -> set[int]:
    """This process's live child processes (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except FileNotFoundError:  # that thread ended between the listing and the read
            continue
    return found


def _in_a_thread() -> Wallet:
    """A race run beside another thread: its searches are fresh interpreters, not forks."""
    return started(raced_rsa_wallet).join()[0]


def _sound(wallet: Wallet, path: Path) -> None:
    """An RSA-4096 key that survives the full check of a JWK load (primes, CRT values) and signs."""
    assert wallet.signature_type == RSA and wallet.key.key_size == RSA_BITS  # type: ignore[union-attr]
    wallet.save(path)
    again = Wallet.load(path)
    assert again.address == wallet.address
    signature = again.sign(b"a message")
    assert verify(RSA, wallet.owner, b"a message", signature)
    assert not verify(RSA, wallet.owner, b"another message", signature)


FORKED = """import sys
from pathlib import Path
from aonode.engine.keygen_race import _can_fork, raced_rsa_wallet
assert _can_fork(), "a fresh interpreter has one thread"
for n in (1, 2):
    raced_rsa_wallet().save(Path(sys.argv[1]) / f"key{n}.json")
children = [p for t in Path("/proc/self/task").iterdir() for p in (t / "children").read_text().split()]
print(len(children))
"""


def test_a_race_forked_in_a_one_thread_process_gives_sound_keys_and_leaves_no_search(tmp_path):
    done = subprocess.run([sys.executable, "-c", FORKED, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # the losing searches were killed and reaped
    first, second = Wallet.load(tmp_path / "key1.json"), Wallet.load(tmp_path / "key2.json")
    assert first.address != second.address
    _sound(first, tmp_path / "again.json")


def test_a_race_beside_other_threads_spawns_its_searches_and_leaves_none(tmp_path):
    before = _children()
    first, second = _in_a_thread(), _in_a_thread()
    assert _children() <= before  # the losing searches were killed and reaped
    assert first.address != second.address
    _sound(first, tmp_path / "key.json")


def test_a_data_dir_keeps_the_wallet_its_first_start_made(tmp_path):
    made = data_dir_wallet(tmp_path)
    assert (tmp_path / "wallet.json").exists()
    digest = hashlib.sha256((tmp_path / "wallet.json").read_bytes()).hexdigest()
    assert (tmp_path / CHECKED).read_text().strip() == f"sha256:{digest}"  # made here: known valid
    again = data_dir_wallet(tmp_path)
    assert again.address == made.address
    assert verify(RSA, made.owner, b"m", again.sign(b"m"))


def _damaged(jwk_bytes: bytes) -> bytes:
    """The same JWK with one bit of its private exponent flipped: a key OpenSSL's full check refuses."""
    jwk = json.loads(jwk_bytes)
    d = bytearray(b64url_decode(jwk["d"]))
    d[-1] ^= 0x02
    return json.dumps({**jwk, "d": b64url_encode(bytes(d))}).encode()


def test_a_wallet_file_is_checked_in_full_unless_these_very_bytes_were_made_or_checked_here(tmp_path):
    """An operator's wallet.json (no record) is checked in full, then recorded; a file whose bytes differ
    from the record (damaged, or another key put there) is checked in full again: refused when unsound.
    Only the recorded bytes skip the check: shown by a damaged key loading once its bytes are recorded."""
    operator = Wallet.generate("rsa")
    operator.save(tmp_path / "wallet.json")
    assert not (tmp_path / CHECKED).exists()
    assert data_dir_wallet(tmp_path).address == operator.address  # checked, then recorded
    good = (tmp_path / "wallet.json").read_bytes()
    assert (tmp_path / CHECKED).read_text().strip() == "sha256:" + hashlib.sha256(good).hexdigest()

    (tmp_path / "wallet.json").write_bytes(_damaged(good))  # the record names the sound bytes
    with pytest.raises(BadInput, match="inconsistent RSA JWK"):
        data_dir_wallet(tmp_path)
    (tmp_path / CHECKED).unlink()
    with pytest.raises(BadInput, match="inconsistent RSA JWK"):
        data_dir_wallet(tmp_path)
    assert not (tmp_path / CHECKED).exists()  # nothing recorded for a refused key

    (tmp_path / CHECKED).write_text("sha256:" + hashlib.sha256(_damaged(good)).hexdigest() + "\n")
    assert data_dir_wallet(tmp_path).address == operator.address  # the record decides: no check


def test_a_cancelled_race_leaves_no_search_running():
    before = _children()
    race = KeyRace()
    assert _children() - before  # searching
    race.cancel()
    assert _children() <= before
